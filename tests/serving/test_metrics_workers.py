"""/metrics adds up every worker of `sluice serve --workers 2` (a real server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from cli.processes import free_port, stop_server, wait_ready
from sluice.settings import PROJECT_ROOT
from tests.utils.auth import READ, WRITE
from tests.utils.factories import environment, interaction

SENT = 24


def _accepted(text: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^sluice_events_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', text, re.MULTILINE))


def _answers(text: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^sluice_request_seconds_count\{[^}]*route="/v1/recommendations"[^}]*\} (\S+)$', text,
        re.MULTILINE))


def test_metrics_count_every_workers_requests(tmp_path):
    port = free_port()
    env = {**os.environ, **environment(tmp_path), "SLUICE_PORT": str(port),
           "PYTHONPATH": str(PROJECT_ROOT), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, timeout=90)
        for n in range(SENT):  # a new connection each: the workers share them out
            assert httpx.post(f"{base}/v1/events", json=[interaction(f"u{n}", "i1")],
                              headers=WRITE, timeout=10).status_code == 200
            assert httpx.post(f"{base}/v1/recommendations", json={"user_id": f"u{n}"},
                              headers=READ, timeout=10).status_code == 200
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    finally:
        stop_server(server)
    assert [_accepted(text) for text in scrapes] == [SENT] * 6
    assert [_answers(text) for text in scrapes] == [SENT] * 6
    assert "sluice_recommendation_slots_total" in scrapes[0]
