"""The native intake: whole-request validation, limits, metrics (in process); kill -9 (real)."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import orjson

from cli.processes import free_port, start_server, wait_ready
from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import WRITE
from tests.utils.factories import environment, interaction
from tests.utils.waits import nothing_logged, wait_until


def post(http: httpx.Client, content, headers: dict | None = None) -> httpx.Response:
    headers = {**WRITE, **(headers or {})}
    if isinstance(content, bytes | str):
        return http.post("/v1/events", content=content, headers=headers)
    return http.post("/v1/events", json=content, headers=headers)


def test_one_event_an_array_and_json_lines(server):
    one = interaction("u1", "i1")
    assert post(server["http"], one).json() == {"accepted": 1}
    assert post(server["http"], [interaction("u1", "i2"), interaction("u1", "i3")]).json() == {
        "accepted": 2}

    lines = b"\n".join(orjson.dumps(interaction("u2", f"i{n}")) for n in range(3)) + b"\n"
    r = post(server["http"], lines, headers={"content-type": "application/x-ndjson"})
    assert r.json() == {"accepted": 3}
    metadata = {"event": "metadata", "id": "m1", "item": "i9", "timestamp": "2026-01-01T00:00:00Z",
                "fields": [{"name": "color", "value": "red"}]}
    assert post(server["http"], metadata).status_code == 200


def test_one_bad_event_rejects_the_request_with_index_field_and_reason(server):
    good = interaction("u1", "i1")
    bad_time = {**interaction("u1", "i2"), "timestamp": 10**17}  # microseconds: after 3000
    bad_field = {**interaction("u1", "i3"), "fields": [{"name": "x", "value": {"nested": 1}}]}
    r = post(server["http"], [good, bad_time, bad_field])
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [(d["index"], d["field"]) for d in detail] == [(1, "timestamp"), (2, "fields.x")]
    assert all(d["reason"] for d in detail)
    ranking_only = {"event": "ranking", "id": "r", "timestamp": 1767225600000, "user": "u",
                    "items": []}
    assert post(server["http"], ranking_only).json()["detail"][0]["field"] == "items"


def test_nothing_of_a_rejected_request_is_written(server):
    with nothing_logged(server["http"], server["home"]):
        assert post(server["http"], [interaction("u", "ok"), {"event": "nope"}]).status_code \
            == 422
        assert post(server["http"], b"{not json").status_code == 422
        assert post(server["http"], b"").status_code == 422


def test_limits_are_enforced(server):
    too_many = [interaction("u", "i")] * 10_001
    r = post(server["http"], too_many)
    assert r.status_code == 413
    assert "10000" in r.json()["detail"][0]["reason"]
    huge = b"x" * (16 * 1024 * 1024 + 1)
    assert post(server["http"], huge).status_code == 413


def test_metrics_count_events_and_time_requests(server):
    post(server["http"], [interaction("m", "i1")])
    post(server["http"], [{"event": "interaction"}])
    text = server["http"].get("/metrics").text
    assert 'sluice_events_total{event_type="interaction",outcome="accepted",reason=""' in text
    assert 'outcome="rejected"' in text
    assert 'sluice_request_seconds_bucket{le="0.005",method="POST",route="/v1/events"' in text


def test_kill_9_loses_no_acknowledged_event_and_retries_store_once(tmp_path):
    env = environment(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(port, env={**os.environ, **env})
    wait_ready(base, process)
    acked: set[str] = set()
    sent: list[list[dict]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=5, headers=WRITE) as http:
            while not stop.is_set():
                batch = [interaction(f"w{worker}", f"i{k}", id=f"w{worker}-{n}-{k}")
                         for k in range(20)]
                n += 1
                with lock:
                    sent.append(batch)
                try:
                    if http.post(f"{base}/v1/events", json=batch).status_code == 200:
                        with lock:
                            acked.update(e["id"] for e in batch)
                except httpx.TransportError:
                    return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked), "200 acknowledged events before the kill",
               until=lambda n: n >= 200)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 200, "the load did not get going before the kill"

    # clients retry everything they sent (acknowledged or not) to a restarted server
    process = start_server(port, env={**os.environ, **env})
    try:
        wait_ready(base, process)
        for batch in sent:
            assert httpx.post(f"{base}/v1/events", json=batch, timeout=10,
                              headers=WRITE).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)

    report = Ingestor(tmp_path / "warehouse.duckdb", tmp_path / "raw", tmp_path / "landing").run()
    all_ids = {e["id"] for batch in sent for e in batch}
    con = connect(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        stored = con.execute("select event_id, count(*) from raw.events "
                             "where event_type = 'interaction' group by 1").fetchall()
    finally:
        con.close()
    counts = dict(stored)
    assert acked <= set(counts), "an acknowledged event is missing after kill -9"
    assert set(counts) == all_ids
    assert set(counts.values()) == {1}
    assert report.duplicates_skipped >= len(acked)
