"""Flow `tune`: search hyperparameters (nested MLflow runs) and register the best via the gate."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task

from flows.names import run_name
from sluice.learn.training import tenants as warehouse_tenants
from sluice.learn.tuning import tune_tenant
from sluice.settings import get_settings


@task
def list_tenants() -> list[str]:
    """Tenants with training interactions in the marts."""
    return warehouse_tenants(get_settings().warehouse_path)


@task
def tune_one(tenant: str, algorithm: str | None, trials: int | None,
             time_budget: float | None = None) -> dict[str, Any]:
    """Search one tenant's hyperparameters and register the best model through the gate."""
    logger = get_run_logger()
    result = tune_tenant(get_settings(), tenant, algorithm, trials, progress=logger.info,
                         time_budget=time_budget)
    best = result.best
    logger.info("%s v%s (%s %s) %s: %s", best.model_name, best.version, best.algorithm,
                best.params, "is champion" if best.promoted else "stays candidate", best.reason)
    return {"best": asdict(best), "parent_run_id": result.parent_run_id,
            "trials": [asdict(t) for t in result.trials]}


@flow(name="tune", flow_run_name=run_name("tune"))
def tune(tenant: str | None = None, algorithm: str | None = None,
         trials: int | None = None, time_budget: float | None = None) -> list[dict[str, Any]]:
    """Tune every tenant (or one): at most `trials` within `time_budget` seconds each."""
    names = [tenant] if tenant else list_tenants()
    if not names:
        raise RuntimeError("no tenant has training interactions: run `sluice ingest` and "
                           "`sluice transform` first, or send events")
    return [tune_one(name, algorithm, trials, time_budget) for name in names]
