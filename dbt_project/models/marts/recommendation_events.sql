with recommendations as (

    select * from {{ ref('stg_sluice__recommendations') }}

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
        recommendations.recommended_at
    from recommendations
    left join session_identities
        on
            recommendations.tenant = session_identities.tenant
            and recommendations.session_id = session_identities.session_id

)

select * from final
