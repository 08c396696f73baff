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

{#- The CTEs an incremental run reads what changed from, none on a full refresh:
    identified_sessions (identified_sessions below), and changed_lists (changed_lists below)
    when `lists`. Each ends in a comma: the model's own CTEs follow. A model calling this keeps
    `-- depends_on:` comments for the refs made here (dbt cannot see refs in a branch it did not
    take when it parsed the model). -#}
{% macro incremental_ctes(since, lists=false) -%}
    {%- if is_incremental() %}

    identified_sessions as (

        {{ identified_sessions(since) }}

    ),
        {%- if lists %}

    changed_lists as (

        {{ changed_lists(since, 'identified_sessions') }}

    ),
        {%- endif %}
    {%- endif %}
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
    of identified_sessions). An uncorrelated IN: DuckDB turns a correlated EXISTS into a
    DISTINCT over every row of `alias` first (a second of CPU per million rows). -#}
{% macro in_identified_session(alias, sessions) -%}
    (
        {{ alias }}.user_id is null
        and ({{ alias }}.tenant, {{ alias }}.session_id) in (
            select
                {{ sessions }}.tenant,
                {{ sessions }}.session_id
            from {{ sessions }}
        )
    )
{%- endmacro %}

{#- (tenant, ranking_id) of the shown lists (rankings and served answers) whose rows change
    since `since`: loaded since, clicked or bought since, or anonymous in a session that was
    identified since. A ranking that records the impression of another list (its ranking_id)
    changes that list. `sessions` is a CTE of identified_sessions(since). -#}
{% macro changed_lists(since, sessions) -%}
    select
        lists.tenant,
        coalesce(lists.ranking_id, lists.event_id) as ranking_id
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

{#- True when the row of `alias` (with tenant and the list's id in `id_column`) is in `lists`
    (a CTE with tenant and ranking_id: changed_lists, or int_impressions' rows); uncorrelated,
    as in_identified_session. -#}
{% macro in_changed_list(alias, lists, id_column='ranking_id') -%}
    ({{ alias }}.tenant, {{ alias }}.{{ id_column }}) in (
        select
            {{ lists }}.tenant,
            {{ lists }}.ranking_id
        from {{ lists }}
    )
{%- endmacro %}

{#- True for a row of int_impressions whose list it updated since `since`, the watermark of a
    mart copied from it (ranking_outcomes, slot_propensities): shown_list_updated_at is the latest
    load among what the list's rows are computed from, the same in every build, so a list
    whose rows changed has one later than everything the mart saw when it last ran. A mart's
    watermark (its latest list loaded) can be older than that: it then copies some lists again,
    which replacing rows by key makes harmless. One timestamp column to filter: the changed
    lists are not looked for again in the raw events, nor joined against the whole table. -#}
{% macro updated_list_since(since) -%}
    shown_list_updated_at > {{ since }}
{%- endmacro %}

{#- The data tests of an incremental model, in an incremental `dbt build`, check only the rows
    loaded since the last whole build that passed its tests: every test takes
    `where: __loaded_this_build__` (dbt_project.yml), which this turns into
    `loaded_at > <that build's latest raw load>` when sluice.warehouse.transform passes it
    (SLUICE_DBT_TESTED_SINCE) and the tested model is incremental, or has meta
    `rows_fixed_at_load` (raw.events and the staging views over it: one row per raw event,
    never changed once loaded); otherwise (a full refresh, a first build, a hand-run `dbt build`
    or `dbt test`, the tables rebuilt whole) it tests every row.

    Why the filtered tests still hold for the whole table:
    - uniqueness: each unique test's columns include the model's unique_key (for the appended
      unnested lists, the raw event's key: raw.events' primary key, each event appended once).
      delete+insert removes every kept row whose key the run writes, so a duplicate is never a
      kept row against a new one: both are kept rows (tested by the build that wrote them) or
      both were written now, and then both carry loaded_at > since unless the run rewrote an
      older key (a restitched anonymous row, a list re-scored for a late click: every row of a
      list carries the list's loaded_at, so such a pair is untested as a whole). The run's SQL
      cannot write such a pair: it picks one row per key (row_number) or unnests one raw event
      per list, and joins only on keys that are unique by construction or tested. The raw
      events and their staging views are unique on raw.events' primary key.
    - relationships: the parents (views over raw.events, whose rows are never deleted, and
      users, rebuilt in full from the same interactions) keep every key they had.
    - row checks (not_null, accepted values, expressions): a kept row is tested when it is
      written; a row rewritten with an older loaded_at comes from the same SQL over inputs that
      were tested. A full refresh (`sluice transform --full-refresh`, or any project change)
      tests every row again. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where == '__loaded_this_build__' -%}
        {%- set where = loaded_this_build() | trim -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The condition on a test's model for the rows this build loaded, or nothing: see above.
    Read only when the test runs (a value read while parsing would force dbt to parse again). -#}
{% macro loaded_this_build() -%}
    {%- if execute and not flags.FULL_REFRESH -%}
        {%- set since = env_var('SLUICE_DBT_TESTED_SINCE', '') -%}
        {#- a model's test names the model; a source's test only depends on the source -#}
        {%- set tested = graph.nodes.get(model.get('attached_node') or '')
            or graph.sources.get((model.depends_on.nodes or [''])[0]) -%}
        {%- if since and tested and (tested.config.materialized == 'incremental'
                                     or (tested.config.meta or {}).get('rows_fixed_at_load')
                                     or (tested.meta or {}).get('rows_fixed_at_load')) -%}
            loaded_at > cast('{{ since }}' as {{ dbt.type_timestamp() }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- A pre-hook of a mart of rankings copied from int_impressions (ranking_outcomes): deletes the
    lists that answers loaded since its watermark are. An impression of a list named by its id
    (impression_of) is shown as a ranking until an answer logged under that id is loaded (the
    answer is queued for the log, a click may come first): int_impressions then replaces the
    list's rows with the answer's, which the mart no longer copies. -#}
{% macro drop_lists_answered_since() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where (tenant, ranking_id) in (
            select
                answers.tenant,
                answers.event_id
            from {{ ref('stg_sluice__events') }} as answers
            where
                answers.event_type = 'recommendation'
                and answers.loaded_at > {{ watermark() }}
        )
    {%- endif -%}
{%- endmacro %}
