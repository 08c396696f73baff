"""The load step of ingest: one file's records and its manifest row in one transaction.

The loader parses and validates; a `RawWriter` (one per engine: `DuckDBWriter` here, the
PostgreSQL one in `sluice.warehouse.postgres`) writes.

Records are parsed and validated in chunks of CHUNK_LINES; events go to `raw.events` (the
(tenant, event_id) key skips duplicates), refused records to `raw.quarantine`. A crash or an
error rolls the whole file back, so a re-run loads it once.
"""

from __future__ import annotations

import gc
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import orjson
import pyarrow as pa

from sluice.intake.events import EventError, check_event_keys, parse_event
from sluice.warehouse.ingest_report import FileResult
from sluice.warehouse.sources import Record, Unparsable

log = logging.getLogger(__name__)

CHUNK_LINES = 100_000
# raw.events columns filled from the event; source_file and loaded_at are the same per file
_EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("tenant", pa.string()), ("event_type", pa.string()),
    ("event_at", pa.timestamp("ms")), ("user_id", pa.string()), ("session_id", pa.string()),
    ("item_id", pa.string()), ("interaction_type", pa.string()), ("ranking_id", pa.string()),
    ("event_value", pa.float64()), ("fields", pa.string()), ("items", pa.string()),
])
_QUARANTINE_SCHEMA = pa.schema([
    ("line_number", pa.int64()), ("record", pa.string()), ("reason", pa.string()),
])
MAX_RECORD_CHARS = 10_000


class _Batch:
    """Up to CHUNK_LINES parsed events, plus the records refused on the way."""

    def __init__(self, loaded_at: datetime) -> None:
        self.loaded_at = loaded_at
        self.keys: set[tuple[str, str]] = set()
        self.rows: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[int | None, str, str]] = []
        self.in_file_duplicates = 0

    def __len__(self) -> int:
        return len(self.rows)

    def refuse(self, where: int | None, text: bytes | str, reason: str) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.quarantine.append((where, text[:MAX_RECORD_CHARS], reason))

    def add(self, event: dict[str, Any]) -> None:
        key = (event["tenant"], event["id"])
        if key in self.keys:
            self.in_file_duplicates += 1
            return
        self.keys.add(key)
        get = event.get
        fields, items = get("fields"), get("items")
        self.rows.append((
            key[1], key[0], event["event"], event["timestamp"], get("user"), get("session"),
            get("item"), get("type"), get("ranking"), get("value"),
            None if fields is None else orjson.dumps(fields).decode(),
            None if items is None else orjson.dumps(items).decode(),
        ))

    def events_table(self) -> pa.Table:
        return _table(self.rows, _EVENT_SCHEMA)

    def quarantine_table(self) -> pa.Table:
        return _table(self.quarantine, _QUARANTINE_SCHEMA)


