"""One writer at a time on the warehouse, across threads and processes (an advisory file lock
beside the DuckDB file; the PostgreSQL warehouse takes an advisory lock on its server through
the same waiting loop, `wait_for_lock`).

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


def wait_for_lock(try_once: Callable[[], bool], what: str, timeout: float, poll: float,
                  say: Callable[[str], None] | None) -> None:
    """Calls `try_once` until it takes the lock; says once that it waits, gives up after
    `timeout` seconds with LockTimeoutError."""
    started, told = time.monotonic(), False
    while not try_once():
        if not told:
            (say or log.info)(f"waiting for another job to release {what}")
            told = True
        if time.monotonic() - started > timeout:
            raise LockTimeoutError(
                f"{what} was held for over {timeout:.0f}s by another ingest, transform "
                "or train run; check for a stuck run in the Prefect UI")
        time.sleep(poll)


@contextmanager
def warehouse_lock(warehouse: Path, timeout: float = 3600.0, poll: float = 0.2,
                   say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `<warehouse>.lock` exclusively; waits (saying so) up to `timeout` seconds."""
    path = Path(f"{warehouse}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_for_lock(try_once, str(path), timeout, poll, say)
        yield
    finally:
        os.close(fd)  # closing releases the lock
