{#- Cast that yields null for values of the wrong shape (bad input must not fail the build). -#}
{% macro cast_or_null(field, type) -%}
    {{ return(adapter.dispatch('cast_or_null', 'sluice')(field, type)) }}
{%- endmacro %}

{% macro default__cast_or_null(field, type) -%}
    cast({{ field }} as {{ type }})
{%- endmacro %}

{% macro duckdb__cast_or_null(field, type) -%}
    try_cast({{ field }} as {{ type }})
{%- endmacro %}