def _table(rows: Iterable[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Loaded(NamedTuple):
    """A file's manifest row: the bytes consumed, their sha256, and when (epoch seconds)."""

    size: int
    checksum: str
    loaded_at: float

    @classmethod
    def of(cls, size: int, checksum: str, loaded_at: datetime) -> Loaded:
        """From a manifest row (loaded_at: a naive UTC timestamp, as `_now` writes it)."""
        return cls(size, checksum, loaded_at.replace(tzinfo=UTC).timestamp())


class RawWriter(ABC):
    """What the loader needs of a warehouse connection: a transaction, the three raw tables."""

    @abstractmethod
    def manifest(self) -> dict[str, Loaded]:
        """path -> (size_bytes, checksum, loaded_at) of every file loaded so far."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all."""

    @abstractmethod
    def insert_events(self, events: pa.Table, source_file: str, loaded_at: datetime) -> int:
        """Inserts the rows whose (tenant, event_id) is new; returns how many."""

    @abstractmethod
    def insert_quarantine(self, refused: pa.Table, source_file: str,
                          quarantined_at: datetime) -> None:
        """Adds refused records (line_number, record, reason)."""

    @abstractmethod
    def quarantine_file(self, source_file: str, reason: str, quarantined_at: datetime) -> None:
        """One quarantine row for a file that could not be read at all."""

    @abstractmethod
    def record_file(self, result: FileResult, size: int, checksum: str,
                    loaded_at: datetime) -> None:
        """The manifest row: size and checksum as given, the counts added to any earlier."""


class DuckDBWriter(RawWriter):
    """raw.* in the DuckDB file: arrow batches registered and inserted in one statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def manifest(self) -> dict[str, Loaded]:
        return {row[0]: Loaded.of(*row[1:]) for row in self.con.execute(
            "select path, size_bytes, checksum, loaded_at from raw.manifest").fetchall()}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("begin transaction")
        try:
            yield
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise

    def insert_events(self, events: pa.Table, source_file: str, loaded_at: datetime) -> int:
        return self._insert_from(
            events, "_ingest_batch",
            f"insert or ignore into raw.events ({', '.join(_EVENT_SCHEMA.names)}, "
            f"source_file, loaded_at) select *, ?, ? from _ingest_batch",
            [source_file, loaded_at])

    def insert_quarantine(self, refused: pa.Table, source_file: str,
                          quarantined_at: datetime) -> None:
        self._insert_from(
            refused, "_ingest_quarantine",
            "insert into raw.quarantine (source_file, line_number, record, reason, "
            "quarantined_at) select ?, line_number, record, reason, ? from _ingest_quarantine",
            [source_file, quarantined_at])

    def quarantine_file(self, source_file: str, reason: str, quarantined_at: datetime) -> None:
        self.con.execute("insert into raw.quarantine values (?, null, null, ?, ?)",
                         [source_file, reason, quarantined_at])

    def record_file(self, result: FileResult, size: int, checksum: str,
                    loaded_at: datetime) -> None:
        self.con.execute(
            "insert or replace into raw.manifest values (?, ?, ?, "
            "coalesce((select rows_loaded from raw.manifest where path = ?), 0) + ?, "
            "coalesce((select rows_quarantined from raw.manifest where path = ?), 0) + ?,"
            " coalesce((select duplicates_skipped from raw.manifest where path = ?), 0)"
            " + ?, ?)",
            [result.path, size, checksum, result.path, result.rows_loaded, result.path,
             result.rows_quarantined, result.path, result.duplicates_skipped, loaded_at],
        )

    def _insert_from(self, table: pa.Table, name: str, sql: str, params: list[Any]) -> int:
        """Runs an insert that selects from `table` registered as `name`; rows inserted."""
        self.con.register(name, table)
        try:
            rows = self.con.execute(sql, params).fetchall()  # no unfinished result left open
        finally:
            self.con.unregister(name)
        return int(rows[0][0]) if rows else 0


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Parsing allocates millions of short-lived, acyclic objects: the cyclic collector would
    walk every live batch again and again (a third of the parse time) and free nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class FileLoader:
    """Loads files into the warehouse on one connection, each file in its own transaction."""

    def __init__(self, writer: RawWriter, default_tenant: str,
                 progress: Callable[[str], None],
                 warn: Callable[[str], None] | None = None) -> None:
        self.writer = writer
        self.default_tenant = default_tenant
        self.progress = progress
        self.warn = warn or (lambda message: log.warning(message))

    def load(self, result: FileResult, records: Iterator[Record], total: int, size: int,
             checksum: str, allow_internal: bool) -> None:
        """All of one file's records and its manifest row in one transaction."""
        now = _now()
        started = time.perf_counter()
        try:
            with self.writer.transaction():
                with _without_cyclic_gc():
                    processed = self._insert(result, records, total, now, allow_internal)
                self.writer.record_file(result, size, checksum, now)
        finally:
            result.seconds = round(time.perf_counter() - started, 3)
        if processed >= CHUNK_LINES:
            self.progress(
                f"{Path(result.path).name}: committed {result.rows_loaded:,} rows, "
                f"{result.rows_quarantined:,} quarantined, {result.duplicates_skipped:,} "
                f"duplicates skipped in {result.seconds:.1f}s")

    def quarantine_whole(self, result: FileResult, size: int, checksum: str,
                         reason: str) -> None:
        """An unreadable file: one quarantine row and its manifest row, so it is not retried."""
        now = _now()
        result.status, result.message, result.rows_quarantined = "unreadable", reason, 1
        with self.writer.transaction():
            self.writer.quarantine_file(result.path, reason, now)
            self.writer.record_file(result, size, checksum, now)
        self.warn(f"landing file {result.path} cannot be read ({reason}): quarantined whole, "
                  "it is not read again; write a readable copy under a new name")

    def _insert(self, result: FileResult, records: Iterator[Record], total: int, now: datetime,
                allow_internal: bool) -> int:
        """Parses, validates and inserts in chunks; returns how many records were read."""
        started = time.perf_counter()
        batch, processed = _Batch(now), 0
        for number, text, raw in records:
            processed += 1
            if isinstance(raw, Unparsable):
                batch.refuse(number, text, raw.reason)
            else:
                try:
                    if not allow_internal:  # a landing line, as /v1/events takes it
                        check_event_keys(raw)
                    batch.add(parse_event(raw, self.default_tenant, allow_internal))
                except EventError as exc:
                    batch.refuse(number, text, str(exc))
            if processed % CHUNK_LINES == 0:
                self._flush(batch, result)
                batch = _Batch(now)
                self._report_progress(result, processed, total, started)
        self._flush(batch, result)
        return processed

    def _report_progress(self, result: FileResult, processed: int, total: int,
                         started: float) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        share = f" ({processed / total:.0%})" if total >= processed else ""
        self.progress(
            f"{Path(result.path).name}: {processed:,} of ~{total:,} records{share}, "
            f"{result.rows_loaded:,} loaded, {result.rows_quarantined:,} quarantined, "
            f"{processed / elapsed:,.0f} records/s")

    def _flush(self, batch: _Batch, result: FileResult) -> None:
        result.duplicates_skipped += batch.in_file_duplicates
        if batch.quarantine:
            refused = batch.quarantine_table()
            self.writer.insert_quarantine(refused, result.path, batch.loaded_at)
            result.rows_quarantined += refused.num_rows
        if not batch:
            return
        inserted = self.writer.insert_events(batch.events_table(), result.path, batch.loaded_at)
        result.rows_loaded += inserted
        result.duplicates_skipped += len(batch) - inserted
