"""A small JSON mapping on disk, written atomically and re-read when it changes.

Trackers and named filters created at run time live in `$SLUICE_HOME/*.json` this way, so
every serving worker sees what the CLI created without a restart. A write holds a lock file
beside the store and merges into what is on disk, so two processes writing at once both keep
their entry. A file that does not parse (a hand edit, a disk fault) is refused by name; a
reader that had read it before keeps its last good mapping, so serving goes on.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class StoreError(ValueError):
    """The store's file is not a JSON mapping of strings."""


class JsonStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._data: dict[str, str] = {}
        self._good = False  # a read has parsed the file (else a bad one raises)
        self._warned = -1.0  # the mtime of the bad file last logged

    def read(self) -> dict[str, str]:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                return dict(self._data)
            if mtime != self._mtime:
                try:
                    self._data = self._load()
                except StoreError:
                    if not self._good:
                        raise
                    if mtime != self._warned:
                        self._warned = mtime
                        log.warning("%s does not parse: kept what was read before it",
                                    self.path)
                    return dict(self._data)
                self._mtime, self._good = mtime, True
            return dict(self._data)

    def put(self, key: str, value: str) -> None:
        with self._lock, self._exclusive():
            data = {**(self._load() if self.path.exists() else {}), key: value}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            os.replace(tmp, self.path)
            self._data, self._mtime = data, self.path.stat().st_mtime
            self._good = True

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path} is not valid JSON ({exc}): fix it, or restore it "
                             "from a backup (`sluice backup` copies it)") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise StoreError(f"{self.path} must hold a JSON object of strings: fix it, or "
                             "restore it from a backup (`sluice backup` copies it)")
        return data

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One writer at a time across processes: each merges into the other's file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f"{self.path.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
