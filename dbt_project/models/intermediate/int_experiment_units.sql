{#- Per split (A/B) experiment, arm and unit: the sums the per-unit metrics are ratios of.
    Interleaved answers have no arm of their own; experiment_preferences reads them. -#}
with slots as (

    select * from {{ ref('int_experiment_slots') }}
    where answer_arm <> 'interleaved'  -- sluice.experiments.INTERLEAVED

),

answers as (

    select
        tenant,
        experiment,
        answer_arm as arm,
        unit_id,
        recommendation_id,
        max(arm_share) as arm_share,
        count(*) as slots,
        sum(case when is_clicked then 1 else 0 end) as clicks,
        sum(case when is_purchased then 1 else 0 end) as purchases
    from slots
    group by tenant, experiment, answer_arm, unit_id, recommendation_id

),

final as (

    select
        tenant,
        experiment,
        arm,
        unit_id,
        max(arm_share) as arm_share,
        count(*) as answers,
        sum(case when purchases > 0 then 1 else 0 end) as converted_answers,
        sum(slots) as slots,
        sum(clicks) as clicks,
        sum(purchases) as purchases
    from answers
    group by tenant, experiment, arm, unit_id

)

select * from final
