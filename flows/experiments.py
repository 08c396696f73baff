"""Flow `experiments`: per running experiment, a decision from the result marts, written as a
Prefect artifact; with experiments.auto_promote, a shipped challenger becomes `champion`."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.names import run_name
from sluice.analytics.experiments import SHIP, decide, promote
from sluice.experiments import Experiments
from sluice.settings import get_settings
from sluice.warehouse.engine import duckdb_path
from sluice.warehouse.locks import warehouse_lock


@task
def decide_one(experiment_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    settings = get_settings()
    exp = Experiments(settings.home).get(experiment_id)
    config = settings.app.experiments
    warehouse = duckdb_path(settings, "the experiment decision")
    with warehouse_lock(warehouse, say=logger.info):
        decision = decide(warehouse, exp, config.min_units_per_arm)
    found = decision.as_dict()
    if decision.recommendation == SHIP and config.auto_promote:
        found["promoted_version"] = promote(settings, exp, decision)
        logger.info("experiment %s: champion moved to %s v%s", exp.id, decision.challenger,
                    found["promoted_version"])
    logger.info("experiment %s: %s (%s)", exp.id, decision.recommendation, decision.reason)
    create_markdown_artifact(key=_artifact_key(exp.id),
                             markdown=decision.markdown(),
                             description=f"{exp.id}: {decision.recommendation}")
    return found


class DecisionFailed(RuntimeError):
    """Some experiments could not be decided; every other one was (and promoted)."""


@flow(name="experiments", flow_run_name=run_name("experiments"))
def experiments() -> list[dict[str, Any]]:
    """Decide on every running experiment (read the marts the last transform built). One
    that fails (its tenant's registry, a promotion) is logged and named when the flow fails
    at the end; the others are decided, promoted and published all the same."""
    now = int(time.time() * 1000)
    store = Experiments(get_settings().home)
    running = sorted(e.id for e in store.all().values() if e.running(now))
    decided, failed = [], []
    for experiment_id in running:
        state = decide_one(experiment_id, return_state=True)
        if state.is_completed():
            decided.append(state.result())
        else:
            exc = state.result(raise_on_failure=False)
            failed.append(f"{experiment_id} (tenant {store.get(experiment_id).tenant}): "
                          f"{type(exc).__name__}: {exc}")
    if failed:
        raise DecisionFailed(f"{len(failed)} of {len(running)} experiments not decided: "
                             + "; ".join(failed) + "; decided: "
                             + (", ".join(d["experiment"] for d in decided) or "none"))
    return decided


def _artifact_key(experiment_id: str) -> str:
    """Prefect artifact keys are lowercase letters, digits and dashes."""
    return "experiment-" + "".join(c if c.isalnum() else "-" for c in experiment_id.lower())
