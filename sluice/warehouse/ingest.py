"""Load the raw event log and landing files into the warehouse's `raw.*`, exactly once.

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
from sluice.warehouse.engine import Warehouse, as_warehouse
from sluice.warehouse.ingest_report import SUMMARY_COLUMNS, FileResult, IngestReport, format_table
from sluice.warehouse.loading import FileLoader, Loaded
from sluice.warehouse.sources import LANDING_SUFFIXES

__all__ = ["LANDING_SUFFIXES", "SUMMARY_COLUMNS", "FileResult", "IngestReport", "Ingestor",
           "format_table"]

log = logging.getLogger(__name__)

Seen = Loaded | None  # the file's manifest row, None if never loaded

# A file whose size is what was loaded and which was last modified before it was loaded has
# not changed since: it is not read again (a sealed segment, an old landing file), so a run
# reads what is new rather than the whole history. Object stores give modification times in
# whole seconds (S3's LastModified), so an object modified within the second before its load
# is read once more to make sure; a local file's time is exact.
URL_TIME_SLACK_S = 1.0


class Ingestor:
    """Discovers unloaded files and loads each in its own transaction."""

    def __init__(self, warehouse: Warehouse | Path, raw_dir: Path | str, landing_dir: Path | str,
                 default_tenant: str = "default",
                 progress: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None):
        """`progress` hears what is being loaded, `warn` each file that was not (unreadable,
        changed after loading), once, with what to do: both default to this module's log."""
        self.warehouse = as_warehouse(warehouse)  # a path: the DuckDB file there
        self.raw_dir = eventlog.location(raw_dir)
        self.landing_dir = eventlog.location(landing_dir)
        self.default_tenant = default_tenant
        self.progress = progress or (lambda message: log.info(message))
        self.warn = warn or (lambda message: log.warning(message))

    def run(self) -> IngestReport:
        with self.warehouse.lock(say=self.progress):
            return self._run()

    def _run(self) -> IngestReport:
        report = IngestReport()
        with self.warehouse.writer() as writer:
            manifest = writer.manifest()
            loader = FileLoader(writer, self.default_tenant, self.progress, self.warn)
            for path, size, modified in eventlog.segment_listing(self.raw_dir):
                seen = manifest.get(str(path))
                if unchanged_since_load(path, seen, size, modified):
                    report.files.append(FileResult(str(path), "raw_log", status="unchanged"))
                    continue
                # an object's size from the listing spares a request; a local file may grow
                known = size if eventlog.is_url(path) else None
                report.files.append(_load_segment(loader, path, seen, known, self.warn))
            landing, ignored, links = sources.landing_listing(self.landing_dir)
            for path in landing:
                report.files.append(self._load_landing(loader, path, manifest.get(str(path))))
            report.files.extend(FileResult(str(path), "landing", status="ignored",
                                           message=sources.IGNORED) for path in ignored)
            for path in links:  # no manifest row: the file put in its place loads as new
                self.warn(f"landing file {path}: {sources.LINK}")
                report.files.append(FileResult(str(path), "landing", status="refused",
                                               message=sources.LINK))
        return report

    def _load_landing(self, loader: FileLoader, path: Path | str, seen: Seen) -> FileResult:
        result = FileResult(str(path), "landing")
        size, modified = eventlog.stat_of(path)
        if unchanged_since_load(path, seen, size, modified):
            result.status = "unchanged"
            return result
        checksum = sources.sha256(path)
        if seen is not None:
            if (seen.size, seen.checksum) == (size, checksum):
                result.status = "unchanged"
            else:
                result.status = "changed_after_loading"
                result.message = ("file changed after it was loaded: drop new data under a "
                                  "new name")
                self.warn(f"landing file {path} changed after it was loaded and is not read "
                          "again: drop new data under a new name")
            return result
        try:
            records, total = sources.landing_records(path, self.default_tenant)
            loader.load(result, records, total, size, checksum, allow_internal=False)
        except sources.UnreadableFile as exc:
            loader.quarantine_whole(result, size, checksum, str(exc))
        return result


def unchanged_since_load(path: Path | str, seen: Seen, size: int, modified: float) -> bool:
    """True when the file cannot have changed since its manifest row was written (see
    URL_TIME_SLACK_S): the same size, modified before it was loaded."""
    slack = URL_TIME_SLACK_S if eventlog.is_url(path) else 0.0
    return seen is not None and size == seen.size and modified < seen.loaded_at - slack


def _load_segment(loader: FileLoader, path: Path | str, seen: Seen, size: int | None,
                  warn: Callable[[str], None]) -> FileResult:
    """Loads the complete lines a raw log segment gained since the last run."""
    result = FileResult(str(path), "raw_log")
    try:
        tail = sources.segment_tail(path, None if seen is None else seen[:2], size)
    except sources.SegmentChanged:
        result.status = "changed_after_loading"
        result.message = "the part already loaded was rewritten; it is not reloaded"
        warn(f"raw log segment {path} was rewritten after it was loaded; the rewritten part is "
             "not reloaded: `sluice rebuild` reloads the whole raw log")
        return result
    if tail is None:
        result.status = "unchanged"
        return result
    loader.load(result, tail.records, tail.lines, tail.end, tail.checksum, allow_internal=True)
    return result
