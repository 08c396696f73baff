{#- A from-clause item: one row per key of a JSON object column, as alias.key (text) and
    alias.value (JSON). Use after `cross join`; the column must hold a JSON object. -#}
{% macro json_object_entries(column, alias) -%}
    {{ return(adapter.dispatch('json_object_entries', 'sluice')(column, alias)) }}
{%- endmacro %}

{% macro default__json_object_entries(column, alias) -%}
    json_each(cast({{ column }} as json)) as {{ alias }}
{%- endmacro %}

{% macro duckdb__json_object_entries(column, alias) -%}
    json_each({{ column }}) as {{ alias }}
{%- endmacro %}
