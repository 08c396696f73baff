"""The raw event log: append-only JSON Lines segments, fsync'd before anyone is told "ok".

Each writer process owns its own segment files (no interleaving between processes); concurrent
appends inside one process share one write + fsync (group commit). Readers consume complete
lines only, so a line being written is never read half.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEGMENT_GLOB = "segment-*.jsonl"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class LogWriteError(OSError):
    """The log could not take the events (disk full, read-only, ...): nothing was acknowledged."""


@dataclass
class _Waiter:
    data: bytes
    done: bool = False
    error: BaseException | None = None


@dataclass
class EventLog:
    """Durable appends to `root`; `append` returns only once the bytes are fsync'd."""

    root: Path
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    writer_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._leader = False
        self._file: Any = None
        self._size = 0
        self._last_ms = 0

    def append(self, events: Iterable[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(e) + b"\n" for e in events)
        if not data:
            return
        waiter = _Waiter(data)
        with self._cond:
            self._pending.append(waiter)
            while not waiter.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    error = self._write(b"".join(w.data for w in batch))
                finally:
                    self._cond.acquire()
                    self._leader = False
                for w in batch:
                    w.done, w.error = True, error
                self._cond.notify_all()
        if waiter.error is not None:
            raise LogWriteError(f"event log at {self.root} refused the write: {waiter.error}")

    def _write(self, data: bytes) -> BaseException | None:
        try:
            handle = self._segment()
            start = self._size
            try:
                view = memoryview(data)
                while view:  # write(2) may take only part of the bytes (nearly full disk)
                    view = view[handle.write(view):]
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                self._abandon(handle, start)
                raise
            self._size += len(data)
            return None
        except OSError as exc:
            return exc

    def _abandon(self, handle: Any, good_size: int) -> None:
        """Cut a failed partial write off and start a fresh segment next time."""
        try:
            handle.truncate(good_size)
            handle.close()
        except OSError:
            pass
        self._file = None

    def _segment(self) -> Any:
        if self._file is None or self._size >= self.segment_bytes:
            if self._file is not None:
                self._file.close()
            self.root.mkdir(parents=True, exist_ok=True)
            # a new name on every rotation, even within one millisecond, in append order
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            name = f"segment-{self._last_ms:013d}-{self.writer_id}.jsonl"
            self._file = open(self.root / name, "ab", buffering=0)  # noqa: SIM115
            self._size = os.fstat(self._file.fileno()).st_size  # truncate never cuts older lines
            _fsync_dir(self.root)
        return self._file

    def close(self) -> None:
        with self._cond:
            if self._file is not None:
                self._file.close()
                self._file = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segments(root: Path) -> list[Path]:
    """Segments in the order they were started."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(root.glob(SEGMENT_GLOB), key=lambda p: p.name)


def read_complete(path: Path, offset: int, max_bytes: int | None = None) -> tuple[bytes, int]:
    """Bytes from `offset` up to the last complete line; returns (data, new_offset)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read() if max_bytes is None else handle.read(max_bytes)
    end = data.rfind(b"\n")
    if end < 0:
        return b"", offset
    return data[: end + 1], offset + end + 1


class LogFollower:
    """Reads what was appended to every segment since the last call (serving follows the log)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.offsets: dict[Path, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for path in segments(self.root):
            offset = self.offsets.get(path, 0)
            try:
                if path.stat().st_size <= offset:
                    continue
                data, offset = read_complete(path, offset)
            except FileNotFoundError:
                continue
            self.offsets[path] = offset
            for line in data.splitlines():
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a torn line is quarantined by ingest; serving skips it
        return events
