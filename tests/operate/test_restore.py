"""`sluice restore` as an operator meets it, with the real command in its own process: a
damaged backup is refused naming the file before anything is written; a restore killed -9
half-way leaves a home that no command serves or loads, and running it again finishes it; a
home that is not empty is refused; a config that does not exist yet is brought back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import duckdb
import httpx
import pytest

from sluice import formats
from sluice.intake.eventlog import EventLog
from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.intake.trackers import Trackers
from sluice.operate.backup import BackupError, backup, file_digest
from sluice.operate.restore import restore
from sluice.settings import PROJECT_ROOT, Settings
from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import headers
from tests.utils.cli import SLUICE, cli_env, sluice
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server

pytestmark = pytest.mark.slow
TENANTS = ("default", "shop")
BIG = 200 << 20  # a landing file that takes the restore a while to copy (ignored by ingest)


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(home=Path(env["SLUICE_HOME"]), config=Path(env["SLUICE_CONFIG"]),
                    mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"])


def answers(base: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    out = {}
    for tenant in TENANTS:
        for user in ("u1", "u2", "u3", "nobody"):
            r = httpx.post(f"{base}/v1/recommendations", headers=headers("read", tenant),
                           json={"user_id": user, "num_results": 6, "tenant": tenant},
                           timeout=10)
            assert r.status_code == 200, r.text
            out[tenant, user] = [(s["item_id"], s["recommendation_source"])
                                 for s in r.json()["items"]]
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict[tuple[str, str], list[tuple[str, str]]], str]:
    """A home of two tenants (a champion each, raw log, landing files, a tracker), its
    answers, and its backup made by `sluice backup`."""
    root = tmp_path_factory.mktemp("restore")
    env = environment(root / "old")
    settings = settings_of(env)
    for seed, tenant in enumerate(TENANTS):
        register_champion(synthetic_bundle(seed=seed), env["MLFLOW_TRACKING_URI"],
                          settings.artifact_root, name=settings.registered_model_name(tenant))
    generate(settings.landing_dir, SyntheticSpec(users=30, items=20, events=400, files=2))
    with open(settings.landing_dir / "archive.dat", "wb") as big:
        big.truncate(BIG)
    log = EventLog(settings.raw_dir)
    log.append([interaction(f"u{n % 5}", f"i{n}", tenant=TENANTS[n % 2]) for n in range(60)])
    log.close()
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    tracker = Trackers(settings).create("shop")
    with running_server(env) as base:
        before = answers(base)
    done = sluice(env, "backup", str(root / "backup"))
    assert done.returncode == 0, done.stderr
    shutil.rmtree(root / "old")  # nothing may still point into it
    return root / "backup", before, tracker


def fresh(tmp_path: Path) -> dict[str, str]:
    env = environment(tmp_path / "new")
    Path(env["SLUICE_CONFIG"]).unlink()  # the restore brings it back
    return env


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    return lines[0]


def test_a_damaged_backup_is_refused_naming_the_file_before_anything_is_written(
        saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved[0], copy)
    landing = sorted((copy / "landing").glob("*.jsonl"))[0]
    size = landing.stat().st_size
    os.truncate(landing, size - 100)  # cut short, as by a copy that ran out of space
    env = fresh(tmp_path)
    line = one_line(sluice(env, "restore", str(copy)))
    assert line == (f"sluice restore: backup {copy} is damaged: landing/{landing.name} is "
                    f"{size - 100:,} bytes, the backup wrote {size:,}; nothing was restored: "
                    "restore another backup, or copy this one again from where it is kept")
    assert not (tmp_path / "new" / "raw").exists()
    assert not (tmp_path / "new" / "warehouse.duckdb").exists()

    shutil.copy2(saved[0] / landing.relative_to(copy), landing)
    with open(copy / "warehouse.duckdb", "r+b") as handle:  # same size, one byte flipped
        handle.seek(20_000)
        byte = handle.read(1)
        handle.seek(20_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BackupError, match="warehouse.duckdb does not match its checksum"):
        restore(settings_of(env), copy, say=lambda _: None)
    shutil.copy2(saved[0] / "warehouse.duckdb", copy / "warehouse.duckdb")
    next((copy / "raw").glob("segment-*")).unlink()
    with pytest.raises(BackupError, match=r"raw/segment-\S+ is missing"):
        restore(settings_of(env), copy, say=lambda _: None)
    assert not (tmp_path / "new" / formats.RESTORING).exists()


def test_a_restore_killed_half_way_is_served_by_nothing_and_finishes_when_run_again(
        saved, tmp_path):
    src, before, tracker = saved
    env = fresh(tmp_path)
    process = subprocess.Popen([*SLUICE, "restore", str(src)], cwd=PROJECT_ROOT,
                               env={**cli_env(env), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("restore 2/4"):  # warehouse and raw log are in place
                break
        else:
            pytest.fail(f"the restore ended early (exit {process.wait()})")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    home = tmp_path / "new"
    assert (home / formats.RESTORING).exists() and (home / "warehouse.duckdb").exists()
    assert not Path(env["SLUICE_CONFIG"]).exists()  # killed before the config came back

    told = (f"{home} is being restored, or a restore into it was stopped before it finished: "
            f"run `sluice restore {src}` again (it resumes), then retry")
    for command in (["serve"], ["ingest"], ["rebuild"], ["backup", str(tmp_path / "b")]):
        assert one_line(sluice(env, *command, timeout=120)) == f"sluice {command[0]}: {told}"
    other = tmp_path / "other-backup"
    shutil.copytree(src, other)
    manifest = json.loads((other / "backup.json").read_text())
    (other / "backup.json").write_text(json.dumps({**manifest, "finished_at": "another"}))
    assert "did not finish: run that restore again" in one_line(
        sluice(env, "restore", str(other)))

    done = sluice(env, "restore", str(src))
    assert done.returncode == 0, done.stderr
    assert "resuming the restore" in done.stdout and done.stdout.rstrip().endswith(
        f"holds the backup of {manifest['finished_at']}")
    assert not (home / formats.RESTORING).exists()
    again = Ingestor(home / "warehouse.duckdb", home / "raw", home / "landing").run()
    # only the answers served before the backup were not loaded yet: each once, nothing twice
    assert (again.rows_loaded, again.duplicates_skipped, again.rows_quarantined) == (
        len(before), 0, 0)
    assert Trackers(settings_of(env)).tenant(tracker) == "shop"
    with running_server(env) as base:
        assert answers(base) == before


def test_a_home_that_is_not_empty_is_refused_and_left_as_it_was(saved, tmp_path):
    env = environment(tmp_path / "new")
    settings = settings_of(env)
    mine = settings.landing_dir / "synthetic-seed7-part00.jsonl"  # a name the backup holds
    mine.parent.mkdir()
    mine.write_text('{"event": "item", "id": "mine", "timestamp": 1, "item": "x"}\n')
    with pytest.raises(BackupError, match=f"fresh SLUICE_HOME, but {mine} exists"):
        restore(settings, saved[0], say=lambda _: None)
    assert mine.read_text().startswith('{"event": "item", "id": "mine"')
    mine.unlink()
    Trackers(settings).create("other")
    with pytest.raises(BackupError, match="trackers.json exists"):
        restore(settings, saved[0], say=lambda _: None)
    assert not (settings.home / formats.RESTORING).exists()


def test_a_backup_inside_a_folder_it_copies_is_refused(saved, tmp_path):
    env = fresh(tmp_path)
    assert sluice(env, "restore", str(saved[0])).returncode == 0
    settings = settings_of(env)
    with pytest.raises(BackupError, match="inside the landing folder"):
        backup(settings, settings.landing_dir / "backups" / "b", say=lambda _: None)
    assert not (settings.landing_dir / "backups").exists()


def test_a_backup_of_a_newer_format_is_refused_before_anything_is_written(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved[0], copy)
    formats.write_marker(copy / "raw", "raw_log", 2)
    manifest = json.loads((copy / "backup.json").read_text())
    manifest["files"]["raw/FORMAT.json"] = [(copy / "raw" / formats.MARKER).stat().st_size,
                                            file_digest(copy / "raw" / formats.MARKER)]
    (copy / "backup.json").write_text(json.dumps(manifest))
    line = one_line(sluice(fresh(tmp_path), "restore", str(copy)))
    assert line == (f"sluice restore: {copy}/raw/FORMAT.json: raw_log format version 2 is newer "
                    "than this Sluice reads (1): upgrade Sluice, or restore a backup made by "
                    "this version")
    assert not (tmp_path / "new" / formats.RESTORING).exists()
    assert not (tmp_path / "new" / "raw").exists()


def test_a_backup_an_older_sluice_made_without_checksums_still_restores(saved, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved[0], copy)
    manifest = json.loads((copy / "backup.json").read_text())
    del manifest["files"]  # backup format 1: what the previous Sluice wrote
    (copy / "backup.json").write_text(json.dumps({**manifest, "format": 1}))
    env = fresh(tmp_path)
    done = sluice(env, "restore", str(copy))
    assert done.returncode == 0, done.stderr
    assert f"{copy} was made by an older Sluice, without checksums: not verified" in done.stdout
    assert not (tmp_path / "new" / formats.RESTORING).exists()


def test_a_v1_golden_home_upgrades_backs_up_and_restores_as_version_1(tmp_path):
    """The format-1 fixtures (tests/fixtures/formats/v1) as a home: `sluice upgrade` finds
    nothing to migrate, and a backup of it restored elsewhere keeps version 1 and loads
    nothing twice."""
    v1 = Path(__file__).parents[1] / "fixtures" / "formats" / "v1"
    old = tmp_path / "old"
    for part in ("raw", "landing"):
        shutil.copytree(v1 / part, old / part)
    sql = (v1 / "warehouse.sql").read_text().replace("$FIXTURE", str(old))
    with duckdb.connect(str(old / "warehouse.duckdb")) as con:
        con.execute(sql)
    env = environment(old)
    done = sluice(env, "upgrade")
    assert done.stdout.strip() == "nothing to upgrade: raw_log 1, warehouse 1, config 1"
    assert sluice(env, "backup", str(tmp_path / "backup")).returncode == 0
    new_env = fresh(tmp_path)
    assert sluice(new_env, "restore", str(tmp_path / "backup")).returncode == 0
    assert sluice(new_env, "upgrade").stdout.strip() == (
        "nothing to upgrade: raw_log 1, warehouse 1, config 1")
    new = tmp_path / "new"
    again = Ingestor(new / "warehouse.duckdb", new / "raw", new / "landing").run()
    assert {f.status for f in again.files} == {"unchanged"} and again.rows_loaded == 0
