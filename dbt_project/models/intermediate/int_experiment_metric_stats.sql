{#- Per experiment, arm and metric: the moments of the per-unit numerator x and denominator y
    that the delta method needs (a ratio metric sum(x) / sum(y) over units). Each metric of
    sluice.experiments.METRICS is declared once below with its per-unit numerator and
    denominator. -#}
{%- set metrics = [
    ('click_through_rate', 'clicks', 'slots'),
    ('conversion_rate', 'converted_answers', 'answers'),
    ('purchases_per_user', 'purchases', '1'),
] %}
with units as (

    -- a unit seen in two arms (shares changed mid-experiment, a bug) belongs to neither:
    -- counted in both it would pull their values together; experiment_assignment counts it
    select * from (
        select
            *,
            count(*) over (partition by tenant, experiment, unit_id) as arms_seen
        from {{ ref('int_experiment_units') }}
    ) as seen
    where arms_seen = 1

),

by_metric as (

    {% for metric, numerator, denominator in metrics -%}
        {%- if not loop.first %}
            union all
        {% endif %}
        select
            tenant,
            experiment,
            arm,
            unit_id,
            '{{ metric }}' as metric,
            cast({{ numerator }} as {{ type_double() }}) as x,
            cast({{ denominator }} as {{ type_double() }}) as y
        from units
    {%- endfor %}

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
