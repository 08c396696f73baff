"""Warehouse: raw tables, exactly-once ingest, the dbt transform, and the lock they share."""
