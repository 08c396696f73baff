with source as (

    select * from {{ source('sluice', 'events') }}

),

renamed as (

    select
        tenant,
        event_id,
        event_type,
        user_id,
        session_id,
        item_id,
        ranking_id,
        event_at,
        source_file,
        loaded_at
    from source

)

select * from renamed
