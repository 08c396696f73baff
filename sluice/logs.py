"""Structured, quiet-by-default logging: `time level logger key=value message` lines."""

from __future__ import annotations

import logging
import os
import sys

_NOISY = ("alembic", "mlflow", "urllib3", "httpx", "botocore", "numba", "implicit")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " | ")
        base = (f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()}"
                f" logger={record.name} msg={message!r}")
        if record.exc_info:
            base += f" exc={self.formatException(record.exc_info)!r}"
        return base


def configure(level: str | None = None) -> None:
    """Sluice at SLUICE_LOG_LEVEL (default INFO) on stderr; noisy libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("sluice")
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("SLUICE_LOG_LEVEL", "INFO")).upper())
    root.propagate = False
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
