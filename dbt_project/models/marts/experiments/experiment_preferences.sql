{#- Interleaving: per answer, the arm whose slots got more clicks wins it; per experiment and
    arm, the share of decided answers it won, with a 95% (normal) interval. -#}
with slots as (

    select * from {{ ref('int_experiment_slots') }}
    where answer_arm = 'interleaved'  -- sluice.experiments.INTERLEAVED

),

answer_arms as (

    select
        tenant,
        experiment,
        recommendation_id,
        slot_arm as arm,
        sum(case when is_clicked then 1 else 0 end) as clicks
    from slots
    group by tenant, experiment, recommendation_id, slot_arm

),

duels as (

    select
        mine.tenant,
        mine.experiment,
        mine.arm,
        theirs.arm as baseline_arm,
        case when mine.clicks > theirs.clicks then 1 else 0 end as won,
        case when mine.clicks < theirs.clicks then 1 else 0 end as lost,
        case when mine.clicks = theirs.clicks and mine.clicks > 0 then 1 else 0 end as tied
    from answer_arms as mine
    inner join answer_arms as theirs
        on
            mine.tenant = theirs.tenant
            and mine.recommendation_id = theirs.recommendation_id
            and mine.arm <> theirs.arm

),

totals as (

    select
        tenant,
        experiment,
        arm,
        baseline_arm,
        sum(won) as wins,
        sum(lost) as losses,
        sum(tied) as tied_answers,
        cast(sum(won) as {{ type_double() }}) / nullif(sum(won) + sum(lost), 0)
            as preference_share
    from duels
    group by tenant, experiment, arm, baseline_arm

),

final as (

    select
        *,
        preference_share - 1.959964 * sqrt(
            preference_share * (1 - preference_share) / nullif(wins + losses, 0)
        ) as ci_low,
        preference_share + 1.959964 * sqrt(
            preference_share * (1 - preference_share) / nullif(wins + losses, 0)
        ) as ci_high
    from totals

)

select * from final
