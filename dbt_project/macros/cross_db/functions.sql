{#- What the on-run-start hook runs: helper functions that this folder's macros call on engines
    without them. PostgreSQL 15 has no try_cast and no JSON parse that yields null for invalid
    text, so both are PL/pgSQL functions that catch the error (about 2 us a call). -#}
{% macro cross_db_functions() -%}
    {{ return(adapter.dispatch('cross_db_functions', 'sluice')()) }}
{%- endmacro %}

{% macro default__cross_db_functions() -%}
{%- endmacro %}

{% macro postgres__cross_db_functions() -%}
create schema if not exists {{ target.schema }};

create or replace function {{ target.schema }}.sluice_try_cast(value text, kind anyelement)
returns anyelement language plpgsql stable as $$
begin
    -- assignment converts the text with the input function of kind's type
    kind := value;
    return kind;
exception when others then
    return null;
end
$$;

create or replace function {{ target.schema }}.sluice_try_json(value text)
returns json language plpgsql immutable as $$
begin
    return cast(value as json);
exception when others then
    return null;
end
$$;
{%- endmacro %}
