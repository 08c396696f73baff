{{ latest_field_values(ref('stg_sluice__items'), 'item_id') }}
