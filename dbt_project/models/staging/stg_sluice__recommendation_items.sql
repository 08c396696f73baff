{#- Incremental, appended: a raw event never changes once loaded, so each is unnested once,
    when it is new (loaded after the watermark). -#}
{{ config(materialized='incremental', incremental_strategy='append') }}
{%- set since = watermark() %}

with source as (

    select * from {{ source('sluice', 'events') }}
    where
        event_type = 'recommendation'
        {% if is_incremental() %}and loaded_at > {{ since }}{% endif %}

),

recommendations as (

    select
        tenant,
        event_id as recommendation_id,
        user_id,
        session_id,
        items,
        event_at as recommended_at,
        loaded_at
    from source
    where {{ json_typeof('items') }} = 'array'

),

unnested as (

    select
        recommendations.tenant,
        recommendations.recommendation_id,
        recommendations.user_id,
        recommendations.session_id,
        recommendations.recommended_at,
        recommendations.loaded_at,
        slots.element,
        slots.position as element_number
    from recommendations
    cross join {{ json_array_elements('recommendations.items', 'slots') }}

),

renamed as (

    select
        tenant,
        recommendation_id,
        cast(coalesce(
            {{ cast_or_null(json_extract_string('element', 'position'), dbt.type_int()) }},
            element_number
        ) as {{ dbt.type_int() }}) as position,
        {{ json_extract_string('element', 'id') }} as item_id,
        {{ cast_or_null(json_extract_string('element', 'score'), type_double()) }} as score,
        {{ json_extract_string('element', 'source') }} as recommendation_source,
        nullif({{ json_extract_string('element', 'arm') }}, '') as arm,
        -- answers logged before propensities were deterministic in their model tier
        coalesce(
            {{ cast_or_null(json_extract_string('element', 'propensity'), type_double()) }},
            1.0
        ) as propensity,
        coalesce({{ json_extract_string('element', 'explored') }} = 'true', false) as explored,
        user_id,
        session_id,
        recommended_at,
        loaded_at
    from unnested
    where {{ json_extract_string('element', 'id') }} is not null

)

select * from renamed
