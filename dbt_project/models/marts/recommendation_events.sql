{#- Incremental: answers loaded since the watermark, and the anonymous ones of sessions
    identified since (macros/incremental.sql), replace their rows. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'recommendation_id'],
) }}
{%- set since = watermark() %}
-- what macros/incremental.sql reads when the run is incremental
-- depends_on: {{ ref('stg_sluice__events') }}

with
{{- incremental_ctes(since) }}

recommendations as (

    select * from {{ ref('stg_sluice__recommendations') }} as recommendations
    {% if is_incremental() -%}
        where
            recommendations.loaded_at > {{ since }}  -- noqa: RF03
            or {{ in_identified_session('recommendations', 'identified_sessions') }}
    {%- endif %}

),

session_identities as (

    select * from {{ ref('int_session_identities') }}

),

final as (

    select
        recommendations.tenant,
        recommendations.recommendation_id,
        {{ stitched_user_id(
            'recommendations.user_id', 'session_identities.user_id', 'recommendations.session_id'
        ) }} as user_id,
        recommendations.session_id,
        recommendations.template,
        recommendations.model_version,
        recommendations.personalized_count,
        recommendations.model_personalized_count,
        recommendations.non_personalized_count,
        recommendations.model_non_personalized_count,
        recommendations.model_fallback_count,
        recommendations.fallback_count,
        recommendations.total,
        recommendations.recommended_at,
        recommendations.loaded_at,
        {{ row_loaded_at('recommendations', 'session_identities') }} as row_loaded_at
    from recommendations
    left join session_identities
        on
            recommendations.tenant = session_identities.tenant
            and recommendations.session_id = session_identities.session_id

)

select * from final
