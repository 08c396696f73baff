"""Load the raw event log and landing files into DuckDB `raw.*`, exactly once.

Each file is loaded in one transaction together with its manifest row, so a crash leaves
either the whole file or nothing; a re-run loads only what is new. Event ids deduplicate
across files through the (tenant, event_id) primary key.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd

from sluice import eventlog, tabular
from sluice.events import EventError, parse_event
from sluice.warehouse import connect

log = logging.getLogger(__name__)

CHUNK_LINES = 100_000
LANDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".csv", ".parquet")
EVENT_COLUMNS = [
    "event_id", "tenant", "event_type", "event_at", "user_id", "session_id", "item_id",
    "interaction_type", "ranking_id", "event_value", "fields", "items", "source_file",
    "loaded_at",
]


@dataclass
class FileResult:
    path: str
    kind: str
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates_skipped: int = 0
    status: str = "loaded"  # loaded | unchanged | changed_after_loading | unreadable
    message: str = ""


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

    def summary(self) -> dict[str, Any]:
        return {
            "files": len([f for f in self.files if f.status == "loaded"]),
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_skipped": self.duplicates_skipped,
            "unreadable_files": [f.path for f in self.files if f.status == "unreadable"],
            "changed_files": [f.path for f in self.files if f.status == "changed_after_loading"],
        }


@dataclass
class _Batch:
    rows: dict[tuple[str, str], tuple] = field(default_factory=dict)
    quarantine: list[tuple] = field(default_factory=list)
    in_file_duplicates: int = 0


def _row(event: dict[str, Any], source: str, now: datetime) -> tuple:
    fields = event.get("fields")
    items = event.get("items")
    return (
        event["id"], event["tenant"], event["event"],
        datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC).replace(tzinfo=None),
        event.get("user"), event.get("session"), event.get("item"), event.get("type"),
        event.get("ranking"), event.get("value"),
        orjson.dumps(fields).decode() if fields else None,
        orjson.dumps(items).decode() if items is not None else None,
        source, now,
    )


def _add(batch: _Batch, raw: Any, where: int, source: str, text: str, now: datetime,
         default_tenant: str, allow_internal: bool) -> None:
    try:
        event = parse_event(raw, default_tenant, allow_internal=allow_internal)
    except EventError as exc:
        batch.quarantine.append((source, where, text[:10_000], str(exc), now))
        return
    key = (event["tenant"], event["id"])
    if key in batch.rows:
        batch.in_file_duplicates += 1
        return
    batch.rows[key] = _row(event, source, now)


def _json_lines(data: bytes, first_line: int) -> Iterator[tuple[int, str, Any]]:
    for offset, line in enumerate(data.splitlines()):
        number = first_line + offset
        if not line.strip():
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            yield number, text, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, text, _Unparsable(f"line is not JSON: {exc}")


@dataclass
class _Unparsable:
    reason: str


class Ingestor:
    """Discovers unloaded files and loads each in its own transaction."""

    def __init__(self, warehouse: Path, raw_dir: Path, landing_dir: Path,
                 default_tenant: str = "default",
                 progress: Callable[[str], None] | None = None):
        self.warehouse = Path(warehouse)
        self.raw_dir = Path(raw_dir)
        self.landing_dir = Path(landing_dir)
        self.default_tenant = default_tenant
        self.progress = progress or (lambda message: log.info(message))

    def run(self) -> IngestReport:
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

    def _landing_files(self) -> list[Path]:
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
    def _load_segment(self, con, path: Path, seen: tuple[int, str] | None) -> FileResult:
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
        self._load(con, result, lines, end, digest.hexdigest(), allow_internal=True)
        return result

    def _load_landing(self, con, path: Path, seen: tuple[int, str] | None) -> FileResult:
        result = FileResult(str(path), "landing")
        checksum = _sha256(path)
        size = path.stat().st_size
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
            records = self._landing_records(path)
            self._load(con, result, records, size, checksum, allow_internal=False)
        except _UnreadableFile as exc:
            self._quarantine_whole(con, result, path, size, checksum, str(exc))
        return result

    def _landing_records(self, path: Path) -> Iterator[tuple[int, str, Any]]:
        name = path.name
        if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
            try:
                opener = gzip.open if name.endswith(".gz") else open
                with opener(path, "rb") as handle:
                    data = handle.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise _UnreadableFile(f"cannot read {name}: {exc}") from exc
            return _json_lines(data, 1)
        try:
            frame = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise _UnreadableFile(f"cannot parse {name}: {exc}") from exc
        return self._tabular_records(frame)

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

    def _load(self, con, result: FileResult, records: Iterator[tuple[int, str, Any]],
              size: int, checksum: str, allow_internal: bool) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        con.execute("begin transaction")
        try:
            batch = _Batch()
            for number, text, raw in records:
                if isinstance(raw, _Unparsable):
                    batch.quarantine.append((result.path, number, text[:10_000], raw.reason, now))
                else:
                    _add(batch, raw, number, result.path, text, now, self.default_tenant,
                         allow_internal)
                if len(batch.rows) >= CHUNK_LINES:
                    self._flush(con, batch, result)
                    self.progress(f"{Path(result.path).name}: {result.rows_loaded:,} rows so far")
                    batch = _Batch()
            self._flush(con, batch, result)
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

    def _flush(self, con: duckdb.DuckDBPyConnection, batch: _Batch, result: FileResult) -> None:
        result.duplicates_skipped += batch.in_file_duplicates
        if batch.quarantine:
            con.executemany("insert into raw.quarantine values (?, ?, ?, ?, ?)", batch.quarantine)
            result.rows_quarantined += len(batch.quarantine)
        if not batch.rows:
            return
        frame = pd.DataFrame(list(batch.rows.values()), columns=EVENT_COLUMNS)
        con.register("_ingest_batch", frame)
        try:
            inserted = con.execute(
                "insert or ignore into raw.events select * from _ingest_batch"
            ).fetchone()[0]
        finally:
            con.unregister("_ingest_batch")
        result.rows_loaded += inserted
        result.duplicates_skipped += len(batch.rows) - inserted

    def _quarantine_whole(self, con, result: FileResult, path: Path, size: int, checksum: str,
                          reason: str) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        result.status, result.message, result.rows_quarantined = "unreadable", reason, 1
        con.execute("begin transaction")
        con.execute("insert into raw.quarantine values (?, null, null, ?, ?)",
                    [str(path), reason, now])
        con.execute("insert or replace into raw.manifest values (?, ?, ?, 0, 1, 0, ?)",
                    [str(path), size, checksum, now])
        con.execute("commit")
        log.warning("landing file %s quarantined whole: %s", path, reason)


class _UnreadableFile(Exception):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _count_lines(path: Path, upto: int) -> int:
    data, _ = eventlog.read_complete(path, 0, max_bytes=upto)
    return data.count(b"\n")
