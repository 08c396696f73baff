{#- Cast that yields null for values of the wrong shape (bad input must not fail the build).
    Text of a fractional number cast to an integer type rounds on DuckDB, is null elsewhere. -#}
{% macro cast_or_null(field, type) -%}
    {{ return(adapter.dispatch('cast_or_null', 'sluice')(field, type)) }}
{%- endmacro %}

{% macro default__cast_or_null(field, type) -%}
    cast({{ field }} as {{ type }})
{%- endmacro %}

{% macro duckdb__cast_or_null(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}

{#- sluice_try_cast comes from the on-run-start hook (functions.sql) -#}
{% macro postgres__cast_or_null(field, type) -%}
    {{ target.schema }}.sluice_try_cast(cast({{ field }} as text), cast(null as {{ type }}))
{%- endmacro %}
