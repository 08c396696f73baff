"""Rebuild the warehouse from the raw log and the loaded landing files, then swap it in.

The raw log and the landing folder are the source of truth: ingest never moves or deletes a
landing file, so the landing folder is the archive of every bulk file loaded. A rebuild
ingests all of it into `<warehouse>.rebuild`, runs dbt there, and only then replaces the
warehouse with one atomic rename; a crash or error before the rename leaves the old
warehouse in place, untouched. The old file stays beside it as `<warehouse>.before-rebuild`.

The whole rebuild holds the warehouse lock, so scheduled ingests and trains queue behind it
instead of writing into the file being replaced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sluice.errors import OperatorError
from sluice.intake import eventlog
from sluice.warehouse.db import checkpoint, connect, count, set_aside_wal
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.locks import warehouse_lock
from sluice.warehouse.transform import dbt_build

Say = Callable[[str], None]


class RebuildError(OperatorError):
    """The rebuild cannot be made faithful (e.g. a loaded landing file is gone)."""


@dataclass
class RebuildReport:
    rows_loaded: int = 0
    rows_quarantined: int = 0
    marts: dict[str, int] = field(default_factory=dict)  # mart -> rows in the new warehouse
    previous: Path | None = None  # the old warehouse, kept beside the new one


def staging_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".rebuild")


def previous_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".before-rebuild")


def rebuild(warehouse: Path, raw_dir: Path | str, landing_dir: Path | str, work_dir: Path,
            dbt_vars: dict[str, Any], default_tenant: str = "default", say: Say = print,
            before_swap: Callable[[Path], None] | None = None) -> RebuildReport:
    """Builds a new warehouse and swaps it in; `before_swap` (tests) sees the new file."""
    warehouse = Path(warehouse)
    new = staging_path(warehouse)
    with warehouse_lock(warehouse, say=say):
        _check_sources(warehouse, say)
        _remove(new)
        try:
            report = _build(new, warehouse, raw_dir, landing_dir, work_dir, dbt_vars,
                            default_tenant, say)
            if before_swap is not None:
                before_swap(new)
            report.previous = _swap(new, warehouse, say)
        finally:
            _remove(new)
    return report


def _check_sources(warehouse: Path, say: Say) -> None:
    """Refuses when a file the old warehouse loaded is gone: its rows would be lost."""
    if not warehouse.exists():
        say("no warehouse yet: building one from the raw log and landing folder")
        return
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error as exc:
        say(f"the old warehouse cannot be read ({exc}); rebuilding without checking it")
        return
    try:
        paths = [row[0] for row in con.execute("select path from raw.manifest").fetchall()]
    except duckdb.Error:
        paths = []
    finally:
        con.close()
    missing = [p for p in paths if not _exists(p)]
    if missing:
        raise RebuildError(
            f"{len(missing)} loaded file(s) are gone, e.g. {missing[0]}: restore them into "
            "the landing folder (or from a `sluice backup`) before rebuilding, or their rows "
            "would be lost")


def _exists(path: str) -> bool:
    try:
        eventlog.size_of(path)
    except (FileNotFoundError, OSError):
        return False
    return True


def _build(new: Path, old: Path, raw_dir: Path | str, landing_dir: Path | str, work_dir: Path,
           dbt_vars: dict[str, Any], default_tenant: str, say: Say) -> RebuildReport:
    say(f"rebuild 1/3: ingesting the raw log and landing files into {new.name}")
    ingested = Ingestor(new, raw_dir, landing_dir, default_tenant, progress=say).run()
    report = RebuildReport(ingested.rows_loaded, ingested.rows_quarantined)
    say(f"rebuild 1/3: {report.rows_loaded:,} events loaded, "
        f"{report.rows_quarantined:,} quarantined, from {len(ingested.files)} files")
    _keep_load_times(new, old, say)
    say("rebuild 2/3: dbt build (staging, intermediate, marts) on the new warehouse")
    dbt_build(new, work_dir, dbt_vars)
    report.marts = mart_counts(new)
    say("rebuild 2/3: marts " + ", ".join(f"{k} {v:,}" for k, v in report.marts.items()))
    Path(f"{new}.lock").unlink(missing_ok=True)
    return report


def _keep_load_times(new: Path, old: Path, say: Say) -> None:
    """Events keep the load time they had, when the old warehouse can still say it: dbt
    orders replays by it, so the rebuilt marts equal the old ones."""
    if not old.exists():
        return
    con = connect(new)
    try:
        quoted = str(old).replace("'", "''")
        con.execute(f"attach '{quoted}' as old (read_only)")
        con.execute(
            "update raw.events as e set loaded_at = o.loaded_at from old.raw.events as o "
            "where e.tenant = o.tenant and e.event_id = o.event_id")
        con.execute("detach old")
    except duckdb.Error as exc:
        say(f"the old warehouse's load times cannot be read ({exc}); events get new ones")
    finally:
        con.close()


def mart_counts(warehouse: Path) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_type = 'BASE TABLE' order by table_name").fetchall()]
        return {t: count(con, f'select count(*) from marts."{t}"')
                for t in tables}
    finally:
        con.close()


def _swap(new: Path, warehouse: Path, say: Say) -> Path | None:
    """One rename puts the new file in place; the old one stays as `.before-rebuild`."""
    say(f"rebuild 3/3: swapping {new.name} in for {warehouse.name}")
    checkpoint(new)
    previous = None
    if warehouse.exists():
        previous = previous_path(warehouse)
        _remove(previous)
        try:
            checkpoint(warehouse)  # no WAL of the old file may outlive it and replay on the new
        except duckdb.Error as exc:
            say(f"the old warehouse cannot be checkpointed ({exc}); its WAL is set aside")
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{warehouse}.wal", f"{previous}.wal")
        os.link(warehouse, previous)
    else:
        set_aside_wal(warehouse, say)  # the lost file's WAL would be replayed onto the new one
    os.replace(new, warehouse)
    eventlog.fsync_dir(warehouse.parent)
    say(f"rebuild done: {warehouse} replaced"
        + (f"; the old one is kept as {previous}" if previous else ""))
    return previous


def _remove(path: Path) -> None:
    for stale in (path, Path(f"{path}.wal")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


