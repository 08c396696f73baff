{#- 'object' or 'array' for valid JSON text of that kind (other kinds are named differently by
    each engine); null for null or invalid text. -#}
{% macro json_typeof(column) -%}
    {{ return(adapter.dispatch('json_typeof', 'sluice')(column)) }}
{%- endmacro %}

{% macro default__json_typeof(column) -%}
    json_typeof(cast({{ column }} as json))
{%- endmacro %}

{% macro duckdb__json_typeof(column) -%}
    case when json_valid({{ column }}) then lower(json_type({{ column }})) end
{%- endmacro %}

{#- sluice_try_json comes from the on-run-start hook (functions.sql) -#}
{% macro postgres__json_typeof(column) -%}
    json_typeof({{ target.schema }}.sluice_try_json(cast({{ column }} as text)))
{%- endmacro %}
