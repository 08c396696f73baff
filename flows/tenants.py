"""The tenants a training flow works on, shared by `train` and `tune`."""

from __future__ import annotations

from prefect import task

from flows.retries import IO_RETRIES
from sluice.learn.training import tenants as warehouse_tenants
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings


@task(**IO_RETRIES)
def list_tenants() -> list[str]:
    """Tenants with training interactions in the marts."""
    warehouse = from_settings(get_settings())
    with warehouse.lock():  # not while dbt rebuilds the marts
        return warehouse_tenants(warehouse)


def chosen_tenants(tenant: str | None) -> list[str]:
    """The tenant asked for, or every tenant with training interactions (at least one)."""
    names = [tenant] if tenant else list_tenants()
    if not names:
        raise RuntimeError("no tenant has training interactions: run `sluice ingest` and "
                           "`sluice transform` first, or send events")
    return names
