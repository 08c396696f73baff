"""The `sluice` command in its own process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from sluice.settings import PROJECT_ROOT

SLUICE = [sys.executable, "-m", "cli.main"]


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """`env` over this process's environment, with this checkout importable; Prefect's API
    points at a closed port so that nothing reaches (or starts) a real one by accident."""
    return {**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT),
            "PREFECT_API_URL": "http://127.0.0.1:9/api"}


def sluice(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `sluice ARGS` to the end; its output captured as text."""
    return subprocess.run([*SLUICE, *args], cwd=PROJECT_ROOT, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)
