with source as (

    select * from {{ source('sluice', 'events') }}
    where event_type = 'ranking'

),

renamed as (

    select
        tenant,
        event_id as ranking_id,
        user_id,
        session_id,
        -- the list this ranking records the impression of (PutEvents' recommendationId with
        -- an impression); null for a ranking that is its own list
        ranking_id as impression_of,
        coalesce(ranking_id, event_id) as shown_list_id,
        case when {{ json_typeof('items') }} = 'array' then items end as items,
        case when {{ json_typeof('fields') }} = 'object' then fields end as fields,
        event_at as ranked_at,
        loaded_at
    from source

)

select * from renamed
