"""Serve the deployments with their schedules from a local runner (`make up`).

The same deployments are declared in prefect.yaml for `prefect deploy` with a work pool.
"""

from __future__ import annotations

from prefect import serve

from flows.ingest import ingest
from flows.pipeline import pipeline
from flows.train import train
from flows.transform import transform


def deployments() -> list:
    return [
        ingest.to_deployment(name="ingest", interval=300, tags=["sluice"]),
        transform.to_deployment(name="transform", cron="0 */2 * * *", tags=["sluice"]),
        train.to_deployment(name="train", cron="15 */2 * * *", tags=["sluice"]),
        pipeline.to_deployment(name="pipeline-nightly", cron="0 3 * * *", tags=["sluice"]),
    ]


if __name__ == "__main__":
    serve(*deployments())
