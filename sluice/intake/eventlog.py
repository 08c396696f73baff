"""The raw event log: append-only JSON Lines segments, fsync'd before anyone is told "ok".

Each writer process owns its own segment files (no interleaving between processes); concurrent
appends inside one process share one write + fsync (group commit). Readers consume complete
lines only, so a line being written is never read half.

A root given as a URL (`memory://raw`, `file:///srv/raw`, `s3://bucket/raw`) goes through fsspec;
a plain path stays on os/open with fsync. On a filesystem with append (local, memory) each group
commit is appended to the writer's segment; elsewhere (object stores) each group commit becomes
one new immutable object, named so that `segments()` still lists in append order.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from sluice import formats
from sluice.intake.log_positions import NO_POSITION, position, segment_name

# filesystems whose open(..., "ab") really appends; others get one object per group commit
APPEND_PROTOCOLS = frozenset({"file", "local", "memory"})

SEGMENT_GLOB = "segment-*.jsonl"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class LogWriteError(OSError):
    """The log could not take the events (disk full, read-only, ...): nothing was acknowledged."""


@dataclass
class _Waiter:
    data: bytes
    done: bool = False
    error: BaseException | None = None
    start: int = -1  # where `data` begins in its segment, packed (`position`), once written


@dataclass
class EventLog:
    """Durable appends to `root`; `append` returns only once the bytes are fsync'd."""

    root: Path | str
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    writer_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )

    append_mode: bool | None = None  # URL roots only; None: append where the filesystem can

    def __post_init__(self) -> None:
        self.root = location(self.root)
        self._fs: Any = None
        if isinstance(self.root, str):
            self._fs, self._fs_root = _url_to_fs(self.root)
            if self.append_mode is None:
                self.append_mode = bool(APPEND_PROTOCOLS & set(_protocols(self._fs)))
        self._remote_path: str | None = None
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._leader = False
        self._file: Any = None
        self._name = ""  # the local segment being appended to
        self._size = 0
        self._last_ms = 0

    def append(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Returns each event's position in the log (`position`), in order."""
        lines = [orjson.dumps(e) + b"\n" for e in events]
        if not lines:
            return []
        waiter = _Waiter(b"".join(lines))
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
                    error, where = self._write(b"".join(w.data for w in batch))
                finally:
                    self._cond.acquire()
                    self._leader = False
                start = position(*where) if error is None else NO_POSITION
                for w in batch:
                    w.done, w.error, w.start = True, error, start
                    start += len(w.data)
                self._cond.notify_all()
        if waiter.error is not None:
            raise LogWriteError(f"event log at {self.root} refused the write: {waiter.error}")
        return list(itertools.accumulate(map(len, lines), initial=waiter.start))[1:]

    def _write(self, data: bytes) -> tuple[BaseException | None, tuple[str, int]]:
        """Writes `data`; (the error, or None) and where it begins: (segment name, offset)."""
        if self._fs is not None:
            return self._write_remote(data)
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
            return None, (self._name, start)
        except OSError as exc:
            return exc, ("", 0)

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
            root = Path(self.root)  # a local folder: URL roots write through fsspec
            root.mkdir(parents=True, exist_ok=True)
            try:
                formats.ensure_marker(root, "raw_log",
                                      fresh=not any(root.glob(SEGMENT_GLOB)))
            except formats.FormatTooNewError as exc:
                raise OSError(str(exc)) from None  # refused like any write the log cannot take
            name = self._name = self._next_name()
            self._file = open(root / name, "ab", buffering=0)
            self._size = os.fstat(self._file.fileno()).st_size  # truncate never cuts older lines
            fsync_dir(root)
        return self._file

    def _next_name(self) -> str:
        # a new name on every rotation, even within one millisecond, in append order
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return f"segment-{self._last_ms:013d}-{self.writer_id}.jsonl"

    def _write_remote(self, data: bytes) -> tuple[BaseException | None, tuple[str, int]]:
        fs = self._fs
        try:
            if not self.append_mode:  # one immutable object per group commit
                self._make_root()
                name = self._next_name()
                fs.pipe_file(f"{self._fs_root}/{name}", data)
                return None, (name, 0)
            if self._remote_path is None or self._size >= self.segment_bytes:
                self._make_root()
                self._remote_path = f"{self._fs_root}/{self._next_name()}"
                self._size = fs.size(self._remote_path) if fs.exists(self._remote_path) else 0
            try:
                with fs.open(self._remote_path, "ab") as handle:
                    handle.write(data)
                    handle.flush()
                    fileno = getattr(handle, "fileno", None)
                    if fileno is not None:  # fsspec's local files: fsync as the plain path does
                        try:
                            os.fsync(fileno())
                        except (OSError, ValueError, AttributeError):
                            pass
            except OSError:
                self._remote_path = None  # a torn tail is never read: start a fresh segment
                raise
            start = self._size
            self._size += len(data)
            return None, (segment_name(self._remote_path), start)
        except Exception as exc:
            # a store's client raises its own kinds (botocore: no credentials, endpoint
            # unreachable): each one is a refused write, never a waiter left hanging
            return exc, ("", 0)

    def _make_root(self) -> None:
        # an object store has no folders to make; s3fs would ask for the bucket itself (and
        # try to create it), which a key limited to a prefix may not be allowed to do
        if APPEND_PROTOCOLS & set(_protocols(self._fs)):
            self._fs.makedirs(self._fs_root, exist_ok=True)

    def close(self) -> None:
        with self._cond:
            if self._file is not None:
                self._file.close()
                self._file = None


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new file in `path` durable (the folder's entry, not the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_url(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and "://" in value


def location(value: Path | str) -> Path | str:
    """A URL stays a string (read through fsspec); anything else is a local Path."""
    return value if is_url(value) else Path(value)


def objects_are_immutable(root: Path | str) -> bool:
    """Whether an EventLog at `root` writes one immutable object per group commit (an object
    store) rather than appending to its segments."""
    root = location(root)
    return isinstance(root, str) and not APPEND_PROTOCOLS & set(_protocols(_url_to_fs(root)[0]))


def _url_to_fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    return fs, path.rstrip("/") or path


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def file_url(fs: Any, path: str) -> str:
    """The full URL of `path` on `fs`: the key a URL's files have in the manifest."""
    return fs.unstrip_protocol(path)


def size_of(path: Path | str) -> int:
    return stat_of(path)[0]


def stat_of(path: Path | str) -> tuple[int, float]:
    """(size, modification time in epoch seconds) of a file or object."""
    if is_url(path):
        fs, inner = _url_to_fs(path)
        info = fs.info(inner)
        return int(info["size"]), modified_at(info)
    found = os.stat(path)
    return found.st_size, found.st_mtime


def modified_at(info: dict[str, Any]) -> float:
    """An fsspec entry's modification time in epoch seconds (s3fs: `LastModified`, local:
    `mtime`); +inf when the store gives none, so that nothing is skipped on a guess."""
    value = info.get("LastModified", info.get("mtime", info.get("last_modified")))
    if isinstance(value, datetime):
        return value.timestamp()  # s3fs: an aware datetime
    return float(value) if isinstance(value, int | float) else math.inf


def segments(root: Path | str) -> list[Path] | list[str]:
    """Segments in the order they were started (full URLs when `root` is a URL)."""
    return [path for path, _, _ in segment_listing(root)]  # type: ignore[return-value]


def segment_sizes(root: Path | str) -> list[tuple[Path | str, int]]:
    """(segment, size) in the order segments were started (see segment_listing)."""
    return [(path, size) for path, size, _ in segment_listing(root)]


def segment_listing(root: Path | str) -> list[tuple[Path | str, int, float]]:
    """(segment, size, modification time) in the order segments were started. On a URL one
    listing gives every size, so following a bucket costs one LIST per poll rather than one
    HEAD per object."""
    if is_url(root):
        fs, inner = _url_to_fs(root)
        fs.invalidate_cache(inner)  # a cached listing would hide new segments
        try:  # a missing prefix is an empty log; a missing bucket is a mistake to name
            listed = fs.glob(f"{inner}/{SEGMENT_GLOB}", detail=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"raw log {root} cannot be listed: {exc}") from exc
        ordered = sorted(listed.items(), key=lambda kv: kv[0].rsplit("/", 1)[-1])
        return [(file_url(fs, path), int(info["size"]), modified_at(info))
                for path, info in ordered]
    root = Path(root)
    if not root.exists():
        return []
    formats.check_marker(root, "raw_log")
    found: list[tuple[Path | str, int, float]] = []
    for path in sorted(root.glob(SEGMENT_GLOB), key=lambda p: p.name):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # removed since the listing (a restore): nothing to read there
        found.append((path, stat.st_size, stat.st_mtime))
    return found


def read_complete(path: Path | str, offset: int, max_bytes: int | None = None,
                  size: int | None = None) -> tuple[bytes, int]:
    """Bytes from `offset` up to the last complete line; returns (data, new_offset).
    `size`: the object's size when a listing already gave it (a URL is then not asked)."""
    if is_url(path):
        fs, inner = _url_to_fs(path)
        size = fs.size(inner) if size is None else size
        end = size if max_bytes is None else min(size, offset + max_bytes)
        data = fs.cat_file(inner, start=offset, end=end) if end > offset else b""
    else:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read() if max_bytes is None else handle.read(max_bytes)
    end = data.rfind(b"\n")
    if end < 0:
        return b"", offset
    return data[: end + 1], offset + end + 1
