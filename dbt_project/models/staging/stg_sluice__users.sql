with source as (

    select * from {{ source('sluice', 'events') }}
    where event_type = 'user'

),

renamed as (

    select
        tenant,
        event_id,
        user_id,
        case when {{ json_typeof('fields') }} = 'object' then fields end as fields,
        event_at,
        loaded_at
    from source

)

select * from renamed
