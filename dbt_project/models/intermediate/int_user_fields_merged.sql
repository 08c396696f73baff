with users as (

    select
        tenant,
        event_id,
        user_id,
        fields,
        event_at
    from {{ ref('stg_sluice__users') }}
    where fields is not null

),

field_values as (

    select
        users.tenant,
        users.user_id,
        users.event_id,
        users.event_at,
        entries.key as field_name,
        entries.value as field_value
    from users
    cross join {{ json_object_entries('users.fields', 'entries') }}

),

-- later events overwrite single keys, so the latest value is picked per field, not per event
latest_values as (

    select
        *,
        row_number() over (
            partition by tenant, user_id, field_name
            order by event_at desc, event_id desc
        ) as recency
    from field_values

),

final as (

    select
        tenant,
        user_id,
        {{ json_object_agg('field_name', 'field_value') }} as fields
    from latest_values
    where recency = 1
    group by tenant, user_id

)

select * from final
