{#- Incremental: every slot of a shown list that changed since the watermark (loaded, clicked
    or bought, or its anonymous session identified since: macros/incremental.sql) is recomputed
    with all of the list's interactions, and replaces the list's rows. shown_list_updated_at (the
    latest load among the list and what it is recomputed from) tells the marts copied from
    this model which lists to copy again, without finding the changed lists a second time. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'ranking_id'],
) }}
{%- set since = watermark() %}
-- what macros/incremental.sql reads when the run is incremental
-- depends_on: {{ ref('stg_sluice__events') }}
-- depends_on: {{ ref('stg_sluice__interactions') }}

with
{{- incremental_ctes(since, lists=true) }}

-- a ranking is its own list, or records the impression of the list it names (impression_of:
-- PutEvents' recommendationId given with an impression), which it is then shown under
ranking_items as (

    select
        shown.tenant,
        shown.ranking_id,
        coalesce(shown.impression_of, shown.ranking_id) as shown_list_id,
        shown.impression_of,
        shown.position,
        shown.item_id,
        shown.user_id,
        shown.session_id,
        shown.ranked_at,
        shown.label,
        shown.loaded_at
    from {{ ref('stg_sluice__ranking_items') }} as shown
    {% if is_incremental() -%}
        where (shown.tenant, coalesce(shown.impression_of, shown.ranking_id)) in (
            select
                changed_lists.tenant,
                changed_lists.ranking_id
            from changed_lists
        )
    {%- endif %}

),

-- the impressions recorded of answers Sluice logged: the answer is that list (its slots carry
-- source and propensity), so they make no second one
answered as (

    select
        answers.tenant,
        answers.event_id as recommendation_id
    from {{ ref('stg_sluice__events') }} as answers
    where
        answers.event_type = 'recommendation'
        and (answers.tenant, answers.event_id) in (
            select
                ranking_items.tenant,
                ranking_items.impression_of
            from ranking_items
            where ranking_items.impression_of is not null
        )

),

-- one ranking per list: of several impressions recorded of one list (a click on each of two
-- of its items, each event with its impression), the first recorded
ranking_lists as (

    select
        ranking_items.*,
        dense_rank() over (
            partition by ranking_items.tenant, ranking_items.shown_list_id
            order by ranking_items.ranked_at, ranking_items.ranking_id
        ) as recorded
    from ranking_items
    left join answered
        on
            ranking_items.tenant = answered.tenant
            and ranking_items.impression_of = answered.recommendation_id
    where answered.recommendation_id is null

),

recommendation_items as (

    select * from {{ ref('stg_sluice__recommendation_items') }} as shown
    {% if is_incremental() -%}
        where {{ in_changed_list('shown', 'changed_lists', 'recommendation_id') }}
    {%- endif %}

),

session_identities as (

    select * from {{ ref('int_session_identities') }}

),

interactions as (

    select * from {{ ref('int_interactions_stitched') }} as interactions
    where
        interactions.ranking_id is not null  -- noqa: RF03
        {% if is_incremental() -%}
            and {{ in_changed_list('interactions', 'changed_lists') }}
        {%- endif %}

),

shown_items as (

    select
        tenant,
        shown_list_id as ranking_id,
        position,
        item_id,
        user_id,
        session_id,
        ranked_at as shown_at,
        'ranking' as shown_in,
        label,
        cast(null as {{ dbt.type_string() }}) as recommendation_source,
        cast(null as {{ type_double() }}) as propensity,
        cast(null as boolean) as explored,
        loaded_at
    from ranking_lists
    where recorded = 1
    union all
    select
        tenant,
        recommendation_id as ranking_id,
        position,
        item_id,
        user_id,
        session_id,
        recommended_at as shown_at,
        'recommendation' as shown_in,
        cast(null as {{ type_double() }}) as label,
        recommendation_source,
        propensity,
        explored,
        loaded_at
    from recommendation_items

),

outcomes as (

    select
        tenant,
        ranking_id,
        item_id,
        max(case when interaction_type = 'click' then 1 else 0 end) = 1 as is_clicked,
        max(case when interaction_type = 'purchase' then 1 else 0 end) = 1 as is_purchased
    from interactions
    group by tenant, ranking_id, item_id

),

-- the latest load of an interaction naming the list, whichever item it names
interactions_per_list as (

    select
        tenant,
        ranking_id,
        max(loaded_at) as loaded_at
    from interactions
    group by tenant, ranking_id

),

final as (

    select
        shown_items.tenant,
        shown_items.ranking_id,
        shown_items.position,
        shown_items.item_id,
        {{ stitched_user_id(
            'shown_items.user_id', 'session_identities.user_id', 'shown_items.session_id'
        ) }} as user_id,
        shown_items.shown_in,
        shown_items.recommendation_source,
        shown_items.propensity,
        shown_items.explored,
        shown_items.label,
        coalesce(outcomes.is_clicked, false) as is_clicked,
        coalesce(outcomes.is_purchased, false) as is_purchased,
        shown_items.shown_at,
        shown_items.loaded_at,
        -- the same for every row of a list (a list has one user or session): its own load,
        -- its interactions' and, when anonymous, its session identity's
        greatest(
            shown_items.loaded_at,
            coalesce(interactions_per_list.loaded_at, shown_items.loaded_at),
            case
                when shown_items.user_id is null
                    then coalesce(session_identities.loaded_at, shown_items.loaded_at)
                else shown_items.loaded_at
            end
        ) as shown_list_updated_at
    from shown_items
    left join session_identities
        on
            shown_items.tenant = session_identities.tenant
            and shown_items.session_id = session_identities.session_id
    left join outcomes
        on
            shown_items.tenant = outcomes.tenant
            and shown_items.ranking_id = outcomes.ranking_id
            and shown_items.item_id = outcomes.item_id
    left join interactions_per_list
        on
            shown_items.tenant = interactions_per_list.tenant
            and shown_items.ranking_id = interactions_per_list.ranking_id

)

select * from final
