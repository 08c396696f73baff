{{ latest_field_values(ref('stg_sluice__users'), 'user_id') }}
