"""What each flow command needs that earlier steps make, checked without Prefect: `sluice
transform`, `train`, `tune` and `experiments decide` call `check`, `sluice batch` calls
`check_batch`, before a flow (and so a temporary Prefect server) starts, and fail in one line
naming what is missing and the command to run next. The flows keep their own checks for
scheduled runs."""

from __future__ import annotations

import time

from sluice.errors import NotReadyError
from sluice.settings import Settings
from sluice.warehouse.engine import (
    DuckDBWarehouse,
    MissingTable,
    Warehouse,
    duckdb_path,
    from_settings,
)

INGEST_FIRST = "run `sluice ingest` first (or `sluice pipeline` for ingest, transform and train)"
TRANSFORM_FIRST = "run `sluice transform` first (or `sluice pipeline`)"


def check(command: str, settings: Settings) -> None:
    """Raises NotReadyError when `command` would fail for want of an earlier step."""
    if command == "transform":
        _ingested(from_settings(settings))
    elif command in ("train", "tune"):
        _trainable(from_settings(settings))
    elif command == "experiments" and _running_experiments(settings):
        warehouse = DuckDBWarehouse(duckdb_path(settings, "the experiment decision"))
        _ingested(warehouse)
        _relation(warehouse, "marts.experiment_results", TRANSFORM_FIRST)


def _ingested(warehouse: Warehouse) -> None:
    if isinstance(warehouse, DuckDBWarehouse) and not warehouse.path.exists():
        raise NotReadyError(f"no warehouse at {warehouse.path} yet: {INGEST_FIRST}")
    _relation(warehouse, "raw.events", INGEST_FIRST)


def _trainable(warehouse: Warehouse) -> None:
    _ingested(warehouse)
    _relation(warehouse, "marts.interactions", TRANSFORM_FIRST)
    if not warehouse.rows("select 1 from marts.interactions limit 1"):
        raise NotReadyError(f"no tenant has training interactions in {warehouse}'s "
                            "marts.interactions: send events, then run `sluice ingest` and "
                            "`sluice transform` (or `sluice pipeline`)")


def _relation(warehouse: Warehouse, name: str, next_step: str) -> None:
    try:
        warehouse.rows(f"select 1 from {name} limit 1")
    except MissingTable:
        raise NotReadyError(f"{warehouse} has no {name} yet: {next_step}") from None


def _running_experiments(settings: Settings) -> bool:
    from sluice.experiments import Experiments

    now = int(time.time() * 1000)
    return any(e.running(now) for e in Experiments(settings.home).all().values())


def check_batch(settings: Settings, tenants: list[str], segments: bool,
                model_version: str | None = None) -> None:
    """A batch answers from a tenant's champion (or the `model_version` named), or from the
    events in the raw log: with neither there is nothing to answer (and segments need a
    model). A tenant with no model and no interaction in the raw log is unknown (a typo, most
    likely): refused naming the tenants there are, as the flow would refuse it."""
    from sluice.errors import NotFoundError
    from sluice.intake.eventlog import segment_sizes
    from sluice.intake.log_tenants import asked_and_known
    from sluice.learn import registry
    from sluice.serve.batch import champion_tenants, no_champion, unknown_tenant

    client = registry.client(settings.mlflow_tracking_uri)
    if model_version is not None:  # one tenant's version (the CLI refuses it for several)
        name = settings.registered_model_name(tenants[0])
        if not model_version.isdigit() or registry.version_of(client, name,
                                                              model_version) is None:
            raise NotFoundError("--model-version", f"{name} has no version {model_version!r}: "
                                f"`sluice models --tenant {tenants[0]}` lists them, or leave "
                                "it out for the champion")
        return
    unserved = [t for t in tenants if registry.alias_version(
        client, settings.registered_model_name(t), registry.CHAMPION) is None]
    if not unserved:
        return
    if not any(size for _, size in segment_sizes(settings.raw_location)):
        raise NotReadyError(f"tenant {unserved[0]!r} has no champion model and the raw log "
                            "has no events yet: send events (POST /v1/events), or load "
                            "files and train with `sluice pipeline`")
    in_log, known = asked_and_known(settings.raw_location, unserved)  # one reading of the log
    unknown = [t for t in unserved if t not in in_log]
    if unknown:
        raise NotFoundError("--tenant", unknown_tenant(unknown[0],
                                                       champion_tenants(settings) | known))
    if segments:
        raise NotReadyError(no_champion(unserved[0], settings))

