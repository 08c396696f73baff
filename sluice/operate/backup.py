"""`sluice backup DEST` and `sluice restore SRC`: a consistent copy of a Sluice home.

What a backup holds (DEST/backup.json says where each part came from):

- `warehouse.duckdb`: checkpointed and copied while holding the warehouse lock, so no ingest,
  transform or train writes into it meanwhile (they queue, then go on);
- `raw/`: every raw log segment up to its last complete line, read under the same lock, so
  each offset recorded in the warehouse manifest is inside the copy;
- `landing/`: the landing folder (the archive of every bulk file loaded);
- `home/`: trackers and named filters created at run time (`$SLUICE_HOME/*.json`);
- `config/sluice.yaml`: the config in use;
- `mlflow/mlflow.db` (SQLite online backup API, safe while serving reads it) and
  `mlflow/artifacts/` (copied after the database, so every version it lists has its files).

`backup.json` (format 2) lists every file of the backup with its size and SHA-256, each
file flushed to disk first; the folder gets its name only when all of it is written, so a
backup killed half-way leaves `DEST.partial` (cleared by the next run), never a `DEST` that
looks finished. `sluice restore` checks every file against the list before it writes anything
(sluice/operate/restore.py).

Serving keeps answering and appending to the raw log during a backup: lines appended after
the copy was read are simply not in it, and a line being written is left out whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.errors import OperatorError
from sluice.intake import eventlog
from sluice.settings import Settings
from sluice.warehouse.db import checkpoint
from sluice.warehouse.locks import warehouse_lock

Say = Callable[[str], None]
MANIFEST = "backup.json"
BACKUP_FORMAT = 2  # 2: `files`, each file's size and SHA-256
CHUNK = 1 << 20


class BackupError(OperatorError):
    """The backup or restore cannot go on; the message says what to do."""


def _tracking_db(settings: Settings) -> Path:
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        raise BackupError(f"MLflow store {uri} is not a SQLite file: back it up with its own "
                          "tools (e.g. pg_dump), then run `sluice backup` with a SQLite store")
    return Path(uri.removeprefix("sqlite:///")).resolve()


def local_artifacts(settings: Settings) -> Path:
    """The artifact folder, once every part is known to be local."""
    artifacts = settings.artifact_root
    if settings.raw_url or settings.landing_url or not isinstance(artifacts, Path):
        raise BackupError("SLUICE_RAW_URL / SLUICE_LANDING_URL / SLUICE_MLFLOW_ARTIFACTS point "
                          "at an object store: snapshot the bucket with its own versioning "
                          "instead")
    return artifacts


def sources(settings: Settings) -> dict[str, str]:
    """The absolute places a home's parts live in."""
    return {"home": str(settings.home), "warehouse": str(settings.warehouse_path),
            "raw": str(settings.raw_dir), "landing": str(settings.landing_dir),
            "config": str(settings.config), "mlflow_db": str(_tracking_db(settings)),
            "artifacts": str(settings.artifact_root)}


