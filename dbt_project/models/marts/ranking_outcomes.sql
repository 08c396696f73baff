{#- Incremental: the rankings int_impressions updated since the watermark (shown_list_updated_at)
    replace their rows. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'ranking_id'],
) }}
{%- set since = watermark() %}

with impressions as (

    select * from {{ ref('int_impressions') }}
    where
        shown_in = 'ranking'
        {% if is_incremental() -%}
            and {{ updated_list_since(since) }}
        {%- endif %}

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
        shown_at,
        loaded_at
    from impressions

)

select * from final
