{#- An 8-byte float type. dbt.type_float() is a 4-byte `float` on some adapters (DuckDB, Spark). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'sluice')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{% macro trino__type_double() -%}
    double
{%- endmacro %}

{% macro bigquery__type_double() -%}
    float64
{%- endmacro %}
