{#- Per experiment, metric and ordered pair of arms: each arm's ratio, the difference and its
    95% interval by the delta method over units (as assignment hashed them, by the
    experiment's unit: int_experiment_slots); the arms' values and variances come from
    experiment_arms. -#}
with with_variance as (

    select * from {{ ref('experiment_arms') }}

),

pairs as (

    select
        arm.tenant,
        arm.experiment,
        arm.metric,
        arm.arm,
        baseline.arm as baseline_arm,
        arm.units,
        baseline.units as baseline_units,
        arm.arm_value,
        baseline.arm_value as baseline_value,
        arm.arm_value - baseline.arm_value as difference,
        sqrt(arm.value_variance + baseline.value_variance) as standard_error
    from with_variance as arm
    inner join with_variance as baseline
        on
            arm.tenant = baseline.tenant
            and arm.experiment = baseline.experiment
            and arm.metric = baseline.metric
            and arm.arm <> baseline.arm

),

final as (

    select
        *,
        difference / nullif(baseline_value, 0) as relative_difference,
        difference - 1.959964 * standard_error as ci_low,
        difference + 1.959964 * standard_error as ci_high
    from pairs

)

select * from final
