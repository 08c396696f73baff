"""Prefect under Sluice's roof: its home and database in SLUICE_HOME, and CLI flow runs sent
to a running `make up` server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from cli.processes import free_port, prefect_under
from sluice.settings import PROJECT_ROOT
from tests.utils.factories import environment


def test_a_cli_flow_keeps_prefects_database_in_sluice_home(tmp_path):
    env = {**os.environ, **environment(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "ingest"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((tmp_path / "prefect").glob("*.db")), list((tmp_path / "prefect").iterdir())


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 -- the http.server spelling
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args) -> None:
        pass


def test_flow_runs_go_to_a_running_make_up_server(tmp_path, monkeypatch):
    port = free_port()  # SLUICE_PREFECT_PORT's: the default 4200 may be another run's
    server = HTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    try:
        prefect_under(tmp_path, port)
        assert os.environ["PREFECT_API_URL"] == f"http://127.0.0.1:{port}/api"
        assert os.environ["PREFECT_HOME"] == str(tmp_path / "prefect")
    finally:
        server.shutdown()
        server.server_close()
        monkeypatch.delenv("PREFECT_API_URL", raising=False)  # set by prefect_under itself


def test_without_a_server_flow_runs_use_a_temporary_one(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "elsewhere"))  # an explicit one wins
    prefect_under(tmp_path, free_port())
    assert "PREFECT_API_URL" not in os.environ
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "elsewhere")


def test_a_flow_in_a_home_not_made_yet_runs_on_a_temporary_server_there(tmp_path):
    """A fresh SLUICE_HOME: Prefect's temporary server starts (its home made with parents,
    its database in it) and ingest, with nothing to load yet, runs without a traceback.
    (A command that needs earlier steps says so before Prefect starts: test_preconditions.)"""
    home = tmp_path / "new" / "home"
    env = {**os.environ, **environment(tmp_path / "config"), "PYTHONPATH": str(PROJECT_ROOT),
           "SLUICE_HOME": str(home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60"}
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "ingest"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (home / "prefect" / "prefect.db").exists()
