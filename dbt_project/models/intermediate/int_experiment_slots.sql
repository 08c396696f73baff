{#- One row per slot of every answer served within an experiment, with its outcome. The unit
    is what assignment hashed (sluice.experiments.unit_id), by the unit the answer logged: for
    `session` the session the answer carried, else its user; for `user` the user, else the
    session (a user's sessions are one unit). The slots and their outcomes are int_impressions' (every served slot is there);
    only the experiment's labels come from the answer and, for the slot's own arm
    (interleaving), from its item row. -#}
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
        case
            when recommendations.experiment_unit = 'user'
                then coalesce(recommendations.user_id, recommendations.session_id)
            else coalesce(recommendations.session_id, recommendations.user_id)
        end as unit_id,
        cast(recommendations.recommended_at as date) as served_date,
        impressions.position,
        impressions.item_id,
        coalesce(recommendation_items.arm, recommendations.arm) as slot_arm,
        impressions.is_clicked,
        impressions.is_purchased
    from recommendations
    inner join impressions
        on
            recommendations.tenant = impressions.tenant
            and recommendations.recommendation_id = impressions.ranking_id
    inner join recommendation_items
        on
            impressions.tenant = recommendation_items.tenant
            and impressions.ranking_id = recommendation_items.recommendation_id
            and impressions.position = recommendation_items.position

)

select * from final
