{#- A from-clause item: one row per element of a JSON array column, as alias(element, position).
    position is 1-based. Use after `cross join`; the column must hold a JSON array. -#}
{% macro json_array_elements(column, alias) -%}
    {{ return(adapter.dispatch('json_array_elements', 'sluice')(column, alias)) }}
{%- endmacro %}

{% macro default__json_array_elements(column, alias) -%}
    json_array_elements(cast({{ column }} as json)) with ordinality as {{ alias }} (element, position)
{%- endmacro %}

{% macro duckdb__json_array_elements(column, alias) -%}
    unnest(cast({{ column }} as json [])) with ordinality as {{ alias }} (element, position)
{%- endmacro %}
