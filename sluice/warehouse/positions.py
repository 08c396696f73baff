"""How far into the raw log the marts a training run reads go: what serving needs to tell the
events a model trained on from those it did not, whatever their event time.

Ingest's manifest keeps, per raw-log segment, the bytes loaded so far (whole lines) and when
they were loaded. Training reads the marts that dbt built from what had been loaded when it
last ran, and ingest may have run since (`sluice ingest` on its schedule between the
transform and train flows, or `sluice train` alone): a segment's manifest row then already
says more than the marts hold, and what it said when dbt ran is gone.

The rule: the interactions mart keeps each row's raw load time (`loaded_at`), and ingest stamps
each file's load with the time it started under the warehouse lock (loads and dbt runs take
the lock in turn), so dbt saw every load stamped no later than the newest `loaded_at` the mart
holds. A segment whose manifest row is stamped no later than that is covered up to its loaded
size ("covered"); one stamped later was loaded again after the marts were built, or its last
load brought no interaction, and how much of it the marts hold is not known ("unknown"):
serving goes by event time there, as it did for every event before. A segment not listed
was not loaded when the marts were built: nothing in it was trained on.

Read under the warehouse lock the train flow holds, so that no load lands between the two
queries. Only raw-log segments are listed, by file name (unique per log: its start time and
writer, `EventLog._next_name`), so that serving matches them however it spells the log's
path or URL; landing files are left out (serving never reads them).

The record is compact (sluice.intake.log_coverage): per writer, the segments trained on whole
up to its newest such one, and only the exceptions by name. Telling "whole" takes a listing
of the log made after the manifest was read (one LIST per thousand objects on a bucket, as
each ingest run makes); when the log cannot be listed, every segment is named, as before.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

from sluice.intake import eventlog
from sluice.intake.log_coverage import META_KEY, compact
from sluice.intake.log_positions import segment_name
from sluice.warehouse.engine import MissingTable, Warehouse

__all__ = ["META_KEY", "trained_positions"]  # META_KEY: the bundle meta key of the record

log = logging.getLogger(__name__)

_QUERY = """
select
    manifest.path,
    manifest.size_bytes,
    coalesce(manifest.loaded_at <= (select max(loaded_at) from marts.interactions), false)
from raw.manifest as manifest
"""


def trained_positions(warehouse: Warehouse, raw_root: Path | str) -> dict[str, Any] | None:
    """The record (sluice.intake.log_coverage) of the raw log at `raw_root` as the marts hold
    it; None when the manifest lists none of its segments (no raw log loaded: serving then
    goes by event time alone)."""
    try:
        rows = warehouse.rows(_QUERY)
    except MissingTable:
        return None
    root = _spelled(raw_root)
    loaded: dict[str, tuple[int, bool]] = {}
    for path, size, seen in rows:
        name = _segment_of(str(path), root)
        if name is not None:
            loaded[name] = (int(size), bool(seen))
    if not loaded:
        return None
    return compact(loaded, _listed(raw_root), eventlog.objects_are_immutable(raw_root))


def _listed(raw_root: Path | str) -> dict[str, int] | None:
    """Each segment's size as the log lists it now; None (every segment named) when the log
    cannot be listed."""
    try:
        return {segment_name(path): size
                for path, size, _ in eventlog.segment_listing(raw_root)}
    except Exception as exc:  # a store's client raises its own kinds (botocore, ...)
        log.warning("raw log %s could not be listed (%s): the bundle names each of its "
                    "segments", raw_root, exc)
        return None


def _spelled(raw_root: Path | str) -> tuple[str, ...]:
    """The spellings of the raw log's folder that ingest's manifest keys may start with."""
    root = eventlog.location(raw_root)
    if isinstance(root, Path):
        return tuple(dict.fromkeys((str(root), str(root.resolve()))))
    fs, inner = eventlog._url_to_fs(root)
    return tuple(dict.fromkeys((eventlog.file_url(fs, inner).rstrip("/"), root.rstrip("/"))))


def _segment_of(key: str, root: tuple[str, ...]) -> str | None:
    """The segment's file name when manifest key `key` is a segment of the raw log at `root`."""
    folder, _, name = key.rpartition("/")
    if not fnmatch.fnmatch(name, eventlog.SEGMENT_GLOB):
        return None
    if folder in root or (not eventlog.is_url(key)
                          and str(Path(folder).resolve()) in root):
        return name
    return None
