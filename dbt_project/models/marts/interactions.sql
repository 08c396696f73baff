{#- Incremental: the interactions loaded since the watermark and those of sessions identified
    since (macros/incremental.sql), as int_interactions_stitched recomputed them. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'event_id'],
) }}
{%- set since = watermark() %}
-- what macros/incremental.sql reads when the run is incremental
-- depends_on: {{ ref('stg_sluice__events') }}
{% set threshold = var('events')['event_value_threshold'] %}

with
{{- incremental_ctes(since) }}

interactions as (

    select * from {{ ref('int_interactions_stitched') }} as interactions
    where
        interactions.user_id is not null  -- noqa: RF03
        and interactions.item_id is not null
        {% if is_incremental() -%}
            and (
                interactions.loaded_at > {{ since }}  -- noqa: RF03
                -- rows without a user of their own: stitched now or anonymous until now
                or (interactions.is_stitched or interactions.is_anonymous)
                and (interactions.tenant, interactions.session_id) in (
                    select
                        identified_sessions.tenant,
                        identified_sessions.session_id
                    from identified_sessions
                )
            )
        {%- endif %}

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
        loaded_at,
        row_loaded_at,
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
