"""Shared benchmark plumbing: servers on loopback, wrk runs, tables."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cli.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def require_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed for this benchmark: apt-get install wrk")
    return found


@contextmanager
def server(app: str, env: dict[str, str] | None = None, workers: int = 1,
           ready_path: str = "/health", cwd: Path | str | None = None) -> Iterator[str]:
    """The app's base URL; `cwd`: another checkout to import it from (default: this one)."""
    with server_process(app, env, workers, ready_path, cwd) as (base, _):
        yield base


@contextmanager
def server_process(app: str, env: dict[str, str] | None = None, workers: int = 1,
                   ready_path: str = "/health", cwd: Path | str | None = None,
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """The server's base URL and its process (with one worker, the one serving)."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--workers", str(workers), "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + ready_path, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{app} did not start")
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def api_key(action: str) -> str:
    """The demo key of config/sluice.yaml (or SLUICE_API_KEYS) that may do `action`."""
    sys.path.insert(0, str(ROOT))
    from sluice.auth import client_key
    from sluice.settings import get_settings

    return client_key(get_settings(), action) or ""


def wrk(base: str, lua: str, seconds: int = 10, connections: int = 16,
        threads: int = 2, key: str = "") -> dict[str, float]:
    """Run wrk with a Lua script; returns requests/s and latency percentiles in ms.

    The script may use HEADERS: JSON content type and `key` as X-Api-Key.
    """
    headers = f'HEADERS = {{["Content-Type"] = "application/json", ["X-Api-Key"] = "{key}"}}\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(headers + lua)
    try:
        out = subprocess.run(
            [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
             "-s", handle.name, base], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(handle.name)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        result[f"p{pct}_ms"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        result["socket_errors"] = socket_errors.group(1)  # type: ignore[assignment]
    return result


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:,.2f}" if isinstance(v, float) else str(v)
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns),
             "-|-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
