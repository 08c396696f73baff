"""A real uvicorn server on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from cli.processes import free_port, start_server, stop_server, wait_ready


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int = 1, output: Any = None) -> Iterator[str]:
    """Yields the base URL; `output`: a file for the server's log (default: inherited)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(port, workers=workers, env={**os.environ, **env}, output=output)
    try:
        wait_ready(base, process, timeout=90)
        yield base
    finally:
        stop_server(process)
