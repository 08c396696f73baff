{#- An event's own user, else the user its session was tied to, else the anonymous visitor
    var events.anonymous_user_prefix || session_id. -#}
{% macro stitched_user_id(user_id, session_user_id, session_id) -%}
    coalesce(
        {{ user_id }},
        {{ session_user_id }},
        {{ sql_string(var('events')['anonymous_user_prefix']) }} || {{ session_id }}
    )
{%- endmacro %}
