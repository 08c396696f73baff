{#- Sample-ratio-mismatch check per split experiment: units per arm against the configured
    shares, Pearson's chi-square, failed at p < 0.001 (the critical values by degrees of
    freedom 1-5; more arms than six are checked against df 5, a stricter bar). A unit seen in
    more than one arm is counted in none (as in the metrics) but in crossed_units. -#}
with seen as (

    select
        *,
        count(*) over (partition by tenant, experiment, unit_id) as arms_seen
    from {{ ref('int_experiment_units') }}

),

crossed as (

    select
        tenant,
        experiment,
        count(distinct unit_id) as crossed_units
    from seen
    where arms_seen > 1
    group by tenant, experiment

),

arms as (

    select
        tenant,
        experiment,
        arm,
        max(arm_share) as arm_share,
        count(*) as units
    from seen
    where arms_seen = 1
    group by tenant, experiment, arm

),

totals as (

    select
        tenant,
        experiment,
        sum(units) as units,
        sum(arm_share) as share_total,
        count(*) as arms
    from arms
    group by tenant, experiment

),

terms as (

    select
        arms.tenant,
        arms.experiment,
        power(arms.units - totals.units * arms.arm_share / totals.share_total, 2)
        / (totals.units * arms.arm_share / totals.share_total) as term
    from arms
    inner join totals
        on arms.tenant = totals.tenant and arms.experiment = totals.experiment

),

final as (

    select
        totals.tenant,
        totals.experiment,
        totals.arms,
        totals.units,
        sum(terms.term) as chi_square,
        totals.arms - 1 as degrees_of_freedom,
        case least(totals.arms - 1, 5)
            when 1 then 10.828 when 2 then 13.816 when 3 then 16.266 when 4 then 18.467
            else 20.515
        end as critical_value
    from totals
    inner join terms
        on totals.tenant = terms.tenant and totals.experiment = terms.experiment
    group by totals.tenant, totals.experiment, totals.arms, totals.units

)

select
    final.*,
    coalesce(crossed.crossed_units, 0) as crossed_units,
    final.chi_square < final.critical_value as srm_passed
from final
left join crossed
    on final.tenant = crossed.tenant and final.experiment = crossed.experiment
