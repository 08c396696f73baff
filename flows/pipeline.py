"""Flow `pipeline`: ingest -> transform -> train, the whole batch path in one run."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.ingest import ingest
from flows.train import train
from flows.transform import transform


@flow(name="pipeline", flow_run_name="pipeline")
def pipeline(tenant: str | None = None) -> dict[str, Any]:
    loaded = ingest()
    built = transform()
    trained = train(tenant)
    get_run_logger().info("pipeline done: %s rows loaded, %s dbt nodes, %s models trained",
                          loaded["rows_loaded"], built["nodes"], len(trained))
    return {"ingest": loaded, "transform": built, "train": trained}
