with items as (

    select * from {{ ref('stg_sluice__items') }}

),

merged_fields as (

    select * from {{ ref('int_item_fields_merged') }}

),

item_history as (

    select
        tenant,
        item_id,
        min(event_at) as first_seen_at,
        max(event_at) as updated_at
    from items
    group by tenant, item_id

),

joined as (

    select
        item_history.tenant,
        item_history.item_id,
        coalesce(merged_fields.fields, '{}') as fields,
        item_history.first_seen_at,
        item_history.updated_at
    from item_history
    left join merged_fields
        on
            item_history.tenant = merged_fields.tenant
            and item_history.item_id = merged_fields.item_id

),

final as (

    select
        tenant,
        item_id,
        fields,
        {{ item_field_columns('fields') }}
        first_seen_at,
        updated_at
    from joined

)

select * from final
