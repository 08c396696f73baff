with ranking_items as (

    select * from {{ ref('stg_sluice__ranking_items') }}

),

recommendation_items as (

    select * from {{ ref('stg_sluice__recommendation_items') }}

),

session_identities as (

    select * from {{ ref('int_session_identities') }}

),

interactions as (

    select * from {{ ref('int_interactions_stitched') }}
    where ranking_id is not null

),

shown_items as (

    select
        tenant,
        ranking_id,
        position,
        item_id,
        user_id,
        session_id,
        ranked_at as shown_at,
        'ranking' as shown_in,
        label,
        cast(null as {{ dbt.type_string() }}) as recommendation_source,
        cast(null as {{ type_double() }}) as propensity,
        cast(null as boolean) as explored
    from ranking_items
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
        explored
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
        shown_items.shown_at
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

)

select * from final
