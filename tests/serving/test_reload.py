"""`POST /admin/reload` right after `sluice models promote` or `rollback`, on a real server with
two workers: the answer names the registry's champion as of the call, and so does every answer
afterwards, whichever worker gives it (the request reaches one worker; it used to leave the
others on the old champion until their next poll, `serving.model_poll_seconds`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from sluice.experiments import Arm, Experiment, Experiments
from sluice.learn import registry, versions
from sluice.reloads import FOLDER
from sluice.settings import PROJECT_ROOT
from tests.utils.auth import ADMIN, READ
from tests.utils.factories import environment
from tests.utils.models import two_versions
from tests.utils.server import running_server


def _versions_served(base: str, n: int = 120) -> dict[str, set[str]]:
    """Per worker (an answer id starts with its process's random prefix), the model versions
    its answers came from; each request on a new connection, so both workers answer."""
    served: dict[str, set[str]] = {}
    for i in range(n):
        r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=30,
                       json={"user_id": f"u{i % 50}", "num_results": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        served.setdefault(body["recommendation_id"][:16], set()).add(body["model_version"])
    return served


def test_a_reload_after_promote_or_rollback_moves_every_worker_before_it_answers(tmp_path):
    env = environment(tmp_path, serving={"model_poll_seconds": 3600})  # no poll meanwhile
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    with running_server(env, workers=2) as base:
        before = _versions_served(base)
        assert len(before) == 2 and set().union(*before.values()) == {first}, before
        for move, now in ((lambda: versions.promote(uri, "sluice-default", second, "test"),
                           second),
                          (lambda: versions.rollback(uri, "sluice-default", "test"), first)):
            move()  # what `sluice models promote 2` / `sluice models rollback` run
            reloaded = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=120)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["models"]["default"]["version"] == now
            served = _versions_served(base)
            assert len(served) == 2, served  # both workers answered
            assert all(found == {now} for found in served.values()), (now, served)


def test_a_reload_right_after_an_experiment_is_created_loads_its_arms_in_every_worker(tmp_path):
    """Answers read the experiments at most once a second; a reload reads them as they are
    (it used to take that second-old copy: an experiment created just before was missed, and
    answered outside until the next poll)."""
    env = environment(tmp_path, serving={"model_poll_seconds": 3600})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    with running_server(env, workers=2) as base:
        assert len(_versions_served(base, 20)) == 2  # both workers read the experiments now
        Experiments(tmp_path).create(Experiment("split", "default", (
            Arm("control", "champion", 0.5), Arm("treatment", second, 0.5))))
        reloaded = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        time.sleep(1.1)  # answers see the experiment once their copy is a second old
        answers = [httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=30,
                              json={"user_id": f"u{i % 50}", "num_results": 3}).json()
                   for i in range(120)]
    assert len({a["recommendation_id"][:16] for a in answers}) == 2  # both workers answered
    assert {a.get("experiment") for a in answers} == {"split"}
    assert {(a["arm"], a["model_version"]) for a in answers} == {("control", first),
                                                                  ("treatment", second)}


def _answers(base: str, n: int = 120) -> list[dict]:
    """Answers on a new connection each, so both workers give some, asked at once."""
    found = []
    for i in range(n):
        r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=30,
                       json={"user_id": f"u{i % 50}", "num_results": 3})
        assert r.status_code == 200, r.text
        found.append(r.json())
    return found


def test_an_experiment_created_or_stopped_through_the_api_is_served_by_every_worker_at_once(
        tmp_path):
    """Creating (stopping) an experiment answers once every worker has loaded its arms and
    answers within it (outside it): it used to load the arms only in the worker the request
    reached, the others answering outside it until their next poll (an hour here)."""
    env = environment(tmp_path, serving={"model_poll_seconds": 3600})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    with running_server(env, workers=2) as base:
        before = _answers(base, 40)
        assert len({a["recommendation_id"][:16] for a in before}) == 2
        assert {a.get("experiment") for a in before} == {None}
        made = httpx.post(f"{base}/admin/experiments", headers=ADMIN, timeout=120, json={
            "id": "split", "unit": "user", "arms": [
                {"name": "control", "model": "champion", "share": 0.5},
                {"name": "treatment", "model": second, "share": 0.5}]})
        assert made.status_code == 201, made.text
        within = _answers(base)  # right away: no sleep, no poll
        stopped = httpx.post(f"{base}/admin/experiments/split/stop", headers=ADMIN, timeout=120)
        assert stopped.status_code == 200 and stopped.json()["stopped_ms"], stopped.text
        after = _answers(base)
    assert len({a["recommendation_id"][:16] for a in within}) == 2  # both workers answered
    assert {(a.get("experiment"), a.get("experiment_unit")) for a in within} == {
        ("split", "user")}
    assert {(a["arm"], a["model_version"]) for a in within} == {("control", first),
                                                               ("treatment", second)}
    assert len({a["recommendation_id"][:16] for a in after}) == 2
    assert {a.get("experiment") for a in after} == {None}
    assert {a["model_version"] for a in after} == {first}


def _sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], env={**os.environ, **env},
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_cli_promote_rollback_and_experiments_reload_every_worker_before_returning(tmp_path):
    """`sluice promote`, `rollback`, `experiments create` and `stop` on the serving host: when
    the command returns, both workers serve the change (no HTTP call, no poll: an hour here)."""
    env = environment(tmp_path, serving={"model_poll_seconds": 3600})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    alone = _sluice(env, "promote", second, "--reason", "no server yet")
    assert "no serving process has run in this home" in alone.stdout, alone.stdout
    _sluice(env, "rollback", "--reason", "back")
    with running_server(env, workers=2) as base:
        assert set().union(*_versions_served(base).values()) == {first}
        for args, now in ((("promote", second, "--reason", "cli"), second),
                          (("rollback", "--reason", "cli"), first)):
            said = _sluice(env, *args).stdout
            assert f"every serving process of this host serves v{now} now" in said, said
            served = _versions_served(base)
            assert len(served) == 2 and all(found == {now} for found in served.values()), served
        made = _sluice(env, "experiments", "create", "split", "--unit", "user",
                       "--arm", "control=champion:0.5", "--arm", f"treatment={second}:0.5")
        assert "every serving process of this host serves experiment 'split' now" in made.stderr
        within = _answers(base)  # right away
        _sluice(env, "experiments", "stop", "split")
        after = _answers(base)
    assert len({a["recommendation_id"][:16] for a in within}) == 2  # both workers answered
    assert {(a.get("experiment"), a["arm"], a["model_version"]) for a in within} == {
        ("split", "control", first), ("split", "treatment", second)}
    assert {a.get("experiment") for a in after} == {None}
    stopped = _sluice(env, "promote", second, "--reason", "after the server")
    assert "no serving process runs on this host" in stopped.stdout, stopped.stdout


def test_a_worker_that_does_not_reload_within_the_configured_wait_is_named_in_a_503(tmp_path):
    """`serving.reload_wait_seconds` (1 s here): a worker paused (SIGSTOP) cannot reload, so
    the worker that took the reload answers 503 naming it after that wait, not after 120 s;
    once resumed, it catches up and a reload answers 200."""
    env = environment(tmp_path, serving={"model_poll_seconds": 3600, "reload_wait_seconds": 1})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    with running_server(env, workers=2) as base:
        assert len(_versions_served(base, 40)) == 2  # both serve (each wrote its record)
        records = sorted((tmp_path / FOLDER).glob("worker-*[0-9]"))
        assert len(records) == 2, records
        paused = int(records[0].name.rsplit("-", 1)[1])
        registry.client(uri).set_registered_model_alias("sluice-default", registry.CHAMPION,
                                                        second)
        os.kill(paused, signal.SIGSTOP)  # resumed at once after the reload: uvicorn's
        try:                             # supervisor replaces a worker silent for 5 s
            # within 60 s (the default wait, 120 s, would time this out)
            refused = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=60)
        finally:
            os.kill(paused, signal.SIGCONT)
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"] == [{"field": "workers", "reason": (
            f"serving processes {paused} had not loaded the registry's models within 1 s "
            "(serving.reload_wait_seconds; this one has); they move when they get to it, or "
            "at their next poll: see their log")}]
        reloaded = httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=60)
        assert reloaded.status_code == 200, reloaded.text
        served = _versions_served(base)
        assert len(served) == 2 and all(v == {second} for v in served.values()), served
        assert int(records[0].read_text()) >= 2  # the paused one did reload, once resumed
