"""Flows `pipeline` (ingest -> transform -> train) and `refresh` (transform -> train)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.ingest import ingest
from flows.train import train
from flows.transform import transform


@flow(name="pipeline", flow_run_name="pipeline-{tenant}")
def pipeline(tenant: str | None = None) -> dict[str, Any]:
    """The whole batch path: load new events, rebuild the marts, train and gate."""
    loaded = ingest()
    built = transform()
    trained = train(tenant)
    get_run_logger().info("pipeline done: %s rows loaded, %s dbt nodes, %s models trained",
                          loaded["rows_loaded"], built["nodes"], len(trained))
    return {"ingest": loaded, "transform": built, "train": trained}


@flow(name="refresh", flow_run_name="refresh-{tenant}")
def refresh(tenant: str | None = None) -> dict[str, Any]:
    """Rebuild the marts from what ingest already loaded and retrain, so new items enter."""
    built = transform()
    trained = train(tenant)
    return {"transform": built, "train": trained}
