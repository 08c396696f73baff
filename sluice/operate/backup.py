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

Serving keeps answering and appending to the raw log during a backup: lines appended after
the copy was read are simply not in it. A restore goes into a fresh home and rewrites the
absolute paths the warehouse manifest and the MLflow store hold, so ingest recognises every
file it already loaded and models load from the restored artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from sluice.intake import eventlog
from sluice.settings import DEFAULT_CONFIG, Settings
from sluice.warehouse.db import checkpoint
from sluice.warehouse.locks import warehouse_lock

Say = Callable[[str], None]
MANIFEST = "backup.json"
BACKUP_FORMAT = 1
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says what to do."""


def _tracking_db(settings: Settings) -> Path:
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        raise BackupError(f"MLflow store {uri} is not a SQLite file: back it up with its own "
                          "tools (e.g. pg_dump), then run `sluice backup` with a SQLite store")
    return Path(uri.removeprefix("sqlite:///")).resolve()


def _local(settings: Settings) -> Path:
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
    artifacts = _local(settings)
    dest = Path(dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: give a new folder for the backup")
    where = sources(settings)
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
    _sqlite_copy(Path(where["mlflow_db"]), partial / "mlflow" / "mlflow.db")
    _copy_tree(artifacts, partial / "mlflow" / "artifacts")
    info["finished_at"] = datetime.now(UTC).isoformat()
    (partial / MANIFEST).write_text(json.dumps(info, indent=2))
    if dest.exists():
        dest.rmdir()
    os.replace(partial, dest)
    say(f"backup done: {dest}")
    return info


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


def _sqlite_copy(src: Path, dst: Path) -> None:
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


def restore(settings: Settings, src: Path, say: Say = print) -> dict[str, Any]:
    artifacts = _local(settings)
    src = Path(src).resolve()
    info = read_manifest(src)
    here = sources(settings)
    _refuse_occupied(settings, Path(here["mlflow_db"]))
    say("restore 1/4: warehouse and raw log")
    if (src / "warehouse.duckdb").exists():
        settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "warehouse.duckdb", settings.warehouse_path)
        _rewrite_warehouse(settings.warehouse_path, info["sources"], here)
    _merge_tree(src / "raw", settings.raw_dir)
    say("restore 2/4: landing folder, trackers, named filters")
    _merge_tree(src / "landing", settings.landing_dir)
    _merge_tree(src / "home", settings.home)
    say("restore 3/4: config")
    _restore_config(settings, src / "config" / "sluice.yaml", say)
    say("restore 4/4: MLflow store and artifacts")
    _sqlite_copy(src / "mlflow" / "mlflow.db", Path(here["mlflow_db"]))
    _merge_tree(src / "mlflow" / "artifacts", artifacts)
    _rewrite_sqlite(Path(here["mlflow_db"]), info["sources"]["artifacts"], here["artifacts"])
    say(f"restore done: {settings.home} holds the backup of {info['finished_at']}")
    return info


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        info = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} is not a finished Sluice backup ({exc})") from None
    if info.get("format", 0) > BACKUP_FORMAT:
        raise BackupError(f"backup {src} has format {info['format']}, this Sluice reads up to "
                          f"{BACKUP_FORMAT}: restore it with a newer Sluice")
    return info


def _refuse_occupied(settings: Settings, mlflow_db: Path) -> None:
    taken: list[Path | str] = [p for p in (settings.warehouse_path, mlflow_db) if p.exists()]
    taken += eventlog.segments(settings.raw_dir)
    if taken:
        raise BackupError(f"restore goes into a fresh SLUICE_HOME, but {taken[0]} exists: "
                          "point SLUICE_HOME and MLFLOW_TRACKING_URI at empty places")


def _merge_tree(src: Path, dst: Path) -> None:
    if src.exists():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)


def _restore_config(settings: Settings, saved: Path, say: Say) -> None:
    target = settings.config
    if target == DEFAULT_CONFIG.resolve():  # never overwrite the embedded default
        target = settings.home / "sluice.yaml"
        say(f"config restored to {target}: set SLUICE_CONFIG={target}")
    if target.exists() and target.read_bytes() != saved.read_bytes():
        kept = target.with_name(target.name + ".before-restore")
        os.replace(target, kept)
        say(f"the config that was at {target} is kept as {kept}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(saved, target)


def _rewrite_warehouse(warehouse: Path, old: dict[str, str], new: dict[str, str]) -> None:
    """Manifest paths name the restored files, so ingest skips what it already loaded."""
    columns = [("manifest", "path"), ("events", "source_file"), ("quarantine", "source_file")]
    con = duckdb.connect(str(warehouse))
    try:
        for part in ("raw", "landing"):
            before, after = old[part].rstrip("/") + "/", new[part].rstrip("/") + "/"
            for table, column in columns:
                con.execute(f"update raw.{table} set {column} = replace({column}, ?, ?) "
                            f"where starts_with({column}, ?)", [before, after, before])
        con.execute("checkpoint")
    finally:
        con.close()


def _rewrite_sqlite(db: Path, old: str, new: str) -> None:
    """Artifact locations in every text column of the MLflow store point at the new root."""
    if not db.exists() or old == new:
        return
    pairs = [(old.rstrip("/") + "/", new.rstrip("/") + "/")]
    pairs.append((Path(old).as_uri() + "/", Path(new).as_uri() + "/"))
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")]
        for table in tables:
            for column in con.execute(f'pragma table_info("{table}")').fetchall():
                if not any(t in (column[2] or "").upper() for t in ("CHAR", "TEXT", "CLOB")):
                    continue
                for before, after in pairs:
                    con.execute(f'update "{table}" set "{column[1]}" = replace("{column[1]}", '
                                f'?, ?) where instr("{column[1]}", ?) > 0',
                                (before, after, before))
        con.commit()
    finally:
        con.close()
