"""`POST /admin/reload` right after `sluice models promote` or `rollback`, on a real server with
two workers: the answer names the registry's champion as of the call, and so does every answer
afterwards, whichever worker gives it (the request reaches one worker; it used to leave the
others on the old champion until their next poll, `serving.model_poll_seconds`)."""

from __future__ import annotations

import time

import httpx

from sluice.experiments import Arm, Experiment, Experiments
from sluice.learn import registry, versions
from tests.utils.auth import ADMIN, READ
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
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
    first = register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
    second = register_champion(synthetic_bundle(seed=2), uri, tmp_path / "artifacts")
    registry.client(uri).set_registered_model_alias("sluice-default", registry.CHAMPION, first)
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
    first = register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
    second = register_champion(synthetic_bundle(seed=2), uri, tmp_path / "artifacts")
    registry.client(uri).set_registered_model_alias("sluice-default", registry.CHAMPION, first)
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
