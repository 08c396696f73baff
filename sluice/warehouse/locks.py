"""One writer at a time on the warehouse, across threads and processes (an advisory file lock).

DuckDB already refuses a second process that opens the file for writing; this turns that
refusal into waiting, so a scheduled `ingest` that meets a running `transform` queues behind it
instead of failing, and `train` never reads marts that dbt is rebuilding.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class LockTimeoutError(TimeoutError):
    pass


@contextmanager
def warehouse_lock(warehouse: Path, timeout: float = 3600.0, poll: float = 0.2,
                   say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `<warehouse>.lock` exclusively; waits (saying so) up to `timeout` seconds."""
    path = Path(f"{warehouse}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    (say or log.info)(f"waiting for another job to release {path}")
                    told = True
                if time.monotonic() - started > timeout:
                    raise LockTimeoutError(
                        f"{path} was held for over {timeout:.0f}s by another ingest, transform "
                        "or train run; check for a stuck run in the Prefect UI") from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing releases the lock
