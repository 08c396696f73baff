{#- The weight var events.weights gives an interaction type; null for types it leaves out. -#}
{% macro interaction_weight(interaction_type) -%}
    case {{ interaction_type }}
        {%- for name, weight in var('events')['weights'].items() %}
            when {{ sql_string(name) }} then cast({{ weight | float }} as {{ type_double() }})
        {%- endfor %}
    end
{%- endmacro %}
