{%- set counts = [
    'personalized_count',
    'model_personalized_count',
    'model_non_personalized_count',
    'model_fallback_count',
    'fallback_count',
    'non_personalized_count',
    'total',
] -%}

with source as (

    select * from {{ source('sluice', 'events') }}
    where event_type = 'recommendation'

),

cleaned as (

    select
        tenant,
        event_id,
        user_id,
        session_id,
        case when {{ json_typeof('fields') }} = 'object' then fields end as fields,
        event_at,
        loaded_at
    from source

),

renamed as (

    select
        tenant,
        event_id as recommendation_id,
        user_id,
        session_id,
        {{ json_extract_string('fields', 'template') }} as template,
        {{ json_extract_string('fields', 'model_version') }} as model_version,
        nullif({{ json_extract_string('fields', 'experiment') }}, '') as experiment,
        nullif({{ json_extract_string('fields', 'arm') }}, '') as arm,
        {{ cast_or_null(json_extract_string('fields', 'arm_share'), type_double()) }} as arm_share,
        -- the experiment's unit (sluice.experiments.UNITS); null outside experiments and in
        -- answers logged before experiments had a unit (assigned by session)
        nullif({{ json_extract_string('fields', 'unit') }}, '') as experiment_unit,
        {% for count in counts -%}
            {{ cast_or_null(json_extract_string('fields', count), dbt.type_int()) }} as {{ count }},
        {% endfor -%}
        coalesce(
            {{ cast_or_null(json_extract_string('fields', 'exploration_share'), type_double()) }},
            0
        ) as exploration_share,
        coalesce(
            {{ cast_or_null(json_extract_string('fields', 'exploration_pool'), dbt.type_int()) }},
            0
        ) as exploration_pool,
        event_at as recommended_at,
        loaded_at
    from cleaned

)

select * from renamed
