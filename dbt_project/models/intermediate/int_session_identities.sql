{#- Incremental: a run reads only the identified events loaded since its watermark and the
    rows it already holds for their sessions; the earliest of both is the earliest of the
    whole history, so a late event that happened before the session's known login wins as it
    would in a full refresh. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'session_id'],
) }}
{%- set since = watermark() %}
{#- the events that tie a session to a user; each source filters its own rows, as DuckDB does
    not push a filter over a union of CTEs into their scans -#}
{%- set identified_since -%}
    user_id is not null and session_id is not null
    {%- if is_incremental() %} and loaded_at > {{ since }}{% endif %}
{%- endset %}

with interactions as (

    select
        tenant,
        event_id,
        user_id,
        session_id,
        event_at,
        loaded_at
    from {{ ref('stg_sluice__interactions') }}
    where {{ identified_since }}

),

rankings as (

    select
        tenant,
        ranking_id as event_id,
        user_id,
        session_id,
        ranked_at as event_at,
        loaded_at
    from {{ ref('stg_sluice__rankings') }}
    where {{ identified_since }}

),

recommendations as (

    select
        tenant,
        recommendation_id as event_id,
        user_id,
        session_id,
        recommended_at as event_at,
        loaded_at
    from {{ ref('stg_sluice__recommendations') }}
    where {{ identified_since }}

),

new_identified as (

    select * from interactions
    union all
    select * from rankings
    union all
    select * from recommendations

),

identified_events as (

    select * from new_identified
    {% if is_incremental() %}
        union all
        select
            known.tenant,
            known.identified_by as event_id,
            known.user_id,
            known.session_id,
            known.identified_at as event_at,
            known.loaded_at
        from {{ this }} as known
        where (known.tenant, known.session_id) in (
            select
                new_identified.tenant,
                new_identified.session_id
            from new_identified
        )
    {% endif %}

),

ordered as (

    select
        *,
        row_number() over (
            partition by tenant, session_id
            order by event_at, event_id
        ) as identified_order
    from identified_events

),

final as (

    select
        tenant,
        session_id,
        user_id,
        event_at as identified_at,
        event_id as identified_by,
        loaded_at
    from ordered
    where identified_order = 1

)

select * from final
