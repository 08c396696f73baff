with impressions as (

    select * from {{ ref('int_impressions') }}
    where shown_in = 'ranking'

),

final as (

    select
        tenant,
        ranking_id,
        item_id,
        position,
        user_id,
        is_clicked,
        is_purchased,
        label,
        shown_at
    from impressions

)

select * from final
