"""Load the raw event log and landing files into DuckDB `raw.*`, exactly once.

Each file is loaded in one transaction together with its manifest row, so a crash leaves
either the whole file or nothing; a re-run loads only what is new. Event ids deduplicate
across files through the (tenant, event_id) primary key.

`raw_dir` and `landing_dir` may be fsspec URLs (`memory://landing`, `s3://bucket/landing`): files
are then listed and read through fsspec and keyed in the manifest by their full URL.

The parts: `sources` reads segments and landing files into records, `loading` writes one file's
records and manifest row in a transaction, `ingest_report` says what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sluice.intake import eventlog
from sluice.warehouse import sources
from sluice.warehouse.db import connect
from sluice.warehouse.ingest_report import SUMMARY_COLUMNS, FileResult, IngestReport, format_table
from sluice.warehouse.loading import FileLoader
from sluice.warehouse.locks import warehouse_lock
from sluice.warehouse.sources import LANDING_SUFFIXES

__all__ = ["LANDING_SUFFIXES", "SUMMARY_COLUMNS", "FileResult", "IngestReport", "Ingestor",
           "format_table"]

log = logging.getLogger(__name__)

Seen = tuple[int, str] | None  # (size, checksum) from the manifest, None if never loaded


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
            loader = FileLoader(con, self.default_tenant, self.progress)
            for path, size in eventlog.segment_sizes(self.raw_dir):
                # an object's size from the listing spares a request; a local file may grow
                known = size if eventlog.is_url(path) else None
                report.files.append(_load_segment(loader, path, manifest.get(str(path)), known))
            for path in sources.landing_files(self.landing_dir):
                report.files.append(self._load_landing(loader, path, manifest.get(str(path))))
        finally:
            con.close()
        return report

    def _load_landing(self, loader: FileLoader, path: Path | str, seen: Seen) -> FileResult:
        result = FileResult(str(path), "landing")
        checksum = sources.sha256(path)
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
            records, total = sources.landing_records(path, self.default_tenant)
            loader.load(result, records, total, size, checksum, allow_internal=False)
        except sources.UnreadableFile as exc:
            loader.quarantine_whole(result, size, checksum, str(exc))
        return result


def _load_segment(loader: FileLoader, path: Path | str, seen: Seen,
                  size: int | None) -> FileResult:
    """Loads the complete lines a raw log segment gained since the last run."""
    result = FileResult(str(path), "raw_log")
    try:
        tail = sources.segment_tail(path, seen, size)
    except sources.SegmentChanged:
        result.status = "changed_after_loading"
        result.message = "the part already loaded was rewritten; it is not reloaded"
        log.warning("raw log segment %s changed after loading", path)
        return result
    if tail is None:
        result.status = "unchanged"
        return result
    loader.load(result, tail.records, tail.lines, tail.end, tail.checksum, allow_internal=True)
    return result
