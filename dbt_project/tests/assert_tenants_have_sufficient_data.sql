-- One row per tenant that has events but fewer interactions than var `sufficiency` asks for,
-- with a message saying what is missing; a warehouse without tenants passes. The messages are
-- also logged, and store_failures keeps the rows in dbt_test__audit. It warns rather than fails:
-- a tenant short of data is skipped by training, never a reason to stop the other tenants.
{{ config(severity='warn', store_failures=true) }}

{%- set shortfalls_sql -%}
with data_sufficiency as (

    select * from {{ ref('data_sufficiency') }}
    where not is_sufficient

),

shortfalls as (

    select
        tenant,
        missing_interactions,
        missing_users_with_two_interactions,
        case when missing_interactions > 0 then
            cast(missing_interactions as {{ dbt.type_string() }}) || ' more interactions (has '
            || cast(interactions as {{ dbt.type_string() }}) || ' of '
            || cast(min_interactions as {{ dbt.type_string() }}) || ')'
        end as interactions_shortfall,
        case when missing_users_with_two_interactions > 0 then
            cast(missing_users_with_two_interactions as {{ dbt.type_string() }})
            || ' more users with two interactions (has '
            || cast(users_with_two_interactions as {{ dbt.type_string() }}) || ' of '
            || cast(min_users_with_two_interactions as {{ dbt.type_string() }}) || ')'
        end as users_shortfall
    from data_sufficiency

),

final as (

    select
        tenant,
        missing_interactions,
        missing_users_with_two_interactions,
        'tenant ' || tenant || ' needs ' || coalesce(
            interactions_shortfall || ' and ' || users_shortfall,
            interactions_shortfall,
            users_shortfall
        ) as message
    from shortfalls

)

select * from final
{%- endset -%}

{%- if execute and load_relation(ref('data_sufficiency')) is not none -%}
    {%- for shortfall in run_query(shortfalls_sql) -%}
        {{ log('data_sufficiency: ' ~ shortfall['message'], info=true) }}
    {%- endfor -%}
{%- endif %}

{{ shortfalls_sql }}
