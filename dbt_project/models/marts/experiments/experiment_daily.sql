{#- Per experiment, arm and day: exposures (answers the arm placed slots in), units, slots,
    clicks, purchases and their rates. Interleaved slots count for the arm that placed them. -#}
with slots as (

    select * from {{ ref('int_experiment_slots') }}

),

daily as (

    select
        tenant,
        experiment,
        slot_arm as arm,
        served_date,
        count(distinct recommendation_id) as exposures,
        count(distinct unit_id) as units,
        count(*) as slots_served,
        sum(case when is_clicked then 1 else 0 end) as clicks,
        sum(case when is_purchased then 1 else 0 end) as purchases,
        count(distinct case when is_purchased then recommendation_id end) as converted_answers
    from slots
    group by tenant, experiment, slot_arm, served_date

),

final as (

    select
        tenant,
        experiment,
        arm,
        served_date,
        exposures,
        units,
        slots_served,
        clicks,
        purchases,
        cast(clicks as {{ type_double() }}) / slots_served as click_through_rate,
        cast(converted_answers as {{ type_double() }}) / exposures as conversion_rate,
        cast(purchases as {{ type_double() }}) / units as purchases_per_user
    from daily

)

select * from final
