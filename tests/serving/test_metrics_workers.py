"""/metrics adds up every worker of `sluice serve --workers 2` (a real server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from cli.processes import free_port, stop_server, wait_ready
from sluice.settings import PROJECT_ROOT
from tests.utils.auth import READ, WRITE
from tests.utils.factories import environment, interaction
from tests.utils.waits import wait_until

SENT = 24


@contextmanager
def two_workers(env_vars: dict[str, str]) -> Iterator[str]:
    """`sluice serve --workers 2` on a free port with this environment: its base URL."""
    port = free_port()
    env = {**os.environ, **env_vars, "SLUICE_PORT": str(port),
           "PYTHONPATH": str(PROJECT_ROOT), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, timeout=90)
        yield base
    finally:
        stop_server(server)


def _accepted(text: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^sluice_events_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', text, re.MULTILINE))


def _answers(text: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^sluice_request_seconds_count\{[^}]*route="/v1/recommendations"[^}]*\} (\S+)$', text,
        re.MULTILINE))


def _slots(text: str) -> float:
    return sum(float(v) for v in re.findall(
        r'^sluice_recommendation_slots_total\{[^}]*\} (\S+)$', text, re.MULTILINE))


def test_metrics_count_every_workers_requests(tmp_path):
    from sluice.intake.eventlog import EventLog
    from sluice.intake.events import parse_event

    # an item in the catalog before the server starts: every answer has a slot to fill, so
    # the slot counter is asserted whichever worker had followed which event
    log = EventLog(tmp_path / "raw")
    log.append([parse_event({"event": "item", "id": "item-0", "item": "i0",
                             "timestamp": 1_750_000_000_000, "fields": []})])
    log.close()
    with two_workers(environment(tmp_path)) as base:
        served = 0
        for n in range(SENT):  # a new connection each: the workers share them out
            assert httpx.post(f"{base}/v1/events", json=[interaction(f"u{n}", "i1")],
                              headers=WRITE, timeout=10).status_code == 200
            answer = httpx.post(f"{base}/v1/recommendations", json={"user_id": f"u{n}"},
                                headers=READ, timeout=10)
            assert answer.status_code == 200
            served += len(answer.json()["items"])
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    assert [_accepted(text) for text in scrapes] == [SENT] * 6
    assert [_answers(text) for text in scrapes] == [SENT] * 6
    assert served >= SENT  # i0 at least, in every answer
    assert [_slots(text) for text in scrapes] == [served] * 6


def _shares(text: str) -> dict[str, float]:
    found = {}
    for labels, value in re.findall(r"^sluice_window_slot_share\{(.*)\} (\S+)$", text,
                                    re.MULTILINE):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if named["template"] == "personalized":
            found[named["tier"]] = float(value)
    return found


def test_the_window_tier_shares_are_the_whole_servers_with_two_workers(tmp_path):
    """Known users get personalized slots, strangers popular ones, spread over two workers:
    every scrape, whichever worker answers it, shows the shares of all the slots served (each
    worker publishes its window within PUBLISH_SECONDS; a per-worker share would differ)."""
    from tests.utils.models import register_champion, synthetic_bundle

    env_vars = environment(tmp_path, serving={"model_poll_seconds": 0.5})
    register_champion(synthetic_bundle(seed=1), env_vars["MLFLOW_TRACKING_URI"],
                      tmp_path / "artifacts")
    with two_workers(env_vars) as base:
        answers = [httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=10, json={
            "user_id": f"u{n}" if n % 3 else f"stranger{n}", "num_results": 5}).json()
            for n in range(SENT)]
        served = sum(a["total"] for a in answers)
        expected = {"personalized": sum(a["model_personalized_count"] for a in answers) / served,
                    "fallback": sum(a["model_fallback_count"] + a["fallback_count"]
                                    for a in answers) / served}
        assert 0 < expected["personalized"] < 1 and 0 < expected["fallback"] < 1
        # both workers publish within PUBLISH_SECONDS
        wait_until(lambda: _shares(httpx.get(f"{base}/metrics", timeout=10).text),
                   f"the window shares of all slots served, {expected}", timeout=60,
                   interval=0.5, until=lambda shares: shares == pytest.approx(expected))
        scrapes = [_shares(httpx.get(f"{base}/metrics", timeout=10).text) for _ in range(6)]
    assert scrapes == [pytest.approx(expected)] * 6
