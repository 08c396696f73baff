with source as (

    select * from {{ source('sluice', 'events') }}
    where event_type = 'item'

),

cleaned as (

    select
        tenant,
        event_id,
        item_id,
        case when {{ json_typeof('fields') }} = 'object' then fields end as fields,
        event_at,
        loaded_at
    from source

),

renamed as (

    select
        tenant,
        event_id,
        item_id,
        fields,
        {{ item_field_columns('fields') }}
        event_at,
        loaded_at
    from cleaned

)

select * from renamed
