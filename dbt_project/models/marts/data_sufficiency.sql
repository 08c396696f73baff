{%- set sufficiency = var('sufficiency') -%}
{%- set bigint = dbt.type_bigint() -%}

with events as (

    select * from {{ ref('stg_sluice__events') }}

),

interactions as (

    select * from {{ ref('interactions') }}

),

tenants as (

    select distinct tenant from events

),

user_interactions as (

    select
        tenant,
        user_id,
        count(*) as interaction_count
    from interactions
    group by tenant, user_id

),

tenant_interactions as (

    select
        tenant,
        sum(interaction_count) as interaction_count,
        sum(case when interaction_count >= 2 then 1 else 0 end) as user_count
    from user_interactions
    group by tenant

),

counted as (

    select
        tenants.tenant,
        cast(coalesce(tenant_interactions.interaction_count, 0) as {{ bigint }})
            as interactions,
        cast(coalesce(tenant_interactions.user_count, 0) as {{ bigint }})
            as users_with_two_interactions,
        cast({{ sufficiency['min_interactions'] | int }} as {{ bigint }}) as min_interactions,
        cast({{ sufficiency['min_users_with_two_interactions'] | int }} as {{ bigint }})
            as min_users_with_two_interactions
    from tenants
    left join tenant_interactions on tenants.tenant = tenant_interactions.tenant

),

final as (

    select
        *,
        case
            when interactions < min_interactions then min_interactions - interactions else 0
        end as missing_interactions,
        case
            when users_with_two_interactions < min_users_with_two_interactions
                then min_users_with_two_interactions - users_with_two_interactions
            else 0
        end as missing_users_with_two_interactions,
        interactions >= min_interactions
        and users_with_two_interactions >= min_users_with_two_interactions as is_sufficient
    from counted

)

select * from final
