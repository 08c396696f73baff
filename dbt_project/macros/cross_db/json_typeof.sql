{#- 'object', 'array', 'varchar', ... for valid JSON text; null for null or invalid text. -#}
{% macro json_typeof(column) -%}
    {{ return(adapter.dispatch('json_typeof', 'sluice')(column)) }}
{%- endmacro %}

{% macro default__json_typeof(column) -%}
    json_typeof(cast({{ column }} as json))
{%- endmacro %}

{% macro duckdb__json_typeof(column) -%}
    case when json_valid({{ column }}) then lower(json_type({{ column }})) end
{%- endmacro %}
