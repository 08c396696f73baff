{#- Aggregate key/JSON-value pairs into one JSON object, as text with keys in sorted order. -#}
{% macro json_object_agg(key, value) -%}
    {{ return(adapter.dispatch('json_object_agg', 'sluice')(key, value)) }}
{%- endmacro %}

{% macro default__json_object_agg(key, value) -%}
    cast(json_object_agg({{ key }}, {{ value }} order by {{ key }}) as varchar)
{%- endmacro %}

{% macro duckdb__json_object_agg(key, value) -%}
    '{' || string_agg(
        cast(to_json({{ key }}) as varchar) || ':' || cast({{ value }} as varchar),
        ',' order by {{ key }}
    ) || '}'
{%- endmacro %}
