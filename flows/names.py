"""Flow run names that say what ran: flow, tenant (or every tenant), and when (UTC)."""

from __future__ import annotations

import time
from collections.abc import Callable


def run_name(flow: str) -> Callable[[], str]:
    """A `flow_run_name` callable: e.g. `train-shop-20260301-101500`, `refresh-all-...`."""

    def name() -> str:
        from prefect.runtime import flow_run

        tenant = (flow_run.parameters or {}).get("tenant") or "all"
        return f"{flow}-{tenant}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"

    return name
