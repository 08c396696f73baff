{#- The scalar at a top-level key of a JSON object, as text (null when absent). -#}
{% macro json_extract_string(column, key) -%}
    {{ return(adapter.dispatch('json_extract_string', 'sluice')(column, key)) }}
{%- endmacro %}

{% macro default__json_extract_string(column, key) -%}
    json_value({{ column }}, '$."{{ key }}"')
{%- endmacro %}

{% macro duckdb__json_extract_string(column, key) -%}
    json_extract_string({{ column }}, '$."{{ key }}"')
{%- endmacro %}

{% macro postgres__json_extract_string(column, key) -%}
    (cast({{ column }} as json) ->> {{ sql_string(key) }})
{%- endmacro %}
