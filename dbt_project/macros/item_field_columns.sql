{#- One typed column per var events.item_fields entry (name: type, see sql_type), read from a
    JSON object column; each line ends with a comma so it sits before the caller's next column. -#}
{% macro item_field_columns(fields_column) -%}
    {%- set taken = ['tenant', 'event_id', 'item_id', 'fields', 'event_at', 'loaded_at',
                     'first_seen_at', 'updated_at'] -%}
    {%- for name, data_type in var('events')['item_fields'].items() %}
        {%- if name in taken -%}
            {{ exceptions.raise_compiler_error(
                "events.item_fields: '" ~ name ~ "' clashes with a column of the items models") }}
        {%- endif -%}
        {%- set plain = modules.re.match('^[a-z_][a-z0-9_]*$', name) %}
    {{ cast_or_null(json_extract_string(fields_column, name), sql_type(data_type)) }}
        as {{ name if plain else adapter.quote(name) }},
    {%- endfor %}
{%- endmacro %}
