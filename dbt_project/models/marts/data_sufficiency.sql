{%- set sufficiency = var('sufficiency') -%}
{%- set bigint = dbt.type_bigint() -%}

with events as (

    select * from {{ ref('stg_sluice__events') }}

),

interactions as (

    select * from {{ ref('interactions') }}

),

-- interactions whose type has no weight in var `events.weights`: loaded, never trained on
unweighted_by_type as (

    select
        tenant,
        interaction_type,
        count(*) as interaction_count
    from {{ ref('stg_sluice__interactions') }}
    where {{ interaction_weight('interaction_type') }} is null
    group by tenant, interaction_type

),

unweighted as (

    select
        tenant,
        sum(interaction_count) as interaction_count,
        {{ dbt.listagg(
            "interaction_type || ': ' || cast(interaction_count as " ~ dbt.type_string() ~ ")",
            "', '", "order by interaction_type") }} as types
    from unweighted_by_type
    group by tenant

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
            as min_users_with_two_interactions,
        cast(coalesce(unweighted.interaction_count, 0) as {{ bigint }})
            as unweighted_interactions,
        unweighted.types as unweighted_types
    from tenants
    left join tenant_interactions on tenants.tenant = tenant_interactions.tenant
    left join unweighted on tenants.tenant = unweighted.tenant

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
