{#- Aggregate key/JSON-value pairs into one JSON object, as text with keys in byte order and no
    spaces between tokens. Each value's text is kept as it came (DuckDB writes values compactly,
    PostgreSQL's json keeps them as loaded; ingest loads compact JSON, so the two agree). -#}
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

{#- json_object_agg would put spaces around ':' and ','; "C" orders keys by byte, like DuckDB -#}
{% macro postgres__json_object_agg(key, value) -%}
    '{' || string_agg(
        cast(to_json({{ key }}) as text) || ':' || cast({{ value }} as text),
        ',' order by {{ key }} collate "C"
    ) || '}'
{%- endmacro %}
