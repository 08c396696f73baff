{#- Per experiment, arm and metric: the moments of the per-unit numerator x and denominator y
    that the delta method needs (a ratio metric sum(x) / sum(y) over units). -#}
with units as (

    select * from {{ ref('int_experiment_units') }}

),

by_metric as (

    select
        tenant,
        experiment,
        arm,
        unit_id,
        'click_through_rate' as metric,
        cast(clicks as {{ type_double() }}) as x,
        cast(slots as {{ type_double() }}) as y
    from units
    union all
    select
        tenant,
        experiment,
        arm,
        unit_id,
        'conversion_rate' as metric,
        cast(converted_answers as {{ type_double() }}) as x,
        cast(answers as {{ type_double() }}) as y
    from units
    union all
    select
        tenant,
        experiment,
        arm,
        unit_id,
        'purchases_per_user' as metric,
        cast(purchases as {{ type_double() }}) as x,
        cast(1 as {{ type_double() }}) as y
    from units

),

final as (

    select
        tenant,
        experiment,
        arm,
        metric,
        count(*) as units,
        avg(x) as mean_x,
        avg(y) as mean_y,
        coalesce(var_samp(x), 0) as var_x,
        coalesce(var_samp(y), 0) as var_y,
        coalesce(covar_samp(x, y), 0) as cov_xy
    from by_metric
    group by tenant, experiment, arm, metric

)

select * from final
