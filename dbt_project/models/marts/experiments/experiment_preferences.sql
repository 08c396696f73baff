{#- Interleaving: per answer, the arm whose slots got more clicks wins it; per experiment and
    arm, the share of decided answers it won, with a 95% (normal) interval, over `units` (those
    shown interleaved answers) of which `deciding_units` decided at least one answer. A unit
    (by the experiment's unit, as int_experiment_slots takes it) answers many times and its
    answers are not independent: the interval is the delta method's over units (answers won /
    answers decided per unit, a ratio), as the split experiments' are, not a binomial over
    answers. -#}
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
        max(unit_id) as unit_id,
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
        mine.unit_id,
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

per_unit as (

    select
        tenant,
        experiment,
        arm,
        baseline_arm,
        unit_id,
        sum(won) as won,
        sum(lost) as lost,
        sum(tied) as tied,
        cast(sum(won) as {{ type_double() }}) as x,
        cast(sum(won) + sum(lost) as {{ type_double() }}) as y
    from duels
    group by tenant, experiment, arm, baseline_arm, unit_id

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
        count(*) as units,
        sum(case when y > 0 then 1 else 0 end) as deciding_units,
        sum(x) / nullif(sum(y), 0) as preference_share,
        avg(y) as mean_y,
        coalesce(var_samp(x), 0) as var_x,
        coalesce(var_samp(y), 0) as var_y,
        coalesce(covar_samp(x, y), 0) as cov_xy
    from per_unit
    group by tenant, experiment, arm, baseline_arm

),

with_variance as (

    select
        *,
        (
            var_x - 2 * preference_share * cov_xy
            + preference_share * preference_share * var_y
        ) / nullif(units * mean_y * mean_y, 0) as share_variance
    from totals

),

final as (

    select
        tenant,
        experiment,
        arm,
        baseline_arm,
        wins,
        losses,
        tied_answers,
        units,
        deciding_units,
        preference_share,
        share_variance,
        preference_share - 1.959964 * sqrt(greatest(share_variance, 0)) as ci_low,
        preference_share + 1.959964 * sqrt(greatest(share_variance, 0)) as ci_high
    from with_variance

)

select * from final
