{#- Incremental, appended: a raw event never changes once loaded, so each is unnested once,
    when it is new (loaded after the watermark). -#}
{{ config(materialized='incremental', incremental_strategy='append') }}
{%- set since = watermark() %}

with source as (

    select * from {{ source('sluice', 'events') }}
    where
        event_type = 'ranking'
        {% if is_incremental() %}and loaded_at > {{ since }}{% endif %}

),

rankings as (

    select
        tenant,
        event_id as ranking_id,
        ranking_id as impression_of,
        user_id,
        session_id,
        items,
        event_at as ranked_at,
        loaded_at
    from source
    where {{ json_typeof('items') }} = 'array'

),

unnested as (

    select
        rankings.tenant,
        rankings.ranking_id,
        rankings.impression_of,
        rankings.user_id,
        rankings.session_id,
        rankings.ranked_at,
        rankings.loaded_at,
        shown.element,
        shown.position
    from rankings
    cross join {{ json_array_elements('rankings.items', 'shown') }}

),

renamed as (

    select
        tenant,
        ranking_id,
        impression_of,
        cast(position as {{ dbt.type_int() }}) as position,
        {{ json_extract_string('element', 'id') }} as item_id,
        {{ cast_or_null(json_extract_string('element', 'label'), type_double()) }} as label,
        {{ json_extract_json('element', 'fields') }} as fields,
        user_id,
        session_id,
        ranked_at,
        loaded_at
    from unnested
    where {{ json_extract_string('element', 'id') }} is not null

)

select * from renamed
