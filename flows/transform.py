"""Flow `transform`: dbt build (staging -> intermediate -> marts) on the warehouse."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from sluice.settings import get_settings
from sluice.transform import dbt_build


@task
def build_models(select: str | None) -> list[dict[str, Any]]:
    """Run `dbt build` with vars taken from config/sluice.yaml."""
    settings = get_settings()
    result = dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars(),
                       select=select)
    return result.nodes


@flow(name="transform", flow_run_name="transform-{select}")
def transform(select: str | None = None) -> dict[str, Any]:
    nodes = build_models(select)
    passed = sum(1 for n in nodes if n["status"] in ("success", "pass"))
    get_run_logger().info("dbt build: %d of %d nodes passed", passed, len(nodes))
    return {"nodes": len(nodes), "passed": passed}
