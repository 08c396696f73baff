"""Flow `train`: marts -> matrix -> implicit fit -> evaluate -> MLflow run -> registry gate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.names import run_name
from flows.retries import IO_RETRIES
from flows.tenants import chosen_tenants, fail_if_any, settle
from sluice.learn import versions
from sluice.learn.training import InsufficientDataError, TrainResult, train_tenant
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings


@dataclass
class SkippedTenant:
    """A tenant this run did not train, and why (its numbers against the minimum)."""

    tenant: str
    skipped: str


@task(task_run_name="train-{tenant}", **IO_RETRIES)
def train_one(tenant: str, algorithm: str | None = None) -> TrainResult | SkippedTenant:
    """Train, evaluate, register and gate one tenant's model, or skip it when it has too
    little data: one tenant's shortfall never fails the others."""
    logger = get_run_logger()
    settings = get_settings()
    try:
        with from_settings(settings).lock(say=logger.info):  # not while dbt rebuilds
            result = train_tenant(settings, tenant, progress=logger.info, algorithm=algorithm)
    except InsufficientDataError as exc:
        logger.warning("tenant %s skipped: %s", tenant, exc)
        return SkippedTenant(tenant, str(exc))
    deleted = versions.prune(settings.mlflow_tracking_uri, result.model_name,
                             settings.app.registry.keep_candidates)
    if deleted:
        logger.info("retention: deleted %s versions %s", result.model_name, ", ".join(deleted))
    create_markdown_artifact(key=f"train-{_slug(tenant)}", markdown=_summary(result),
                             description=f"{result.model_name} v{result.version} against "
                                         "popularity and the champion")
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _summary(result: TrainResult) -> str:
    """The run against popularity, every figure with its bootstrap interval, and the holdout."""
    keys = ["ndcg_at_10", "recall_at_10", "precision_at_10", "map_at_10", "hit_rate_at_10",
            "catalog_coverage", "novelty", "intra_list_diversity", "popularity_bias"]
    stats = result.stats
    lines = [f"### {result.model_name} v{result.version} ({result.algorithm})",
             f"**{'promoted to champion' if result.promoted else 'kept as candidate'}**: "
             f"{result.reason}", "",
             f"Holdout: {stats.get('protocol')} split, {stats.get('evaluated_users', 0):,} users "
             f"and {stats.get('test_interactions', 0):,} interactions "
             f"({stats.get('protocol_note', '')}).", "",
             "| metric | candidate | popularity |", "|---|---:|---:|"]
    lines += [f"| {k} | {_cell(result.metrics, k)} | {_cell(result.baseline, k)} |"
              for k in keys]
    return "\n".join(lines)


def _cell(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "n/a"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"{value:.4f} [{low:.4f}, {high:.4f}]" if low is not None and high is not None \
        else f"{value:.4f}"


@flow(name="train", flow_run_name=run_name("train"),
      # one at a time unless on Dask; Prefect's runner generics infer Never from max_workers
      task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def train(tenant: str | None = None, algorithm: str | None = None) -> list[TrainResult]:
    """Train every tenant (or one) with model.algorithm, or the family named here.

    Tenants are independent tasks: with a Dask task runner (`with_task_runner`) they fan out
    over the cluster's workers; with the default runner they run one after another. A tenant
    with too little data is skipped, logged and listed in the `train-skipped` artifact; the
    flow fails only when no tenant could be trained. A tenant failing otherwise fails the
    run, in one line naming it and the reason, after every other tenant has trained and
    registered. Returns the trained tenants' results.
    """
    names = chosen_tenants(tenant)
    futures = [(name, train_one.submit(name, algorithm)) for name in names]
    for _, future in futures:
        future.wait()
    outcomes, failed = settle([(name, future.state) for name, future in futures])
    trained = [o for o in outcomes if isinstance(o, TrainResult)]
    skipped = [o for o in outcomes if isinstance(o, SkippedTenant)]
    if skipped:
        create_table_artifact(key="train-skipped", table=[asdict(s) for s in skipped],
                              description="Tenants not trained this run, and why")
    fail_if_any(failed, [r.tenant for r in trained], "trained and registered")
    if not trained:  # nothing could be done: fail, naming what each tenant lacks
        raise InsufficientDataError("; ".join(f"tenant {s.tenant!r}: {s.skipped}"
                                              for s in skipped))
    get_run_logger().info("trained %s; skipped %s", ", ".join(r.tenant for r in trained),
                          ", ".join(s.tenant for s in skipped) or "none")
    return trained


def with_task_runner(address: str | None = None, workers: int = 2) -> Any:
    """`train` on Dask: an existing scheduler at `address`, or a local cluster of processes.

    Each tenant trains in a worker process of its own (MLflow's active run is per process).
    """
    from prefect_dask import DaskTaskRunner

    if address:
        runner = DaskTaskRunner(address=address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    # prefect_dask's runner is typed on its own future class, not Prefect's base one
    return train.with_options(task_runner=runner)  # type: ignore[arg-type]
