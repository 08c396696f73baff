"""Serving follows `champion`: not ready without one, swaps without failed requests."""

from __future__ import annotations

import threading
import time

import httpx

from tests.utils.auth import READ
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server
from tests.utils.waits import wait_until


def test_not_ready_until_a_champion_then_swaps_without_failures(tmp_path):
    env = environment(tmp_path, serving={"model_poll_seconds": 0.5})
    uri = env["MLFLOW_TRACKING_URI"]
    with running_server(env) as base:
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 503
        assert "no models:/sluice-default@champion" in ready.text
        # without a model the answer still comes, from what the log knows (nothing yet)
        empty = httpx.post(f"{base}/v1/recommendations", json={"user_id": "u1"},
                           headers=READ).json()
        assert empty["total"] == 0 and empty["model_version"] is None

        first = register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
        wait_until(lambda: httpx.get(f"{base}/ready"), "the first champion to be picked up",
                   until=lambda r: r.status_code == 200)

        # one list per client thread: requests of different threads overlap, so only the order
        # within one thread (each request starts after the previous one answered) is meaningful
        per_thread: list[list[str]] = [[] for _ in range(4)]
        seen_versions: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def load(mine: list[str]) -> None:
            with httpx.Client(timeout=30, headers=READ) as http:
                while not stop.is_set():
                    r = http.post(f"{base}/v1/recommendations",
                                  json={"user_id": "u3", "num_results": 10})
                    if r.status_code != 200 or r.json()["model_personalized_count"] != 10:
                        failures.append(r.text[:200])
                    else:
                        mine.append(r.json()["model_version"])
                        seen_versions.append(mine[-1])

        threads = [threading.Thread(target=load, args=(mine,)) for mine in per_thread]
        for t in threads:
            t.start()
        # every client answered by the first champion before the second is registered
        wait_until(lambda: ([len(mine) for mine in per_thread], failures[-1:]),
                   "an answer on every client thread (answers, last failure)",
                   until=lambda seen: all(seen[0]))
        second = register_champion(synthetic_bundle(seed=2), uri, tmp_path / "artifacts")
        wait_until(lambda: seen_versions[-1:], f"answers from the new champion {second}",
                   until=lambda last: last == [second])
        time.sleep(0.5)  # the load goes on after the swap: no client goes back to the old one
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen_versions[0] == first and seen_versions[-1] == second
    # once a client has been answered by the new champion, it is never answered by the old one
    for mine in per_thread:
        if second in mine:
            assert first not in mine[mine.index(second):], mine
