{#- Incremental: interactions loaded since the watermark, and the anonymous ones of sessions
    identified since (macros/incremental.sql), are (re)stitched and replace their rows. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'event_id'],
) }}
{%- set since = watermark() %}
-- what macros/incremental.sql reads when the run is incremental
-- depends_on: {{ ref('stg_sluice__events') }}

with
{{- incremental_ctes(since) }}

interactions as (

    select * from {{ ref('stg_sluice__interactions') }} as interactions
    {% if is_incremental() -%}
        where
            interactions.loaded_at > {{ since }}  -- noqa: RF03
            or {{ in_identified_session('interactions', 'identified_sessions') }}
    {%- endif %}

),

session_identities as (

    select * from {{ ref('int_session_identities') }}

),

-- the loader already dedups; a replayed log segment must still not double-count
deduplicated as (

    select
        *,
        row_number() over (
            partition by tenant, event_id
            order by loaded_at, event_at
        ) as copy_number
    from interactions

),

stitched as (

    select
        deduplicated.tenant,
        deduplicated.event_id,
        {{ stitched_user_id(
            'deduplicated.user_id', 'session_identities.user_id', 'deduplicated.session_id'
        ) }} as user_id,
        deduplicated.session_id,
        deduplicated.item_id,
        deduplicated.interaction_type,
        deduplicated.ranking_id,
        deduplicated.event_value,
        deduplicated.fields,
        deduplicated.event_at,
        deduplicated.loaded_at,
        {{ row_loaded_at('deduplicated', 'session_identities') }} as row_loaded_at,
        deduplicated.user_id is null
        and session_identities.user_id is not null as is_stitched,
        deduplicated.user_id is null
        and session_identities.user_id is null
        and deduplicated.session_id is not null as is_anonymous
    from deduplicated
    left join session_identities
        on
            deduplicated.tenant = session_identities.tenant
            and deduplicated.session_id = session_identities.session_id
    where deduplicated.copy_number = 1

)

select * from stitched
