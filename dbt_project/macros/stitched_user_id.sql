{#- An event's own user, else the user its session was tied to, else the anonymous visitor
    var events.anonymous_user_prefix || session_id. -#}
{% macro stitched_user_id(user_id, session_user_id, session_id) -%}
    coalesce(
        {{ user_id }},
        {{ session_user_id }},
        {{ sql_string(var('events')['anonymous_user_prefix']) }} || {{ session_id }}
    )
{%- endmacro %}

{#- When a row last changed, by load time: its own load, or, for a row without a user of its own
    that took its session's user, the load of the event that identified the session (later
    when that event arrived after the row). A row is restitched only when that identifying event
    is loaded, so an incremental model downstream that reads the rows whose `row_loaded_at` is
    later than its own watermark sees every restitched row; by `loaded_at` it would miss them.
    The same in every build, full or incremental: the identity kept is the earliest login of
    the whole history either way. -#}
{% macro row_loaded_at(relation, identities) -%}
    case
        when {{ relation }}.user_id is null and {{ identities }}.user_id is not null
            then greatest({{ relation }}.loaded_at, {{ identities }}.loaded_at)
        else {{ relation }}.loaded_at
    end
{%- endmacro %}
