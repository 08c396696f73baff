"""Serve the deployments of prefect.yaml, with their schedules, from a local runner.

`make up` runs this; `prefect deploy --all` reads the same prefect.yaml for a work pool.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.schedules import construct_schedule
from prefect.deployments.runner import RunnerDeployment

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def _flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def load(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """Each deployment of prefect.yaml as a RunnerDeployment (same names and schedules)."""
    spec = yaml.safe_load(path.read_text())
    deployments = []
    for entry in spec["deployments"]:
        schedules = [construct_schedule(**s) for s in entry.get("schedules") or []]
        deployments.append(_flow(entry["entrypoint"]).to_deployment(
            name=entry["name"], description=entry.get("description"),
            schedules=schedules or None, parameters=entry.get("parameters") or {},
            tags=entry.get("tags"), concurrency_limit=entry.get("concurrency_limit")))
    return deployments


def summary(path: Path = PREFECT_YAML) -> str:
    """Each deployment of prefect.yaml with its schedule, for `sluice up` to print."""
    parts = []
    for entry in yaml.safe_load(path.read_text())["deployments"]:
        when = [f"every {s['interval'] // 60} min" if "interval" in s
                else f"cron {s['cron']} {s.get('timezone', 'UTC')}"
                for s in entry.get("schedules") or []]
        parts.append(f"{entry['name']} ({', '.join(when) or 'no schedule'})")
    return ", ".join(parts)


if __name__ == "__main__":
    serve(*load())
