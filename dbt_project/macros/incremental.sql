{#- Incremental models: what an incremental run recomputes.

    Every incremental model keeps `loaded_at`, the raw load time of the event each row comes
    from; its largest value is the model's watermark. Ingest and dbt take the warehouse lock in
    turn and stamp each load with the time it started, so every raw row loaded after the
    model's last run has a later loaded_at than any it holds. A run recomputes:
    - rows of events loaded after the watermark (late events included: load time, not event
      time, decides what is new);
    - rows of sessions that got an identified event since then (a visitor who logs in: the
      earlier anonymous rows of the session now belong to the user), when the row has no user
      of its own;
    - for shown lists, lists that got interactions since then (their clicks and purchases).
    A model whose last run ended early (a failed build) has an older watermark and recomputes
    more; rows are replaced by key (delete+insert), so recomputing twice changes nothing. -#}

{#- The model's watermark as a SQL literal, read when the model runs. -#}
{% macro watermark() -%}
    {%- if execute and is_incremental() -%}
        {%- set found = run_query(
            "select cast(max(loaded_at) as " ~ dbt.type_string() ~ ") from " ~ this
        ).columns[0].values()[0] -%}
        cast('{{ found or "1970-01-01 00:00:00" }}' as {{ dbt.type_timestamp() }})
    {%- else -%}
        cast('1970-01-01 00:00:00' as {{ dbt.type_timestamp() }})
    {%- endif -%}
{%- endmacro %}

{#- (tenant, session_id) of the sessions that got an event with a user since `since`: their
    identity (int_session_identities) may be new or earlier than before. -#}
{% macro identified_sessions(since) -%}
    select distinct
        tenant,
        session_id
    from {{ ref('stg_sluice__events') }}
    where
        loaded_at > {{ since }}
        and event_type in ('interaction', 'ranking', 'recommendation')
        and user_id is not null
        and session_id is not null
{%- endmacro %}

{#- True for a row of `alias` without a user of its own whose session is in `sessions` (a CTE
    of identified_sessions). -#}
{% macro in_identified_session(alias, sessions) -%}
    (
        {{ alias }}.user_id is null
        and exists (
            select 1 from {{ sessions }}
            where
                {{ sessions }}.tenant = {{ alias }}.tenant
                and {{ sessions }}.session_id = {{ alias }}.session_id
        )
    )
{%- endmacro %}

{#- (tenant, ranking_id) of the shown lists (rankings and served answers) whose rows change
    since `since`: loaded since, clicked or bought since, or anonymous in a session that was
    identified since. `sessions` is a CTE of identified_sessions(since). -#}
{% macro changed_lists(since, sessions) -%}
    select
        lists.tenant,
        lists.event_id as ranking_id
    from {{ ref('stg_sluice__events') }} as lists
    where
        lists.event_type in ('ranking', 'recommendation')
        and (lists.loaded_at > {{ since }} or {{ in_identified_session('lists', sessions) }})
    union
    select
        tenant,
        ranking_id
    from {{ ref('stg_sluice__interactions') }}
    where loaded_at > {{ since }} and ranking_id is not null
{%- endmacro %}

{#- True when the row of `alias` (with tenant and ranking_id) is in `lists` (a CTE of
    changed_lists). -#}
{% macro in_changed_list(alias, lists) -%}
    exists (
        select 1 from {{ lists }}
        where {{ lists }}.tenant = {{ alias }}.tenant and {{ lists }}.ranking_id = {{ alias }}.ranking_id
    )
{%- endmacro %}
