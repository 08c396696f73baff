"""Processes the CLI, the tests and the benchmarks start: a free port, the API server, waiting
for it to be ready, and stopping it."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from sluice.settings import PROJECT_ROOT


def prefect_under(home: Path, port: int) -> None:
    """Keep Prefect's state with Sluice's, and send flow runs to a running `make up` server.

    PREFECT_HOME (its settings and the SQLite database of the temporary server a CLI flow
    starts) goes under SLUICE_HOME, so `make clean` resets it and another home's runs never
    show. When the `sluice up` server answers on `port` (SLUICE_PREFECT_PORT, default 4200)
    and PREFECT_API_URL is unset,
    flow runs go to it and appear in its UI. Call before anything imports Prefect.
    """
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    # Prefect creates its home without parents: in a SLUICE_HOME not made yet its temporary
    # server could not open its database and every flow timed out in tracebacks
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    if os.environ.get("PREFECT_API_URL"):
        return
    url = f"http://127.0.0.1:{port}/api"
    try:
        if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
            os.environ["PREFECT_API_URL"] = url
    except httpx.TransportError:
        pass  # no server: Prefect starts a temporary one for the run


# what Prefect's engine logs of a failed run, which the command's own last line says once
_ENGINE_FAILURE = ("Encountered exception during execution", "Finished in state Failed(",
                   "Task run failed with exception")


class _WithoutTraceback(logging.Filter):
    """Drops tracebacks, and the engine's repeats of a failure's reason, from the terminal
    (the handler it filters only: the Prefect API's log keeps both)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = record.stack_info = None
        return not (record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
                    and record.getMessage().startswith(_ENGINE_FAILURE))


def quiet_flow_tracebacks() -> None:
    """A flow that fails on the operator's input (no champion yet, a wrong option, marts not
    built) prints its one line, not Prefect's traceback of the engine nor its repeats of the
    reason: the terminal's handler drops them unless SLUICE_DEBUG is set; the Prefect API's
    log (the UI) keeps them.
    Call after Prefect is imported (it sets its logging up then)."""
    if os.environ.get("SLUICE_DEBUG"):
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _WithoutTraceback) for f in handler.filters):
            handler.addFilter(_WithoutTraceback())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int = 1, env: dict[str, str] | None = None,
                 output: Any = None) -> subprocess.Popen:
    """`sluice serve` on loopback, in its own process (flows never import serving): what an
    operator runs, so its preparations before the workers start are those tested.

    `output`: a file for the server's stdout and stderr (default: this process's).
    """
    cmd = [sys.executable, "-m", "cli.main", "serve", "--log-level", "warning",
           "--workers", str(workers)]
    # `sluice serve` binds, and the app logs, this address; it makes (and removes) the
    # folder of the workers' metrics
    extra = {"SLUICE_HOST": "127.0.0.1", "SLUICE_PORT": str(port)}
    return subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, **(env or {}), **extra},
                            stdout=output, stderr=output)


def metrics_folder() -> Path:
    """A fresh folder for one run's multiprocess Prometheus values (stale files would add
    a previous run's counts to this one's)."""
    return Path(tempfile.mkdtemp(prefix="sluice-metrics-"))


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode}; see its log above")
        try:
            r = httpx.get(f"{base}/ready", timeout=2)
            if r.status_code in (200, 503):
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not answer on {base} within {timeout:.0f}s")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
