{#- Incremental: the rankings int_impressions updated since the watermark (shown_list_updated_at)
    replace their rows. A list an impression named (PutEvents' recommendationId with its
    items) is a ranking here until the answer logged under that id is loaded: then it is that
    answer's (int_impressions), and its rows here go (the pre-hook). -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'ranking_id'],
    pre_hook="{{ drop_lists_answered_since() }}",
) }}
{%- set since = watermark() %}
-- what the pre-hook reads
-- depends_on: {{ ref('stg_sluice__events') }}

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
