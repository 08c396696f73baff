{#- The target's type for a type name as config/sluice.yaml writes them (DuckDB's names:
    varchar, double, bigint, integer, boolean, date, timestamp, ...); other names, such as
    decimal(10, 2), are used as written. -#}
{% macro sql_type(name) -%}
    {%- set types = {
        'varchar': dbt.type_string(), 'text': dbt.type_string(), 'string': dbt.type_string(),
        'double': type_double(), 'float8': type_double(), 'double precision': type_double(),
        'float': 'real', 'float4': 'real', 'real': 'real',
        'bigint': dbt.type_bigint(), 'int8': dbt.type_bigint(), 'long': dbt.type_bigint(),
        'integer': dbt.type_int(), 'int': dbt.type_int(), 'int4': dbt.type_int(),
        'boolean': dbt.type_boolean(), 'bool': dbt.type_boolean(),
        'timestamp': dbt.type_timestamp(), 'date': 'date',
    } -%}
    {{- types.get(name | trim | lower, name) -}}
{%- endmacro %}
