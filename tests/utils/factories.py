"""Small builders for events and environments shared by the tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.intake.synthetic import SyntheticResult, SyntheticSpec, generate
from sluice.settings import DEFAULT_CONFIG
from tests.utils.auth import auth_config

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


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in changes.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(name), dict)
        out[name] = _merge(out[name], value) if both_maps else value
    return out


def write_config(path: Path, **sections: Any) -> Path:
    """config/sluice.yaml with the test keys (tests/utils/auth.py) and `sections` merged in."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config = _merge({**config, "auth": auth_config()}, sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def environment(home: Path, **sections: Any) -> dict[str, str]:
    """SLUICE_HOME, an MLflow SQLite store and a test config inside one temporary folder."""
    return {"SLUICE_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "SLUICE_CONFIG": str(write_config(home / "sluice.yaml", **sections))}


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """`env` in os.environ for the block, restored after (monkeypatch for module fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield


def synthetic_home(home: Path, spec: SyntheticSpec) -> tuple[dict[str, str], SyntheticResult]:
    """A home's environment (see `environment`) and a synthetic history in its landing folder."""
    return environment(home), generate(home / "landing", spec)
