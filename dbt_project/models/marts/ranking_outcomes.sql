{#- Incremental: the rankings int_impressions recomputed (changed_lists in
    macros/incremental.sql) replace their rows. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'ranking_id'],
) }}
{%- set since = watermark() %}
-- what macros/incremental.sql reads when the run is incremental
-- depends_on: {{ ref('stg_sluice__events') }}
-- depends_on: {{ ref('stg_sluice__interactions') }}

with
{{- incremental_ctes(since, lists=true) }}

impressions as (

    select * from {{ ref('int_impressions') }} as impressions
    where
        shown_in = 'ranking'  -- noqa: RF03
        {% if is_incremental() -%}
            and {{ in_changed_list('impressions', 'changed_lists') }}
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
