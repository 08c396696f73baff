{#- The value at a top-level key of a JSON object, as JSON text (objects and arrays kept). -#}
{% macro json_extract_json(column, key) -%}
    {{ return(adapter.dispatch('json_extract_json', 'sluice')(column, key)) }}
{%- endmacro %}

{% macro default__json_extract_json(column, key) -%}
    json_query({{ column }}, '$."{{ key }}"')
{%- endmacro %}

{% macro duckdb__json_extract_json(column, key) -%}
    cast(json_extract({{ column }}, '$."{{ key }}"') as varchar)
{%- endmacro %}

{% macro postgres__json_extract_json(column, key) -%}
    cast(cast({{ column }} as json) -> {{ sql_string(key) }} as text)
{%- endmacro %}
