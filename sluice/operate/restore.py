"""`sluice restore SRC`: a backup (sluice/operate/backup.py) into a fresh home.

Nothing is written before every file of the backup matches the size and SHA-256 that
`backup.json` lists: a truncated or damaged backup is refused naming the file. Then
`$SLUICE_HOME/RESTORING.json` is written first and removed last: while it is there, serving
and every command but `restore` and `doctor` refuse the home (`sluice.formats.check_home`),
so a restore that is killed half-way never leaves a home that looks whole. Running the same
restore again resumes it: every part is copied again over what the stopped run wrote. The
warehouse and the MLflow store are each written under a temporary name and renamed into place.

The absolute paths that the warehouse manifest and the MLflow store hold are rewritten to the
new home, so ingest recognises every file it already loaded and models load from the restored
artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import duckdb

from sluice import formats
from sluice.intake import eventlog
from sluice.operate.backup import (
    BackupError,
    Say,
    file_digest,
    local_artifacts,
    read_manifest,
    sources,
    sqlite_copy,
    write_synced,
)
from sluice.settings import DEFAULT_CONFIG, Settings
from sluice.warehouse.db import connect, set_aside_wal


def restore(settings: Settings, src: Path, say: Say = print) -> dict[str, Any]:
    artifacts = local_artifacts(settings)
    src = Path(src).resolve()
    info = read_manifest(src)
    here = sources(settings)
    mlflow_db = Path(here["mlflow_db"])
    resuming = _resuming(settings, src, info)
    if not resuming:
        _refuse_occupied(settings, mlflow_db, artifacts)
    verify(src, info, say)
    _refuse_newer(src)
    _begin(settings, src, info, resuming, say)
    say("restore 1/4: warehouse and raw log")
    if (src / "warehouse.duckdb").exists():
        _restore_warehouse(settings.warehouse_path, src / "warehouse.duckdb", info, here, say)
    _merge_tree(src / "raw", settings.raw_dir)
    say("restore 2/4: landing folder, trackers, named filters")
    _merge_tree(src / "landing", settings.landing_dir)
    _merge_tree(src / "home", settings.home)
    say("restore 3/4: config")
    _restore_config(settings, src / "config" / "sluice.yaml", say)
    say("restore 4/4: MLflow store and artifacts")
    _merge_tree(src / "mlflow" / "artifacts", artifacts)
    if (src / "mlflow" / "mlflow.db").exists():
        staged = mlflow_db.with_name(mlflow_db.name + ".restoring")
        sqlite_copy(src / "mlflow" / "mlflow.db", staged)
        _rewrite_sqlite(staged, info["sources"]["artifacts"], here["artifacts"])
        os.replace(staged, mlflow_db)
    eventlog.fsync_dir(mlflow_db.parent)
    (settings.home / formats.RESTORING).unlink()
    eventlog.fsync_dir(settings.home)
    say(f"restore done: {settings.home} holds the backup of {info['finished_at']}")
    return info


def verify(src: Path, info: dict[str, Any], say: Say) -> None:
    """Every file `backup.json` lists is there with its size and SHA-256, else BackupError
    naming it; before anything is written."""
    files = info.get("files")
    if files is None:
        say(f"restore: {src} was made by an older Sluice, without checksums: not verified")
        return
    say(f"restore 0/4: checking the backup's {len(files)} files against {src.name}/backup.json")
    for name, (size, digest) in files.items():
        path = src / name
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != size:
            problem = f"is {path.stat().st_size:,} bytes, the backup wrote {size:,}"
        elif file_digest(path) != digest:
            problem = "does not match its checksum (damaged)"
        else:
            continue
        raise BackupError(f"backup {src} is damaged: {name} {problem}; nothing was restored: "
                          "restore another backup, or copy this one again from where it is kept")


def _refuse_newer(src: Path) -> None:
    """A backup a newer Sluice made, of data this one cannot read, is refused before anything
    is written (restored, it would be refused by every command that opens it)."""
    formats.check_marker(src / "raw", "raw_log")
    if (src / "warehouse.duckdb").exists():
        connect(src / "warehouse.duckdb", read_only=True).close()


def _resuming(settings: Settings, src: Path, info: dict[str, Any]) -> bool:
    """True when an earlier run of this same restore was stopped; another backup is refused."""
    try:
        started = json.loads((settings.home / formats.RESTORING).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        started = {}
    if started.get("finished_at") != info.get("finished_at"):
        raise BackupError(
            f"a restore of {started.get('backup', 'another backup')} into {settings.home} did "
            "not finish: run that restore again, or empty the home to restore another backup")
    return True


def _begin(settings: Settings, src: Path, info: dict[str, Any], resuming: bool,
           say: Say) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    if resuming:
        say(f"restore: resuming the restore of {src} that was stopped before it finished")
    marker = {"backup": str(src), "finished_at": info.get("finished_at")}
    write_synced(settings.home / formats.RESTORING, json.dumps(marker).encode())
    eventlog.fsync_dir(settings.home)


def _refuse_occupied(settings: Settings, mlflow_db: Path, artifacts: Path) -> None:
    """The home must hold none of what a backup brings back: a restore never mixes homes."""
    taken: list[Path | str] = [p for p in (settings.warehouse_path, mlflow_db) if p.exists()]
    taken += eventlog.segments(settings.raw_dir)
    taken += sorted(settings.home.glob("*.json"))
    for folder in (settings.landing_dir, artifacts):
        taken += [next(p for p in folder.rglob("*") if p.is_file())] if _has_files(folder) else []
    if taken:
        raise BackupError(f"restore goes into a fresh SLUICE_HOME, but {taken[0]} exists: "
                          "point SLUICE_HOME and MLFLOW_TRACKING_URI at empty places")


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _restore_warehouse(target: Path, saved: Path, info: dict[str, Any], here: dict[str, str],
                       say: Say) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(target.name + ".restoring")
    Path(f"{staged}.wal").unlink(missing_ok=True)
    shutil.copy2(saved, staged)
    _rewrite_warehouse(staged, info["sources"], here)
    set_aside_wal(target, say)
    os.replace(staged, target)


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
