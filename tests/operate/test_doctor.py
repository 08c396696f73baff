"""`sluice doctor`: a healthy home passes; each broken part is named with its fix, and the
command exits non-zero."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from http.server import HTTPServer
from pathlib import Path

import pytest

from cli.main import main
from cli.processes import free_port
from sluice import formats
from sluice.intake.eventlog import EventLog
from sluice.operate.doctor import LOCK_FILE, diagnose, render
from sluice.settings import PROJECT_ROOT, get_settings
from sluice.warehouse.ingest import Ingestor
from tests.utils.cli import sluice
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle


@pytest.fixture
def settings(tmp_path, monkeypatch):
    env = environment(tmp_path / "home")
    # ports of their own: another test run's server on the default 4200 is none of this home's
    ports = {"SLUICE_PORT": str(free_port()), "SLUICE_PREFECT_PORT": str(free_port())}
    for key, value in {**env, **ports}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = get_settings()
    EventLog(settings.raw_dir).append([interaction("u1", "i1")])
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    register_champion(synthetic_bundle(), env["MLFLOW_TRACKING_URI"], settings.artifact_root)
    return settings


def problems(settings, **kwargs) -> dict[str, str]:
    return {f.check: f"{f.problem} | {f.fix}" for f in diagnose(settings, min_free=0, **kwargs)
            if not f.ok}


def test_a_healthy_home_has_no_problems(settings):
    findings = diagnose(settings, min_free=0)
    assert [f.check for f in findings if not f.ok] == []
    notes = {f.check: f.note for f in findings}
    assert notes["warehouse"] == "1 raw events" and notes["mlflow"] == "1 registered model(s)"
    assert render(findings).endswith("no problems found")


def test_the_prefect_port_held_by_a_prefect_server_is_sluice_up_and_no_problem(settings):
    from tests.cli.test_prefect_home import Health

    server = HTTPServer(("127.0.0.1", settings.prefect_port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        found = {f.check: f for f in diagnose(settings, min_free=0)}
    finally:
        server.shutdown()
        server.server_close()
    assert found["ports"].ok, found["ports"].problem
    assert found["ports"].note == (f"{settings.port} free; the Prefect server of `sluice up` "
                                   f"answers on {settings.prefect_port} (flows run there)")


def test_the_prefect_port_held_by_anything_else_is_a_problem(settings):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.prefect_port))
        holder.listen()
        found = problems(settings)
    assert f"port {settings.prefect_port} (the Prefect server of `sluice up`)" in found["ports"]
    assert "SLUICE_PREFECT_PORT" in found["ports"]


def test_broken_parts_are_named_with_their_fix(settings, tmp_path, monkeypatch):
    settings.warehouse_path.write_bytes(b"not a duckdb file" * 100)
    db = settings.mlflow_tracking_uri.removeprefix("sqlite:///")
    with open(db, "r+b") as handle:
        handle.write(b"garbage" * 20)
    formats.write_marker(settings.raw_dir, "raw_log", 9)
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    with socket.socket() as holder:
        holder.bind((settings.host, settings.port))
        holder.listen()
        found = problems(settings)
    assert "sluice rebuild" in found["warehouse"]
    assert "cannot be read" in found["mlflow"] and "sluice restore" in found["mlflow"]
    assert "raw_log format version 9 is newer than this Sluice reads (1)" in found["formats"]
    assert "does not answer" in found["prefect"] and "sluice up" in found["prefect"]
    assert f"port {settings.port}" in found["ports"] and "SLUICE_PORT" in found["ports"]
    assert "GiB free" in {f.check: f.problem for f in diagnose(settings, min_free=1 << 60)
                          if not f.ok}["disk"]


def test_a_config_that_does_not_load_is_a_problem_naming_the_key(settings, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("sufficiency:\n  min_interaction: 5\n")
    found = problems(settings.model_copy(update={"config": config}))
    assert "sufficiency.min_interaction: unknown key (did you mean min_interactions?)" in (
        found["config"])
    assert f"edit {config}" in found["config"]


def test_packages_are_compared_with_the_lock_when_there_is_one(settings, tmp_path):
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert "packages" not in problems(settings, root=tmp_path)
    (tmp_path / LOCK_FILE).write_text(
        "# a lock\nduckdb==0.0.1 \\\n    --hash=sha256:00\nnot-installed-pkg==1.0\n")
    found = problems(settings, root=tmp_path)["packages"]
    assert "2 package(s) differ from requirements.lock" in found
    assert "duckdb" in found and "not-installed-pkg missing" in found
    assert found.endswith("| make install")


def test_the_command_exits_non_zero_on_a_problem(settings, capsys):
    settings.warehouse_path.write_bytes(b"broken" * 100)
    with pytest.raises(SystemExit) as exited:
        main(["doctor"])
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "PROBLEM  warehouse" in out and "fix: sluice rebuild" in out


def _immutable(path) -> bool:
    """`chattr +i` (root, a filesystem that has the flag): not even root writes there."""
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_a_read_only_raw_log_folder_and_warehouse_are_named_with_their_fix(settings):
    if not _immutable(settings.raw_dir):
        pytest.skip("chattr +i is not available here")
    try:
        found = problems(settings)
        assert found["folders"] == (
            f"{settings.raw_dir} is not writable (Operation not permitted) | chattr -i "
            f"{settings.raw_dir}  (it is immutable), or point SLUICE_HOME elsewhere")
    finally:
        subprocess.run(["chattr", "-i", str(settings.raw_dir)], check=True)
    assert "folders" not in problems(settings)
    if not _immutable(settings.warehouse_path):
        pytest.skip("chattr +i is not available for files here")
    try:
        found = problems(settings)
    finally:
        subprocess.run(["chattr", "-i", str(settings.warehouse_path)], check=True)
    assert found["folders"].startswith(f"{settings.warehouse_path} is not writable")


def test_a_lock_file_left_by_a_killed_run_is_no_problem(settings, tmp_path):
    """A run killed -9 while it held the warehouse lock leaves the lock file: flock died with
    the process, so doctor says so and the next ingest does not wait."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sluice.warehouse.locks import "
         "warehouse_lock\nwith warehouse_lock(sys.argv[1]):\n print('held', flush=True)\n"
         " time.sleep(600)", str(settings.warehouse_path)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        notes = {f.check: f.note for f in diagnose(settings, min_free=0)}
        assert notes["home"] == ("warehouse lock held by a running ingest, transform or train "
                                 "(other flows wait for it)")
    finally:
        holder.kill()
        holder.wait()
    env = {k: str(getattr(settings, a)) for k, a in (
        ("SLUICE_HOME", "home"), ("SLUICE_CONFIG", "config"),
        ("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"), ("SLUICE_PORT", "port"),
        ("SLUICE_PREFECT_PORT", "prefect_port"))}
    done = sluice(env, "doctor")
    assert Path(f"{settings.warehouse_path}.lock").exists()
    assert "ok       home: warehouse lock free (its file outlives the runs that held it: " \
           "nothing to remove)" in done.stdout
    EventLog(settings.raw_dir).append([interaction("u2", "i2")])
    report = Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    assert report.rows_loaded == 1


def test_an_unfinished_restore_and_a_wal_without_its_warehouse_are_problems(settings):
    (settings.home / formats.RESTORING).write_text('{"backup": "/backups/monday"}')
    found = problems(settings)["home"]
    assert "run `sluice restore /backups/monday` again (it resumes)" in found
    (settings.home / formats.RESTORING).unlink()
    settings.warehouse_path.rename(f"{settings.warehouse_path}.wal")
    found = problems(settings)["home"]
    assert found == (f"{settings.warehouse_path}.wal is left without warehouse.duckdb: it "
                     "would be replayed onto a new warehouse | sluice rebuild  (sets it aside, "
                     "then rebuilds the warehouse from the raw log and landing folder)")


def test_a_folder_on_a_read_only_mount_is_named_with_a_remount_fix(settings):
    """The artifact folder bind-mounted read-only (root, a mount namespace that allows it)."""
    folder = settings.artifact_root
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("bind mounts are not available here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        found = problems(settings)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert found["folders"] == (
        f"{folder} is not writable (Read-only file system) | remount the filesystem of "
        f"{folder} read-write, or point SLUICE_HOME at a writable place")
