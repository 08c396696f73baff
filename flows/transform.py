"""Flow `transform`: dbt build (staging -> intermediate -> marts) on the warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.names import run_name
from flows.retries import IO_RETRIES
from sluice.settings import get_settings
from sluice.warehouse.engine import from_settings
from sluice.warehouse.transform import dbt_build


@dataclass
class TransformOutcome:
    """dbt nodes built and passed, and marts.data_sufficiency's rows (one per tenant)."""

    nodes: int
    passed: int
    sufficiency: list[dict[str, Any]]


@task(**IO_RETRIES)
def build_models(select: str | None, full_refresh: bool = False) -> list[dict[str, Any]]:
    """Run `dbt build` with vars taken from config/sluice.yaml (as `sluice dbt -- build`);
    incremental models take only new events unless full_refresh."""
    settings = get_settings()
    result = dbt_build(from_settings(settings), settings.home / "dbt", settings.dbt_vars(),
                       select=select, full_refresh=full_refresh)
    for shortfall in result.shortfalls:  # a warning: the other tenants build and train
        get_run_logger().warning("%s; training skips it until then", shortfall)
    return result.nodes


@task(retries=2, retry_delay_seconds=5)
def publish_sufficiency() -> list[dict[str, Any]]:
    """Publish marts.data_sufficiency (per tenant: found against needed) as an artifact."""
    warehouse = from_settings(get_settings())
    with warehouse.lock():
        rows = warehouse.frame("select * from marts.data_sufficiency order by tenant")
    # a null text cell comes back NaN: None, so the result and the artifact are JSON
    table = rows.astype(object).where(rows.notna(), None).to_dict("records")
    if table:
        create_table_artifact(key="data-sufficiency", table=table,
                              description="Interactions and users with two or more, per tenant, "
                                          "against the configured minimums")
    return table


@flow(name="transform", flow_run_name=run_name("transform"))
def transform(select: str | None = None, full_refresh: bool = False) -> TransformOutcome:
    """Bring the marts up to date with dbt (full_refresh: rebuild every incremental model from
    the whole history); publish data sufficiency."""
    nodes = build_models(select, full_refresh)
    passed = sum(1 for n in nodes if n["status"] in ("success", "pass"))
    warned = sum(1 for n in nodes if n["status"] == "warn")
    get_run_logger().info("dbt build: %d of %d nodes passed, %d warned", passed, len(nodes),
                          warned)
    sufficiency = publish_sufficiency()
    return TransformOutcome(nodes=len(nodes), passed=passed, sufficiency=sufficiency)
