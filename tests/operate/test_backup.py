"""`backup` while a real server answers, then `restore` into a fresh home with the old one
gone: serving gives the same answers and ingest loads nothing twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest

from cli.main import main
from sluice.intake.eventlog import EventLog
from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.intake.trackers import Trackers
from sluice.operate.backup import BackupError, backup
from sluice.operate.restore import restore
from sluice.settings import PROJECT_ROOT, get_settings
from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import READ
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server

pytestmark = pytest.mark.slow
USERS = [f"u{n}" for n in range(1, 8)] + ["never-seen"]


def answers(base: str) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for user in USERS:
        r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=10,
                       json={"user_id": user, "num_results": 8})
        assert r.status_code == 200, r.text
        out[user] = [(s["item_id"], s["recommendation_source"]) for s in r.json()["items"]]
    return out


def settings_for(env: dict[str, str], monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return get_settings()


def ingest(settings):
    return Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()


def test_backup_while_serving_then_restore_into_a_fresh_home(tmp_path, monkeypatch):
    env = environment(tmp_path / "old")
    settings = settings_for(env, monkeypatch)
    register_champion(synthetic_bundle(seed=4), env["MLFLOW_TRACKING_URI"],
                      settings.artifact_root)
    generate(settings.landing_dir, SyntheticSpec(users=30, items=20, events=500, files=1))
    log = EventLog(settings.raw_dir)
    log.append([interaction(f"u{n % 8}", f"i{n}") for n in range(40)])
    log.close()
    assert ingest(settings).rows_loaded > 500
    tracker = Trackers(settings).create("shop")
    lines: list[str] = []
    with running_server(env) as base:
        before = answers(base)
        assert sum(src == "model_personalized" for a in before.values() for _, src in a) > 20
        info = backup(settings, tmp_path / "backup", say=lines.append)
        assert answers(base) == before  # serving went on through the backup
    assert [line.split(":")[0] for line in lines[:2]] == ["backup 1/4", "backup 2/4"]
    assert sum(info["raw_log_offsets"].values()) > 0
    (tmp_path / "old").rename(tmp_path / "gone")  # nothing may still point into it

    fresh = settings_for(environment(tmp_path / "new"), monkeypatch)
    restore(fresh, tmp_path / "backup", say=lines.append)
    again = ingest(fresh)
    assert again.duplicates_skipped == 0 and again.rows_quarantined == 0
    assert not [f for f in again.files if f.kind == "landing" and f.status != "unchanged"]
    assert Trackers(fresh).tenant(tracker) == "shop"
    with running_server(environment(tmp_path / "new")) as base:
        assert answers(base) == before


def test_restore_refuses_a_home_in_use_and_a_newer_backup(tmp_path, monkeypatch, capsys):
    settings = settings_for(environment(tmp_path / "home"), monkeypatch)
    EventLog(settings.raw_dir).append([interaction("u1", "i1")])
    assert main(["backup", str(tmp_path / "b")]) == 0
    assert "backup done" in capsys.readouterr().out
    with pytest.raises(BackupError, match="fresh SLUICE_HOME"):
        restore(settings, tmp_path / "b", say=lambda _: None)
    with pytest.raises(BackupError, match="not empty"):
        backup(settings, tmp_path / "b", say=lambda _: None)
    meta = tmp_path / "b" / "backup.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 99}))
    other = settings_for(environment(tmp_path / "other"), monkeypatch)
    with pytest.raises(BackupError, match="format 99, this Sluice reads up to 2"):
        restore(other, Path(tmp_path / "b"), say=lambda _: None)


def test_backup_refuses_artifacts_in_a_bucket(tmp_path, monkeypatch):
    from sluice.settings import Settings

    monkeypatch.setenv("SLUICE_MLFLOW_ARTIFACTS", "s3://bucket/mlflow")
    settings = Settings(home=tmp_path / "home",
                        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(BackupError, match="SLUICE_MLFLOW_ARTIFACTS"):
        backup(settings, tmp_path / "backup", say=lambda _: None)


WRITER = """
import sys
from sluice.intake.eventlog import EventLog
log = EventLog(sys.argv[1], segment_bytes=100_000)
n = 0
while True:
    log.append([{"event": "item", "id": f"w{n}", "timestamp": 1767225600000 + n,
                 "item": f"i{n}", "fields": [{"name": "pad", "value": "x" * (1000 + n % 3000)}]}])
    n += 1
    if n == 200:
        print("writing", flush=True)
"""


def test_a_backup_while_intake_appends_holds_each_event_whole_or_not_at_all(
        tmp_path, monkeypatch):
    """Another process appends to the raw log (rotating segments) through the whole backup:
    each segment in the backup is a prefix of the live one ending at a line's end, and the
    restored home loads a gap-free run of the writer's events, each once."""
    settings = settings_for(environment(tmp_path / "old"), monkeypatch)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.raw_dir)],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        info = backup(settings, tmp_path / "backup", say=lambda _: None)
    finally:
        writer.kill()
        writer.wait()
    copied = sorted((tmp_path / "backup" / "raw").glob("segment-*"))
    assert len(copied) >= 2 and set(info["raw_log_offsets"]) == {p.name for p in copied}
    for segment in copied:
        data = segment.read_bytes()
        assert data.endswith(b"\n") and len(data) == info["raw_log_offsets"][segment.name]
        assert (settings.raw_dir / segment.name).read_bytes()[:len(data)] == data
    lines = sum(p.read_bytes().count(b"\n") for p in copied)

    fresh = settings_for(environment(tmp_path / "new"), monkeypatch)
    restore(fresh, tmp_path / "backup", say=lambda _: None)
    loaded = ingest(fresh)
    assert (loaded.rows_loaded, loaded.duplicates_skipped, loaded.rows_quarantined) == (
        lines, 0, 0)
    with duckdb.connect(str(fresh.warehouse_path), read_only=True) as con:
        ids = {r[0] for r in con.execute("select event_id from raw.events").fetchall()}
    assert ids == {f"w{n}" for n in range(lines)}


def test_a_backup_killed_half_way_leaves_no_backup_and_runs_again(tmp_path, monkeypatch):
    from tests.utils.cli import SLUICE, cli_env, sluice

    env = environment(tmp_path / "home")
    settings = settings_for(env, monkeypatch)
    EventLog(settings.raw_dir).append([interaction("u1", "i1")])
    ingest(settings)
    settings.landing_dir.mkdir(exist_ok=True)
    with open(settings.landing_dir / "archive.dat", "wb") as big:
        big.truncate(200 << 20)  # takes the copy a while
    dest = tmp_path / "backup"
    process = subprocess.Popen([*SLUICE, "backup", str(dest)], cwd=PROJECT_ROOT,
                               env={**cli_env(env), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("backup 3/4"):
                break
    finally:
        process.kill()
        process.wait()
    assert not dest.exists() and dest.with_name("backup.partial").exists()
    refused = sluice(env, "restore", str(dest.with_name("backup.partial")))
    assert refused.returncode == 1 and "is not a finished Sluice backup" in refused.stderr
    done = sluice(env, "backup", str(dest))  # the lock died with the killed run
    assert done.returncode == 0, done.stderr
    assert not dest.with_name("backup.partial").exists()
    assert json.loads((dest / "backup.json").read_text())["files"]["landing/archive.dat"][0] == (
        200 << 20)
