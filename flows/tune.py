"""Flow `tune`: search hyperparameters (nested MLflow runs) and register the best via the gate."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.names import run_name
from flows.retries import IO_RETRIES
from flows.tenants import chosen_tenants, fail_if_any, settle
from flows.train import SkippedTenant
from sluice.learn.training import InsufficientDataError
from sluice.learn.tuning import TuneResult, tune_tenant
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings


@task(task_run_name="tune-{tenant}", **IO_RETRIES)
def tune_one(tenant: str, algorithm: str | None, trials: int | None,
             time_budget: float | None = None) -> TuneResult | SkippedTenant:
    """Search one tenant's hyperparameters and register the best model through the gate, or
    skip it when it has too little data, as training does: the others are tuned."""
    logger = get_run_logger()
    settings = get_settings()
    try:
        with from_settings(settings).lock(say=logger.info):  # not while dbt rebuilds
            result = tune_tenant(settings, tenant, algorithm, trials, progress=logger.info,
                                 time_budget=time_budget)
    except InsufficientDataError as exc:
        logger.warning("tenant %s skipped: %s", tenant, exc)
        return SkippedTenant(tenant, str(exc))
    best = result.best
    logger.info("%s v%s (%s %s) %s: %s", best.model_name, best.version, best.algorithm,
                best.params, "is champion" if best.promoted else "stays candidate", best.reason)
    return result


@flow(name="tune", flow_run_name=run_name("tune"))
def tune(tenant: str | None = None, algorithm: str | None = None,
         trials: int | None = None, time_budget: float | None = None) -> list[TuneResult]:
    """Tune every tenant (or one): at most `trials` within `time_budget` seconds each. A
    tenant with too little data is skipped and logged; the flow fails only when no tenant
    could be tuned. A tenant failing otherwise fails the run, naming it, after the others
    are tuned. Returns the tuned tenants' results."""
    outcomes, failed = settle([(name, tune_one(name, algorithm, trials, time_budget,
                                               return_state=True))
                               for name in chosen_tenants(tenant)])
    tuned = [o for o in outcomes if isinstance(o, TuneResult)]
    skipped = [o for o in outcomes if isinstance(o, SkippedTenant)]
    fail_if_any(failed, [r.best.tenant for r in tuned], "tuned and registered")
    if not tuned:  # nothing could be done: fail, naming what each tenant lacks
        raise InsufficientDataError("; ".join(f"tenant {s.tenant!r}: {s.skipped}"
                                              for s in skipped))
    get_run_logger().info("tuned %s; skipped %s", ", ".join(r.best.tenant for r in tuned),
                          ", ".join(s.tenant for s in skipped) or "none")
    return tuned
