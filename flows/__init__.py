"""Prefect flows: thin wrappers over the `sluice` library."""
