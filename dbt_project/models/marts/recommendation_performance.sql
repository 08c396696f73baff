with impressions as (

    select * from {{ ref('int_impressions') }}
    where shown_in = 'recommendation'

),

daily as (

    select
        tenant,
        recommendation_source,
        cast(shown_at as date) as served_date,
        count(*) as slots_served,
        count(case when is_clicked then 1 end) as clicks,
        count(case when is_purchased then 1 end) as purchases
    from impressions
    group by tenant, recommendation_source, cast(shown_at as date)

),

final as (

    select
        *,
        cast(clicks as {{ type_double() }}) / slots_served as click_through_rate
    from daily

)

select * from final
