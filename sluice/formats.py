"""Format versions of what Sluice keeps on disk, and the refusal of data newer than the code.

Each kept format carries a version: the raw log (a `FORMAT.json` marker in its folder), the
warehouse (`raw.sluice_meta`), a model bundle (`format_version` in its meta.json) and the
config (`format_version:` at its top). Data without a version predates versioning and is
version 1. A change to a format raises its number here, and either still reads the older
data (tests/test_formats.py reads the golden fixtures of every older version) or ships a
migration that `sluice upgrade` runs (sluice/operate/upgrade.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sluice.errors import OperatorError

# the version of each format this code writes, and the newest it reads
CURRENT: dict[str, int] = {"raw_log": 1, "warehouse": 1, "bundle": 2, "config": 1}
MARKER = "FORMAT.json"  # beside the raw log segments
RESTORING = "RESTORING.json"  # in SLUICE_HOME while `sluice restore` has not finished


class FormatTooNewError(OperatorError):
    """Data written by a newer Sluice than this one."""


class RestoreUnfinishedError(OperatorError):
    """A restore into this home started and did not finish: its data is incomplete."""


def check_home(home: Path) -> None:
    """Refuses a home that a `sluice restore` is filling, or that one left half-filled (killed):
    serving or loading it would treat part of a backup as the whole. Serving and every CLI
    command but `restore` and `doctor` call this first."""
    try:
        started = json.loads((Path(home) / RESTORING).read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        started = {}
    source = started.get("backup", "SRC")
    raise RestoreUnfinishedError(
        f"{home} is being restored, or a restore into it was stopped before it finished: "
        f"run `sluice restore {source}` again (it resumes), then retry")


def check(kind: str, found: int, where: object) -> int:
    """`found` if this code reads it; else FormatTooNewError naming both versions."""
    current = CURRENT[kind]
    if found > current:
        raise FormatTooNewError(
            f"{where}: {kind} format version {found} is newer than this Sluice reads "
            f"({current}): upgrade Sluice, or restore a backup made by this version")
    return found


def read_marker(folder: Path) -> int | None:
    """The version in `folder`/FORMAT.json, or None when there is no marker."""
    try:
        return int(json.loads((Path(folder) / MARKER).read_text())["version"])
    except FileNotFoundError:
        return None


def write_marker(folder: Path, kind: str, version: int) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"kind": kind, "version": version}) + "\n")
    os.replace(tmp, folder / MARKER)


def check_marker(folder: Path, kind: str) -> int:
    """The folder's format version (1 without a marker), refused when newer than the code."""
    found = read_marker(folder)
    return check(kind, 1 if found is None else found, Path(folder) / MARKER)


def ensure_marker(folder: Path, kind: str, fresh: bool) -> int:
    """Marks a `fresh` folder (no data yet) with the current version; checks any other.

    A folder that holds data but no marker keeps none: its data is version 1, and stamping
    it with a later version would hide that (`sluice upgrade` stamps after migrating)."""
    if fresh and read_marker(folder) is None:
        write_marker(folder, kind, CURRENT[kind])
    return check_marker(folder, kind)
