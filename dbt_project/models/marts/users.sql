with users as (

    select * from {{ ref('stg_sluice__users') }}

),

interactions as (

    select * from {{ ref('int_interactions_stitched') }}
    where user_id is not null

),

merged_fields as (

    select * from {{ ref('int_user_fields_merged') }}

),

user_events as (

    select
        tenant,
        user_id,
        event_at,
        true as is_profile,
        false as is_anonymous
    from users
    union all
    select
        tenant,
        user_id,
        event_at,
        false as is_profile,
        is_anonymous
    from interactions

),

user_history as (

    select
        tenant,
        user_id,
        min(event_at) as first_seen_at,
        max(case when is_profile then event_at end) as updated_at,
        min(case when is_anonymous then 1 else 0 end) = 1 as is_anonymous
    from user_events
    group by tenant, user_id

),

final as (

    select
        user_history.tenant,
        user_history.user_id,
        coalesce(merged_fields.fields, '{}') as fields,
        user_history.first_seen_at,
        user_history.updated_at,
        user_history.is_anonymous
    from user_history
    left join merged_fields
        on
            user_history.tenant = merged_fields.tenant
            and user_history.user_id = merged_fields.user_id

)

select * from final
