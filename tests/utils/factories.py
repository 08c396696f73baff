"""Small builders for events and environments shared by the tests."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

_ids = itertools.count()


def now_ms() -> int:
    return int(time.time() * 1000)


def interaction(user: str | None, item: str, type_: str = "click", session: str | None = None,
                **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event": "interaction", "id": f"t-{next(_ids)}-{now_ms()}",
                             "timestamp": now_ms(), "item": item, "type": type_, **extra}
    if user:
        event["user"] = user
    if session:
        event["session"] = session
    return event


def environment(home: Path) -> dict[str, str]:
    """SLUICE_HOME and an MLflow SQLite store inside one temporary folder."""
    return {"SLUICE_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"}
