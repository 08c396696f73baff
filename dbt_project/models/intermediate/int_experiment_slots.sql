{#- One row per slot of every answer served within an experiment, with its outcome. The unit
    is what assignment hashed (sluice.experiments): the session the answer carried, else its
    user. -#}
with recommendations as (

    select * from {{ ref('stg_sluice__recommendations') }}
    where experiment is not null

),

recommendation_items as (

    select * from {{ ref('stg_sluice__recommendation_items') }}

),

impressions as (

    select * from {{ ref('int_impressions') }}
    where shown_in = 'recommendation'

),

final as (

    select
        recommendations.tenant,
        recommendations.experiment,
        recommendations.arm as answer_arm,
        recommendations.arm_share,
        recommendations.recommendation_id,
        coalesce(recommendations.session_id, recommendations.user_id) as unit_id,
        cast(recommendations.recommended_at as date) as served_date,
        recommendation_items.position,
        recommendation_items.item_id,
        coalesce(recommendation_items.arm, recommendations.arm) as slot_arm,
        coalesce(impressions.is_clicked, false) as is_clicked,
        coalesce(impressions.is_purchased, false) as is_purchased
    from recommendations
    inner join recommendation_items
        on
            recommendations.tenant = recommendation_items.tenant
            and recommendations.recommendation_id = recommendation_items.recommendation_id
    left join impressions
        on
            recommendation_items.tenant = impressions.tenant
            and recommendation_items.recommendation_id = impressions.ranking_id
            and recommendation_items.position = impressions.position

)

select * from final
