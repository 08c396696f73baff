"""Flows `pipeline` (ingest -> transform -> train) and `refresh` (transform -> train)."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact

from flows.ingest import IngestOutcome, ingest
from flows.names import run_name
from flows.train import train
from flows.transform import TransformOutcome, transform
from sluice.analytics.report import tenant_experiments, write_report
from sluice.learn.training import TrainResult
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings


@task(retries=1, retry_delay_seconds=5)
def analytics_report(tenant: str | None) -> str:
    """Write the HTML analytics report and link it as an artifact."""
    settings = get_settings()
    name = settings.registered_model_name(tenant or "default")
    warehouse = from_settings(settings)
    with warehouse.lock():
        path = write_report(warehouse, settings.mlflow_tracking_uri, name,
                            settings.home / "report" / "index.html",
                            *tenant_experiments(settings, tenant or "default"),
                            tenant=tenant or "default")
    create_link_artifact(key="analytics-report", link=path.as_uri(),
                         description="Events, slot sources, click-through, model metrics, "
                         "experiments, off-policy estimates")
    return str(path)


@dataclass
class RefreshOutcome:
    transform: TransformOutcome
    train: list[TrainResult]


@dataclass
class PipelineOutcome:
    ingest: IngestOutcome
    transform: TransformOutcome
    train: list[TrainResult]
    report: str | None = None  # the analytics report's path, when one was written


@flow(name="pipeline", flow_run_name=run_name("pipeline"))
def pipeline(tenant: str | None = None, report: bool = True) -> PipelineOutcome:
    """The whole batch path: load new events, rebuild the marts, train and gate, report."""
    loaded = ingest()
    built = transform()
    trained = train(tenant)
    get_run_logger().info("pipeline done: %s rows loaded, %s dbt nodes, %s models trained",
                          loaded.rows_loaded, built.nodes, len(trained))
    return PipelineOutcome(ingest=loaded, transform=built, train=trained,
                           report=analytics_report(tenant) if report else None)


@flow(name="refresh", flow_run_name=run_name("refresh"))
def refresh(tenant: str | None = None) -> RefreshOutcome:
    """Rebuild the marts from what ingest already loaded and retrain, so new items enter."""
    built = transform()
    trained = train(tenant)
    return RefreshOutcome(transform=built, train=trained)
