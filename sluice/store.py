"""A small JSON mapping on disk, written atomically and re-read when it changes.

Trackers and named filters created at run time live in `$SLUICE_HOME/*.json` this way, so
every serving worker sees what the CLI created without a restart.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class JsonStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._data: dict[str, str] = {}

    def read(self) -> dict[str, str]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                return dict(self._data)
            if mtime != self._mtime:
                self._data = json.loads(self.path.read_text())
                self._mtime = mtime
            return dict(self._data)

    def put(self, key: str, value: str) -> None:
        with self._lock:
            data = {**self._data, key: value}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            os.replace(tmp, self.path)
            self._data, self._mtime = data, self.path.stat().st_mtime
