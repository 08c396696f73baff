{#- One row per (tenant, entity) whose `fields` JSON object merges every event's fields:
    later events overwrite single keys, so the latest value is picked per field, not per
    event. Shared by int_item_fields_merged and int_user_fields_merged. -#}
{% macro latest_field_values(relation, entity_id) %}
with entities as (

    select
        tenant,
        event_id,
        {{ entity_id }},
        fields,
        event_at
    from {{ relation }}
    where fields is not null

),

field_values as (

    select
        entities.tenant,
        entities.{{ entity_id }},
        entities.event_id,
        entities.event_at,
        entries.key as field_name,
        entries.value as field_value
    from entities
    cross join {{ json_object_entries('entities.fields', 'entries') }}

),

latest_values as (

    select
        *,
        row_number() over (
            partition by tenant, {{ entity_id }}, field_name
            order by event_at desc, event_id desc
        ) as recency
    from field_values

),

final as (

    select
        tenant,
        {{ entity_id }},
        {{ json_object_agg('field_name', 'field_value') }} as fields
    from latest_values
    where recency = 1
    group by tenant, {{ entity_id }}

)

select * from final
{% endmacro %}
