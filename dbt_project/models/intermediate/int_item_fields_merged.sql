with items as (

    select
        tenant,
        event_id,
        item_id,
        fields,
        event_at
    from {{ ref('stg_sluice__items') }}
    where fields is not null

),

field_values as (

    select
        items.tenant,
        items.item_id,
        items.event_id,
        items.event_at,
        entries.key as field_name,
        entries.value as field_value
    from items
    cross join {{ json_object_entries('items.fields', 'entries') }}

),

-- later events overwrite single keys, so the latest value is picked per field, not per event
latest_values as (

    select
        *,
        row_number() over (
            partition by tenant, item_id, field_name
            order by event_at desc, event_id desc
        ) as recency
    from field_values

),

final as (

    select
        tenant,
        item_id,
        {{ json_object_agg('field_name', 'field_value') }} as fields
    from latest_values
    where recency = 1
    group by tenant, item_id

)

select * from final
