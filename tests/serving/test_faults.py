"""Faults: a broken model store or artifacts at start-up, and a raw log that refuses writes.

(kill -9 under concurrent load is tests/serving/test_intake_server.py.)

The disk faults are injected in-process, honestly but not by the kernel: as root, chmod does
not stop writes and no small tmpfs can be mounted here, so `open` inside `sluice.intake.eventlog` is
replaced by one whose files fail like a full disk (a short write, then ENOSPC) or a read-only
one (EROFS). Everything above that (group commit, truncation of the torn tail, the 503, the
app) is the real code, driven through the real FastAPI app.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sluice.bundle import ARRAYS
from sluice.intake import eventlog
from sluice.intake.eventlog import segments
from sluice.serve.service import Service
from sluice.settings import get_settings
from tests.utils.auth import ADMIN, READ, WRITE
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server


def seed_log(home: Path) -> None:
    """A raw log with a few items and interactions: enough for the no-model tiers."""
    log = eventlog.EventLog(home / "raw")
    now = int(time.time() * 1000)
    log.append([{"event": "item", "id": f"item-{i}", "timestamp": now, "tenant": "default",
                 "item": f"c{i}", "fields": {"color": "red"}} for i in range(30)])
    log.append([{**interaction(f"fan{u}", "c1"), "tenant": "default"} for u in range(5)]
               + [{**interaction(f"fan{u}", "c2"), "tenant": "default"} for u in range(3)])
    log.close()


# --- the model store and artifacts -----------------------------------------------------------
def test_a_corrupt_model_store_serves_fallbacks_then_recovers(tmp_path):
    home = tmp_path / "home"
    env = environment(home, serving={"model_poll_seconds": 0.5})
    store = Path(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True)
    store.write_bytes(os.urandom(8192))  # not a database at all
    seed_log(home)
    good = tmp_path / "good" / "mlflow.db"  # a healthy store, swapped in later
    version = register_champion(synthetic_bundle(), f"sqlite:///{good}", tmp_path / "artifacts")
    with running_server(env) as base:
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 503
        reason = ready.json()["models"]["default"]["error"]
        assert "could not be loaded" in reason and "not a database" in reason
        answer = httpx.post(f"{base}/v1/recommendations", headers=READ,
                            json={"user_id": "newcomer", "num_results": 5}).json()
        sources = [s["recommendation_source"] for s in answer["items"]]
        assert sources[:2] == ["model_fallback"] * 2  # popular from the log: c1, then c2
        assert [s["item_id"] for s in answer["items"][:2]] == ["c1", "c2"]
        assert sources[2:] == ["fallback"] * 3  # random catalog items from the log
        os.replace(good, store)  # the store is repaired
        reloaded = httpx.post(f"{base}/admin/reload", headers=ADMIN).json()
        assert reloaded["ready"] is True and reloaded["models"]["default"]["version"] == version
        personal = httpx.post(f"{base}/v1/recommendations", headers=READ,
                              json={"user_id": "u3", "num_results": 5}).json()
        assert personal["model_personalized_count"] == 5
        assert httpx.get(f"{base}/ready").status_code == 200


def _service(home: Path, uri: str) -> Service:
    settings = get_settings(home=home, config=environment(home)["SLUICE_CONFIG"],
                            MLFLOW_TRACKING_URI=uri)
    service = Service(settings)
    service.start(background=False)
    return service


def test_corrupt_artifacts_keep_fallbacks_until_a_good_champion_appears(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    register_champion(synthetic_bundle(seed=1), uri, artifacts)
    broken = list(artifacts.rglob(ARRAYS))
    assert broken
    for path in broken:
        path.write_bytes(b"PK\x03\x04 torn" + os.urandom(64))
    seed_log(tmp_path)
    service = _service(tmp_path, uri)
    try:
        assert not service.ready
        assert "could not be loaded" in service.models["default"].error
        assert not list((tmp_path / "serving-models").rglob(ARRAYS))  # no bad copy kept
        answer = service.recommend(service.request(user_id="u1", num_results=3))
        assert {s.recommendation_source for s in answer.items} == {"model_fallback", "fallback"}
        second = register_champion(synthetic_bundle(seed=2), uri, artifacts)
        service.refresh_models()
        assert service.ready and service.models["default"].version == second
        assert service.models["default"].error is None
    finally:
        service.stop()


def test_missing_artifacts_and_an_unreachable_store_are_reported_not_raised(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    register_champion(synthetic_bundle(), uri, artifacts)
    shutil.rmtree(artifacts)
    service = _service(tmp_path, uri)
    try:
        assert not service.ready
        assert "could not be loaded" in service.models["default"].error
    finally:
        service.stop()
    (tmp_path / "not-a-folder").write_text("x")
    service = _service(tmp_path / "other", f"sqlite:///{tmp_path / 'not-a-folder' / 'm.db'}")
    try:
        assert not service.ready and service.models["default"].error
        assert service.recommend(service.request(user_id="u")).items == []
    finally:
        service.stop()


# --- the raw log refusing writes -------------------------------------------------------------
class FaultyDisk:
    """What `open` in sluice.intake.eventlog returns: real files that fail as this disk says."""

    def __init__(self) -> None:
        self.free: int | None = None  # bytes left; None: plenty
        self.read_only = False
        self.refused = 0

    def open(self, path: Any, mode: str = "r", buffering: int = -1) -> Any:
        if not set(mode) & set("wax+"):  # reading (the log follower) still works
            return open(path, mode, buffering=buffering)
        if self.read_only:
            self.refused += 1
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return _FaultyFile(open(path, mode, buffering=buffering), self)


class _FaultyFile:
    def __init__(self, handle: Any, disk: FaultyDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data: Any) -> int:
        disk = self._disk
        if disk.read_only:
            disk.refused += 1
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if disk.free is None:
            return self._handle.write(data)
        if disk.free == 0:
            disk.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._handle.write(bytes(data[:disk.free]))  # a short write, as a full disk
        disk.free -= written
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@pytest.fixture
def faulty_app(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from serving.main import app

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    disk = FaultyDisk()
    monkeypatch.setattr(eventlog, "open", disk.open, raising=False)
    with TestClient(app) as client:
        yield {"client": client, "disk": disk, "home": tmp_path}


def stored(home: Path) -> list[dict]:
    lines = [line for path in segments(home / "raw") for line in path.read_bytes().splitlines()]
    return [orjson.loads(line) for line in lines]  # every line whole: a torn one would raise


def batch(tag: str, n: int = 5) -> list[dict]:
    return [interaction(f"user-{tag}", f"i{k}", id=f"{tag}-{k}") for k in range(n)]


@pytest.mark.parametrize("fault", ["disk full", "read-only"])
def test_a_refusing_log_answers_503_and_loses_nothing_acknowledged(faulty_app, fault):
    client, disk, home = faulty_app["client"], faulty_app["disk"], faulty_app["home"]

    def post(events) -> httpx.Response:
        return client.post("/v1/events", json=events, headers=WRITE)

    acknowledged: list[str] = []
    first = batch("before")
    assert post(first).status_code == 200
    acknowledged += [e["id"] for e in first]

    if fault == "disk full":
        disk.free = 300  # room for part of one batch: the write is cut short, then ENOSPC
    else:
        disk.read_only = True
    refused_batches = [batch(f"during{n}") for n in range(6)]
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda b=b: answers.append(post(b)))
               for b in refused_batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [503] * len(refused_batches)
    reason = answers[0].json()["detail"][0]["reason"]
    expected = "No space left on device" if fault == "disk full" else "Read-only file system"
    assert "events not stored, retry later" in reason and expected in reason
    assert answers[0].headers["retry-after"]
    pe = client.post("/personalize/events", headers=WRITE, json={
        "trackingId": "demo-tracking-id", "sessionId": "s",
        "eventList": [{"eventType": "click", "itemId": "x", "sentAt": time.time()}]})
    assert pe.status_code == 503
    assert pe.headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
    assert pe.headers["retry-after"] == answers[0].headers["retry-after"]
    assert disk.refused > 0
    ids = [e["id"] for e in stored(home)]
    assert not [i for i in ids if i.startswith("during")]  # nothing of a refused call

    disk.free, disk.read_only = None, False  # the disk recovers
    after = batch("after")
    assert post(after).status_code == 200
    acknowledged += [e["id"] for e in after]
    for b in refused_batches:  # clients retry what was refused
        assert post(b).status_code == 200
        acknowledged += [e["id"] for e in b]

    ids = [e["id"] for e in stored(home) if e["event"] == "interaction"]
    assert sorted(ids) == sorted(acknowledged)  # every acknowledged event, exactly once
