-- One row per slot of a served answer with the probability the policy gave it and whether it
-- was clicked: what sluice.learn.offpolicy weighs candidates by.
{#- Incremental: the answers int_impressions updated since the watermark (shown_list_updated_at)
    replace their rows. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'recommendation_id'],
) }}
{%- set since = watermark() %}

with impressions as (

    select * from {{ ref('int_impressions') }}
    where
        shown_in = 'recommendation'
        {% if is_incremental() -%}
            and {{ updated_list_since(since) }}
        {%- endif %}

),

recommendations as (

    select * from {{ ref('stg_sluice__recommendations') }} as recommendations
    {% if is_incremental() -%}
        where {{ in_changed_list('recommendations', 'impressions', 'recommendation_id') }}
    {%- endif %}

),

final as (

    select
        impressions.tenant,
        impressions.ranking_id as recommendation_id,
        impressions.user_id,
        recommendations.template,
        recommendations.model_version,
        impressions.position,
        impressions.item_id,
        impressions.recommendation_source,
        impressions.propensity,
        impressions.explored,
        recommendations.exploration_share,
        recommendations.exploration_pool,
        impressions.is_clicked,
        impressions.shown_at,
        impressions.loaded_at
    from impressions
    inner join recommendations
        on
            impressions.tenant = recommendations.tenant
            and impressions.ranking_id = recommendations.recommendation_id

)

select * from final
