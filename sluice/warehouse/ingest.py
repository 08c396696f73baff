"""Load the raw event log and landing files into DuckDB `raw.*`, exactly once.

Each file is loaded in one transaction together with its manifest row, so a crash leaves
either the whole file or nothing; a re-run loads only what is new. Event ids deduplicate
across files through the (tenant, event_id) primary key.

`raw_dir` and `landing_dir` may be fsspec URLs (`memory://landing`, `s3://bucket/landing`): files
are then listed and read through fsspec and keyed in the manifest by their full URL.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import pyarrow as pa

from sluice.intake import eventlog, tabular
from sluice.intake.events import EventError, parse_event
from sluice.warehouse.db import connect
from sluice.warehouse.locks import warehouse_lock

log = logging.getLogger(__name__)

CHUNK_LINES = 100_000
LANDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".csv", ".parquet")
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


@dataclass
class FileResult:
    path: str
    kind: str
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates_skipped: int = 0
    status: str = "loaded"  # loaded | unchanged | changed_after_loading | unreadable
    message: str = ""
    seconds: float = 0.0


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def duplicates_skipped(self) -> int:
        return sum(f.duplicates_skipped for f in self.files)

    def as_rows(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.files if f.status != "unchanged"]

    def table_rows(self, root: Path | None = None) -> list[dict[str, Any]]:
        """One row per file that was not unchanged, then a total row: the summary table."""
        rows = [{"file": _display(f.path, root), "kind": f.kind, "status": f.status,
                 "rows_loaded": f.rows_loaded, "quarantined": f.rows_quarantined,
                 "duplicates_skipped": f.duplicates_skipped, "seconds": f.seconds}
                for f in self.files if f.status != "unchanged"]
        unchanged = len(self.files) - len(rows)
        rows.append({
            "file": f"total: {len(rows)} files" + (f" ({unchanged} unchanged)" if unchanged
                                                  else ""),
            "kind": "", "status": "", "rows_loaded": self.rows_loaded,
            "quarantined": self.rows_quarantined, "duplicates_skipped": self.duplicates_skipped,
            "seconds": round(sum(f.seconds for f in self.files), 3),
        })
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "files": len([f for f in self.files if f.status == "loaded"]),
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_skipped": self.duplicates_skipped,
            "unreadable_files": [f.path for f in self.files if f.status == "unreadable"],
            "changed_files": [f.path for f in self.files if f.status == "changed_after_loading"],
        }


SUMMARY_COLUMNS = ["file", "kind", "status", "rows_loaded", "quarantined", "duplicates_skipped",
                   "seconds"]


def format_table(rows: list[dict[str, Any]], columns: list[str] = SUMMARY_COLUMNS) -> str:
    """A plain-text table; numbers right-aligned with thousands separators."""
    def cell(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), int | float) for r in rows if r.get(c) != "")
               for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    return "\n".join(out + [line(row) for row in cells])


def _display(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(path).relative_to(root))
        except ValueError:
            pass
    return path


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
        columns = zip(*self.rows, strict=True)
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, _EVENT_SCHEMA, strict=True)],
            schema=_EVENT_SCHEMA)

    def quarantine_table(self) -> pa.Table:
        columns = list(zip(*self.quarantine, strict=True))
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, _QUARANTINE_SCHEMA, strict=True)],
            schema=_QUARANTINE_SCHEMA)


def _json_lines(data: bytes, first_line: int) -> Iterator[tuple[int, bytes, Any]]:
    """(line number, line, parsed JSON or _Unparsable) for each non-blank line."""
    loads, error = orjson.loads, orjson.JSONDecodeError
    for number, line in enumerate(data.splitlines(), first_line):
        try:
            yield number, line, loads(line)
        except error as exc:
            if line.strip():
                yield number, line, _Unparsable(f"line is not JSON: {exc}")


@dataclass
class _Unparsable:
    reason: str


class Ingestor:
    """Discovers unloaded files and loads each in its own transaction."""

    def __init__(self, warehouse: Path, raw_dir: Path | str, landing_dir: Path | str,
                 default_tenant: str = "default",
                 progress: Callable[[str], None] | None = None):
        self.warehouse = Path(warehouse)
        self.raw_dir = eventlog.location(raw_dir)
        self.landing_dir = eventlog.location(landing_dir)
        self.default_tenant = default_tenant
        self.progress = progress or (lambda message: log.info(message))

    def run(self) -> IngestReport:
        with warehouse_lock(self.warehouse, say=self.progress):
            return self._run()

    def _run(self) -> IngestReport:
        report = IngestReport()
        con = connect(self.warehouse)
        try:
            manifest = {
                row[0]: (row[1], row[2])
                for row in con.execute("select path, size_bytes, checksum from raw.manifest")
                .fetchall()
            }
            for path in eventlog.segments(self.raw_dir):
                report.files.append(self._load_segment(con, path, manifest.get(str(path))))
            for path in self._landing_files():
                report.files.append(self._load_landing(con, path, manifest.get(str(path))))
        finally:
            con.close()
        return report

    def _landing_files(self) -> list[Path] | list[str]:
        if isinstance(self.landing_dir, str):
            return _remote_landing_files(self.landing_dir)
        if not self.landing_dir.exists():
            return []
        root = self.landing_dir.resolve()
        found = []
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue  # a link could point outside the landing folder
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if hidden or not path.name.endswith(LANDING_SUFFIXES):
                continue
            found.append(path)
        return found

    # raw log segments grow: load the complete lines past what the manifest consumed
    def _load_segment(self, con, path: Path | str, seen: tuple[int, str] | None) -> FileResult:
        result = FileResult(str(path), "raw_log")
        consumed, digest = (0, hashlib.sha256()) if seen is None else (seen[0], None)
        if seen is not None:
            prefix, _ = eventlog.read_complete(path, 0, max_bytes=seen[0])
            digest = hashlib.sha256(prefix)
            if len(prefix) != seen[0] or digest.hexdigest() != seen[1]:
                result.status = "changed_after_loading"
                result.message = "the part already loaded was rewritten; it is not reloaded"
                log.warning("raw log segment %s changed after loading", path)
                return result
        data, end = eventlog.read_complete(path, consumed)
        if not data:
            result.status = "unchanged"
            return result
        digest.update(data)
        first_line = 1 + (0 if consumed == 0 else _count_lines(path, consumed))
        lines = _json_lines(data, first_line)
        self._load(con, result, lines, data.count(b"\n"), end, digest.hexdigest(),
                   allow_internal=True)
        return result

    def _load_landing(self, con, path: Path | str, seen: tuple[int, str] | None) -> FileResult:
        result = FileResult(str(path), "landing")
        checksum = _sha256(path)
        size = eventlog.size_of(path)
        if seen is not None:
            if seen == (size, checksum):
                result.status = "unchanged"
            else:
                result.status = "changed_after_loading"
                result.message = ("file changed after it was loaded: drop new data under a "
                                  "new name")
                log.warning("landing file %s changed after loading", path)
            return result
        try:
            records, total = self._landing_records(path)
            self._load(con, result, records, total, size, checksum, allow_internal=False)
        except _UnreadableFile as exc:
            self._quarantine_whole(con, result, path, size, checksum, str(exc))
        return result

    def _landing_records(self, path: Path | str
                         ) -> tuple[Iterator[tuple[int, bytes | str, Any]], int]:
        """The file's records and about how many there are."""
        name = _name(path)
        if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
            try:
                with _open(path, gzipped=name.endswith(".gz")) as handle:
                    data = handle.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise _UnreadableFile(f"cannot read {name}: {exc}") from exc
            return _json_lines(data, 1), data.count(b"\n") + (not data.endswith(b"\n"))
        try:
            with _open(path) if isinstance(path, str) else nullcontext(path) as source:
                frame = pd.read_parquet(source) if name.endswith(".parquet") else pd.read_csv(
                    source, dtype=str, keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise _UnreadableFile(f"cannot parse {name}: {exc}") from exc
        return self._tabular_records(frame), len(frame)

    def _tabular_records(self, frame: pd.DataFrame) -> Iterator[tuple[int, str, Any]]:
        try:
            kind, good, bad = tabular.validate(frame)
        except ValueError as exc:
            raise _UnreadableFile(str(exc)) from exc
        originals = frame.to_dict("index")
        for index, reason in sorted(bad.items()):
            yield index + 2, orjson.dumps(originals[index], default=str).decode(), _Unparsable(
                reason)
        for index, row in zip(good.index, good.to_dict("records"), strict=True):
            text = orjson.dumps(originals[index], default=str).decode()
            try:
                yield index + 2, text, tabular.row_to_event(kind, row, self.default_tenant)
            except (TypeError, ValueError) as exc:
                yield index + 2, text, _Unparsable(f"row cannot be read: {exc}")

    def _load(self, con: duckdb.DuckDBPyConnection, result: FileResult,
              records: Iterator[tuple[int, bytes | str, Any]], total: int, size: int,
              checksum: str, allow_internal: bool) -> None:
        """All of one file's records and its manifest row in one transaction."""
        now = datetime.now(UTC).replace(tzinfo=None)
        started = time.perf_counter()
        con.execute("begin transaction")
        try:
            with _without_cyclic_gc():
                processed = self._insert(con, result, records, total, now, allow_internal)
            con.execute(
                "insert or replace into raw.manifest values (?, ?, ?, "
                "coalesce((select rows_loaded from raw.manifest where path = ?), 0) + ?, "
                "coalesce((select rows_quarantined from raw.manifest where path = ?), 0) + ?, "
                "coalesce((select duplicates_skipped from raw.manifest where path = ?), 0) + ?, ?)",
                [result.path, size, checksum, result.path, result.rows_loaded, result.path,
                 result.rows_quarantined, result.path, result.duplicates_skipped, now],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        finally:
            result.seconds = round(time.perf_counter() - started, 3)
        if processed >= CHUNK_LINES:
            self.progress(
                f"{Path(result.path).name}: committed {result.rows_loaded:,} rows, "
                f"{result.rows_quarantined:,} quarantined, {result.duplicates_skipped:,} "
                f"duplicates skipped in {result.seconds:.1f}s")

    def _insert(self, con: duckdb.DuckDBPyConnection, result: FileResult,
                records: Iterator[tuple[int, bytes | str, Any]], total: int, now: datetime,
                allow_internal: bool) -> int:
        """Parses, validates and inserts in chunks; returns how many records were read."""
        started = time.perf_counter()
        batch, processed = _Batch(now), 0
        for number, text, raw in records:
            processed += 1
            if isinstance(raw, _Unparsable):
                batch.refuse(number, text, raw.reason)
            else:
                try:
                    batch.add(parse_event(raw, self.default_tenant, allow_internal))
                except EventError as exc:
                    batch.refuse(number, text, str(exc))
            if processed % CHUNK_LINES == 0:
                self._flush(con, batch, result)
                batch = _Batch(now)
                self._report_progress(result, processed, total, started)
        self._flush(con, batch, result)
        return processed

    def _report_progress(self, result: FileResult, processed: int, total: int,
                         started: float) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        share = f" ({processed / total:.0%})" if total >= processed else ""
        self.progress(
            f"{Path(result.path).name}: {processed:,} of ~{total:,} records{share}, "
            f"{result.rows_loaded:,} loaded, {result.rows_quarantined:,} quarantined, "
            f"{processed / elapsed:,.0f} records/s")

    def _flush(self, con: duckdb.DuckDBPyConnection, batch: _Batch, result: FileResult) -> None:
        result.duplicates_skipped += batch.in_file_duplicates
        if batch.quarantine:
            refused = batch.quarantine_table()
            con.register("_ingest_quarantine", refused)
            try:
                con.execute(
                    "insert into raw.quarantine (source_file, line_number, record, reason, "
                    "quarantined_at) select ?, line_number, record, reason, ? "
                    "from _ingest_quarantine", [result.path, batch.loaded_at])
            finally:
                con.unregister("_ingest_quarantine")
            result.rows_quarantined += refused.num_rows
        if not batch:
            return
        con.register("_ingest_batch", batch.events_table())
        try:
            inserted = con.execute(
                f"insert or ignore into raw.events ({', '.join(_EVENT_SCHEMA.names)}, "
                f"source_file, loaded_at) select *, ?, ? from _ingest_batch",
                [result.path, batch.loaded_at],
            ).fetchone()[0]
        finally:
            con.unregister("_ingest_batch")
        result.rows_loaded += inserted
        result.duplicates_skipped += len(batch) - inserted

    def _quarantine_whole(self, con, result: FileResult, path: Path | str, size: int, checksum: str,
                          reason: str) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        result.status, result.message, result.rows_quarantined = "unreadable", reason, 1
        con.execute("begin transaction")
        try:
            con.execute("insert into raw.quarantine values (?, null, null, ?, ?)",
                        [str(path), reason, now])
            con.execute("insert or replace into raw.manifest values (?, ?, ?, 0, 1, 0, ?)",
                        [str(path), size, checksum, now])
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        log.warning("landing file %s quarantined whole: %s", path, reason)


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


class _UnreadableFile(Exception):
    pass


def _remote_landing_files(url: str) -> list[str]:
    """Landing files under a URL; hidden path parts skipped (no symlinks on object stores)."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    if not fs.exists(root):
        return []
    found = []
    for path in sorted(fs.find(root)):
        parts = path[len(root):].strip("/").split("/")
        if any(part.startswith(".") for part in parts) or not path.endswith(LANDING_SUFFIXES):
            continue
        found.append(eventlog.file_url(fs, path))
    return found


def _name(path: Path | str) -> str:
    return path.rsplit("/", 1)[-1] if isinstance(path, str) else path.name


def _open(path: Path | str, gzipped: bool = False) -> Any:
    """A binary reader: plain open (or gzip.open) for local paths, fsspec for URLs."""
    if isinstance(path, str):
        import fsspec

        return fsspec.open(path, "rb", compression="gzip" if gzipped else None)
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115


def _sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with _open(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _count_lines(path: Path | str, upto: int) -> int:
    data, _ = eventlog.read_complete(path, 0, max_bytes=upto)
    return data.count(b"\n")
