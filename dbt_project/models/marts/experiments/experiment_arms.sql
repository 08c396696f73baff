{#- Per split experiment, arm and metric: the arm's ratio sum(x) / sum(y) over its units, the
    variance of that ratio by the delta method, and its 95% interval. experiment_results
    pairs these rows into differences. -#}
with stats as (

    select
        *,
        mean_x / nullif(mean_y, 0) as arm_value
    from {{ ref('int_experiment_metric_stats') }}

),

with_variance as (

    select
        *,
        (var_x - 2 * arm_value * cov_xy + arm_value * arm_value * var_y)
        / nullif(units * mean_y * mean_y, 0) as value_variance
    from stats

),

final as (

    select
        tenant,
        experiment,
        arm,
        metric,
        units,
        arm_value,
        value_variance,
        arm_value - 1.959964 * sqrt(greatest(value_variance, 0)) as ci_low,
        arm_value + 1.959964 * sqrt(greatest(value_variance, 0)) as ci_high
    from with_variance

)

select * from final