def backup(settings: Settings, dest: Path, say: Say = print) -> dict[str, Any]:
    artifacts = local_artifacts(settings)
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: give a new folder for the backup")
    where = sources(settings)
    _refuse_inside(dest, where)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    info: dict[str, Any] = {"format": BACKUP_FORMAT, "sources": where,
                            "started_at": datetime.now(UTC).isoformat()}
    with warehouse_lock(settings.warehouse_path, say=say):
        say("backup 1/4: warehouse, checkpointed under the warehouse lock")
        if settings.warehouse_path.exists():
            checkpoint(settings.warehouse_path)
            shutil.copy2(settings.warehouse_path, partial / "warehouse.duckdb")
        say("backup 2/4: raw log, each segment up to its last complete line")
        info["raw_log_offsets"] = _copy_log(settings.raw_dir, partial / "raw")
    say("backup 3/4: landing folder, trackers, named filters, config")
    _copy_tree(settings.landing_dir, partial / "landing")
    (partial / "home").mkdir()
    for store in sorted(settings.home.glob("*.json")):
        shutil.copy2(store, partial / "home" / store.name)
    (partial / "config").mkdir()
    shutil.copy2(settings.config, partial / "config" / "sluice.yaml")
    say("backup 4/4: MLflow store (SQLite online backup) and artifacts")
    sqlite_copy(Path(where["mlflow_db"]), partial / "mlflow" / "mlflow.db")
    _copy_tree(artifacts, partial / "mlflow" / "artifacts")
    info["files"] = digests(partial)
    info["finished_at"] = datetime.now(UTC).isoformat()
    write_synced(partial / MANIFEST, json.dumps(info, indent=2).encode())
    eventlog.fsync_dir(partial)
    if dest.exists():
        dest.rmdir()
    os.replace(partial, dest)
    eventlog.fsync_dir(dest.parent)
    say(f"backup done: {dest}")
    return info


def _refuse_inside(dest: Path, where: dict[str, str]) -> None:
    """A backup inside a folder it copies would copy itself (and the home would carry it)."""
    for part in ("raw", "landing", "artifacts"):
        folder = Path(where[part]).resolve()
        if dest == folder or folder in dest.parents:
            raise BackupError(f"{dest} is inside the {part} folder {folder}, which the backup "
                              "copies: give a folder outside the home's data")


def digests(folder: Path) -> dict[str, list[Any]]:
    """Every file under `folder` (but the manifest): relative path -> [size, sha256], each
    flushed to disk on the way."""
    found: dict[str, list[Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        name = path.relative_to(folder).as_posix()
        if name != MANIFEST:
            found[name] = [path.stat().st_size, file_digest(path, sync=True)]
    return found


def file_digest(path: Path, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        if sync:
            os.fsync(handle.fileno())
    return digest.hexdigest()


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_log(raw: Path, dst: Path) -> dict[str, int]:
    """Segments up to their last complete line (a line being written is left out)."""
    dst.mkdir(parents=True)
    offsets = {}
    for segment in map(Path, eventlog.segments(raw)):  # a local folder: Paths already
        offsets[segment.name] = _copy_complete_lines(segment, dst / segment.name)
    for other in sorted(p for p in raw.glob("*") if p.is_file() and p.name not in offsets):
        shutil.copy2(other, dst / other.name)  # e.g. the FORMAT marker
    return offsets


def _copy_complete_lines(src: Path, dst: Path) -> int:
    size = src.stat().st_size
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        copied = 0
        while copied < size:
            chunk = reader.read(min(CHUNK, size - copied))
            if not chunk:
                break
            writer.write(chunk)
            copied += len(chunk)
    end = _last_line_end(dst)
    os.truncate(dst, end)
    return end


def _last_line_end(path: Path) -> int:
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        while position > 0:
            start = max(0, position - CHUNK)
            handle.seek(start)
            found = handle.read(position - start).rfind(b"\n")
            if found >= 0:
                return start + found + 1
            position = start
    return 0


def _copy_tree(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copytree(src, dst, symlinks=True)
    else:
        dst.mkdir(parents=True)


def sqlite_copy(src: Path, dst: Path) -> None:
    """SQLite's online backup: a consistent copy while other processes read and write."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        return
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        info = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} is not a finished Sluice backup ({exc}): give the folder "
                          "`sluice backup` wrote") from None
    if not isinstance(info, dict) or not isinstance(info.get("sources"), dict):
        raise BackupError(f"{src / MANIFEST} is not a Sluice backup manifest: give the folder "
                          "`sluice backup` wrote")
    if info.get("format", 0) > BACKUP_FORMAT:
        raise BackupError(f"backup {src} has format {info['format']}, this Sluice reads up to "
                          f"{BACKUP_FORMAT}: restore it with a newer Sluice")
    return info
