with source as (

    select * from {{ source('sluice', 'events') }}
    where event_type = 'interaction'

),

renamed as (

    select
        tenant,
        event_id,
        user_id,
        session_id,
        item_id,
        interaction_type,
        ranking_id,
        event_value,
        case when {{ json_typeof('fields') }} = 'object' then fields end as fields,
        event_at,
        loaded_at
    from source

)

select * from renamed
