"""Flows `pipeline` (ingest -> transform -> train) and `refresh` (transform -> train)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact

from flows.ingest import ingest
from flows.names import run_name
from flows.train import train
from flows.transform import transform
from sluice.analytics.report import write_report
from sluice.settings import get_settings
from sluice.warehouse.locks import warehouse_lock


@task(retries=1, retry_delay_seconds=5)
def analytics_report(tenant: str | None) -> str:
    """Write the HTML analytics report and link it as an artifact."""
    settings = get_settings()
    name = settings.registered_model_name(tenant or "default")
    with warehouse_lock(settings.warehouse_path):
        path = write_report(settings.warehouse_path, settings.mlflow_tracking_uri, name,
                            settings.home / "report" / "index.html")
    create_link_artifact(key="analytics-report", link=path.as_uri(),
                         description="Events, slot sources, click-through, model metrics")
    return str(path)


@flow(name="pipeline", flow_run_name=run_name("pipeline"))
def pipeline(tenant: str | None = None, report: bool = True) -> dict[str, Any]:
    """The whole batch path: load new events, rebuild the marts, train and gate, report."""
    loaded = ingest()
    built = transform()
    trained = train(tenant)
    get_run_logger().info("pipeline done: %s rows loaded, %s dbt nodes, %s models trained",
                          loaded["rows_loaded"], built["nodes"], len(trained))
    outcome = {"ingest": loaded, "transform": built, "train": trained}
    if report:
        outcome["report"] = analytics_report(tenant)
    return outcome


@flow(name="refresh", flow_run_name=run_name("refresh"))
def refresh(tenant: str | None = None) -> dict[str, Any]:
    """Rebuild the marts from what ingest already loaded and retrain, so new items enter."""
    built = transform()
    trained = train(tenant)
    return {"transform": built, "train": trained}
