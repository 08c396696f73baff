"""The tenants a training flow works on, shared by `train` and `tune`."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.states import State

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


class TenantsFailed(RuntimeError):
    """Tenants that failed for a reason other than too little data, after the others ran."""


def settle(states: list[tuple[str, State]]) -> tuple[list[Any], list[str]]:
    """Each tenant's result, and for each failed one `tenant 'T': Error: reason` (first line):
    one tenant's failure never keeps the others from finishing."""
    results, failed = [], []
    for tenant, state in states:
        try:
            results.append(state.result())
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            failed.append(f"tenant {tenant!r}: {type(exc).__name__}: {reason}")
    return results, failed


def fail_if_any(failed: list[str], done: list[str], verb: str) -> None:
    """Fail the run in one line naming the failed tenants, once the others are done."""
    if failed:
        raise TenantsFailed(f"{'; '.join(failed)} ({verb}: {', '.join(done) or 'none'})")
