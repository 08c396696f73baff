with interactions as (

    select
        tenant,
        event_id,
        user_id,
        session_id,
        event_at
    from {{ ref('stg_sluice__interactions') }}

),

rankings as (

    select
        tenant,
        ranking_id as event_id,
        user_id,
        session_id,
        ranked_at as event_at
    from {{ ref('stg_sluice__rankings') }}

),

recommendations as (

    select
        tenant,
        recommendation_id as event_id,
        user_id,
        session_id,
        recommended_at as event_at
    from {{ ref('stg_sluice__recommendations') }}

),

session_events as (

    select * from interactions
    union all
    select * from rankings
    union all
    select * from recommendations

),

identified_events as (

    select
        tenant,
        session_id,
        user_id,
        event_at,
        row_number() over (
            partition by tenant, session_id
            order by event_at, event_id
        ) as identified_order
    from session_events
    where user_id is not null and session_id is not null

),

final as (

    select
        tenant,
        session_id,
        user_id,
        event_at as identified_at
    from identified_events
    where identified_order = 1

)

select * from final
