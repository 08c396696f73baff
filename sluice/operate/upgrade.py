"""`sluice upgrade`: brings a home's kept formats up to what this code reads.

A migration moves one format (`raw_log`, `warehouse`, `config`) from version N-1 to N. It
must be idempotent: a crash half-way leaves the stored version at N-1, and the next
`sluice upgrade` runs the same migration again from the start, then records N. The stored
version is written only after a migration finished, one step at a time, so an upgrade
across several versions resumes at the first step not recorded.

Model bundles are not migrated: they are immutable registry artifacts; a bundle newer than
the code is refused when loaded, an older one is read as it is (or retrained).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from sluice import formats
from sluice.errors import OperatorError
from sluice.settings import DEFAULT_CONFIG, Settings
from sluice.warehouse.db import format_version, set_format_version
from sluice.warehouse.locks import warehouse_lock

Say = Callable[[str], None]
KINDS = ("raw_log", "warehouse", "config")


@dataclass(frozen=True)
class Migration:
    kind: str
    to_version: int  # migrates from to_version - 1
    name: str
    apply: Callable[[Settings, Say], None]  # idempotent: may run again after a crash


# Every format is at version 1 so far: nothing to migrate yet.
MIGRATIONS: tuple[Migration, ...] = ()


class UpgradeError(OperatorError):
    """A step the upgrade cannot take; the message says what to do."""


def stored_version(settings: Settings, kind: str) -> int:
    """The version the home holds (1 when it predates versioning or holds nothing yet)."""
    if kind == "raw_log":
        return formats.read_marker(settings.raw_dir) or 1
    if kind == "warehouse":
        if not settings.warehouse_path.exists():
            return formats.CURRENT["warehouse"]
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
        try:
            return format_version(con) or 1
        finally:
            con.close()
    if kind == "config":
        if _embedded(settings):
            return formats.CURRENT["config"]
        raw = yaml.safe_load(settings.config.read_text()) or {}
        return int(raw.get("format_version", 1))
    raise ValueError(f"unknown format {kind!r}")


def record_version(settings: Settings, kind: str, version: int) -> None:
    if kind == "raw_log":
        formats.write_marker(settings.raw_dir, kind, version)
    elif kind == "warehouse" and settings.warehouse_path.exists():
        con = duckdb.connect(str(settings.warehouse_path))
        try:
            con.execute("create table if not exists raw.sluice_meta "
                        "(key varchar primary key, value varchar not null)")
            set_format_version(con, version)
        finally:
            con.close()
    elif kind == "config" and not _embedded(settings):
        _set_config_version(settings.config, version)


def _embedded(settings: Settings) -> bool:
    """The default config ships with the code, so it is always in the code's format."""
    return settings.config == DEFAULT_CONFIG.resolve()


def _set_config_version(path: Path, version: int) -> None:
    text = path.read_text()
    line = f"format_version: {version}"
    updated, found = re.subn(r"(?m)^format_version:.*$", line, text)
    # a new file renamed over the old: a kill half-way leaves the old config, never a cut one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.upgrading")
    tmp.write_text(updated if found else f"{line}\n{text}")
    shutil.copymode(path, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def plan(settings: Settings, migrations: Iterable[Migration] = MIGRATIONS,
         current: Mapping[str, int] | None = None) -> list[Migration]:
    """The migrations still to run, in order; refuses data newer than the code."""
    current = current or formats.CURRENT
    known = {(m.kind, m.to_version): m for m in migrations}
    steps = []
    for kind in KINDS:
        version = stored_version(settings, kind)
        if version > current[kind]:
            raise formats.FormatTooNewError(
                f"{kind} format version {version} is newer than this Sluice reads "
                f"({current[kind]}): upgrade Sluice, or restore a backup made by this version")
        for target in range(version + 1, current[kind] + 1):
            if (kind, target) not in known:
                raise UpgradeError(f"no migration of {kind} from version {target - 1} to "
                                   f"{target}: this Sluice cannot read that data; restore a "
                                   "backup or rebuild the warehouse from the raw log")
            steps.append(known[(kind, target)])
    return steps


def upgrade(settings: Settings, say: Say = print, migrations: Iterable[Migration] = MIGRATIONS,
            current: Mapping[str, int] | None = None) -> list[Migration]:
    """Runs what `plan` lists, holding the warehouse lock (flows queue meanwhile)."""
    with warehouse_lock(settings.warehouse_path, say=say):
        steps = plan(settings, migrations, current)
        if not steps:
            say("nothing to upgrade: " + ", ".join(
                f"{kind} {stored_version(settings, kind)}" for kind in KINDS))
        for number, step in enumerate(steps, 1):
            say(f"upgrade {number}/{len(steps)}: {step.kind} {step.to_version - 1} -> "
                f"{step.to_version}: {step.name}")
            step.apply(settings, say)
            record_version(settings, step.kind, step.to_version)
        if steps:
            say(f"upgrade done: {len(steps)} migration(s) ran")
    return steps
