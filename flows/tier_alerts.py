"""Flow `tier-alerts`: fails (so Prefect's notifications fire) when a tenant's and template's
slots cross a threshold of `alerts.tier_shares` over `alerts.window_minutes`, with the
breakdown by template and tier in an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.names import run_name
from sluice.analytics.tier_shares import breaches, shares
from sluice.settings import get_settings
from sluice.warehouse.engine import duckdb_path


class TierShareAlert(RuntimeError):
    """A tier-share threshold was crossed."""


@flow(name="tier-alerts", flow_run_name=run_name("tier-alerts"))
def check_tier_shares() -> list[str]:
    """Fail when a tenant's personalized slots fall, or its fallback slots rise, past
    alerts.tier_shares over alerts.window_minutes; the breakdown is the tier-shares artifact."""
    settings = get_settings()
    alerts = settings.app.alerts
    frame = shares(duckdb_path(settings, "the tier-alerts flow"), alerts.window_minutes)
    rows = frame.round(4).astype(object).to_dict("records")
    if rows:
        create_table_artifact(key="tier-shares", table=rows, description=(
            f"Slots by tenant, template and tier over the last {alerts.window_minutes} "
            "minutes (marts.recommendation_events)"))
    crossed = breaches(frame, alerts)
    if crossed:
        raise TierShareAlert(f"{len(crossed)} tier-share threshold(s) crossed: "
                             + "; ".join(crossed)
                             + ". Check the champion (sluice models), filters and new traffic.")
    get_run_logger().info("tier shares within thresholds for %d tenant/template pairs", len(rows))
    return crossed
