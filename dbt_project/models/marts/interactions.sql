{%- set threshold = var('events')['event_value_threshold'] -%}

with interactions as (

    select * from {{ ref('int_interactions_stitched') }}
    where user_id is not null and item_id is not null

),

weighted as (

    select
        tenant,
        event_id,
        user_id,
        item_id,
        interaction_type,
        event_at,
        event_value,
        {{ interaction_weight('interaction_type') }} as weight
    from interactions

),

final as (

    select * from weighted
    where
        weight is not null
        -- without a threshold every value passes, null included
        and {% if threshold is none %}true{% else %}event_value >= {{ threshold }}{% endif %}

)

select * from final
