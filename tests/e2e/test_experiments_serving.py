"""Experiments as served: a real server with two workers, the raw log it writes, ingest and
dbt. The split follows the shares for visitors with a unit and for anonymous requests alike
(each anonymous answer is its own unit in the log, so sending them all to one arm failed the
sample-ratio check); an arm not loaded yet keeps every visitor outside the experiment (not
only that arm's); an answer's experiment and arm are explained after a restart."""

from __future__ import annotations

import math
from collections import Counter

import httpx

from sluice.experiments import Arm, Experiment, Experiments
from sluice.serve.service import Service
from sluice.settings import get_settings
from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.auth import READ
from tests.utils.factories import environ, environment
from tests.utils.models import register_champion, synthetic_bundle, two_versions
from tests.utils.server import running_server

TREATMENT_SHARE = 0.7


def _within(found: int, n: int, share: float) -> bool:
    """`found` of `n` within 4 standard deviations of the binomial mean (p ~ 6e-5 of a
    false alarm)."""
    return abs(found - n * share) <= 4 * math.sqrt(n * share * (1 - share))


def _served(base: str, bodies: list[dict]) -> list[dict]:
    """Each request on a new connection, so the kernel spreads them over both workers."""
    answers = []
    for body in bodies:
        r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=30, json=body)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def test_the_split_follows_the_shares_for_users_and_anonymous_requests(tmp_path):
    env = environment(tmp_path, serving={"model_poll_seconds": 0.5})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    split = Experiment("split", "default", (Arm("control", "champion", 1 - TREATMENT_SHARE),
                                            Arm("treatment", second, TREATMENT_SHARE)))
    Experiments(tmp_path).create(split)
    n = 600
    with running_server(env, workers=2) as base:
        users = _served(base, [{"user_id": f"u{i}", "num_results": 3} for i in range(n)])
        anonymous = _served(base, [{"num_results": 3, "template": "popular"}] * n)
    for answers in (users, anonymous):
        assert {a.get("experiment") for a in answers} == {"split"}
        # both workers answered (an answer id starts with its process's random prefix)
        assert len({a["recommendation_id"][:16] for a in answers}) == 2
        assert all({s["arm"] for s in a["items"]} == {a["arm"]} for a in answers)
        assert {(a["arm"], a["model_version"]) for a in answers} == {
            ("control", first), ("treatment", second)}
    treated = Counter(a["arm"] for a in anonymous)["treatment"]
    assert _within(treated, n, TREATMENT_SHARE), treated  # was 0 or n: one shared hash
    assert _within(Counter(a["arm"] for a in users)["treatment"], n, TREATMENT_SHARE)
    with environ(env):
        settings = get_settings()
        Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
        dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())
    with connect(settings.warehouse_path, read_only=True) as con:
        units, crossed, passed = con.execute(
            "select units, crossed_units, srm_passed from marts.experiment_assignment "
            "where experiment = 'split'").fetchone()
    assert (units, crossed, passed) == (2 * n, 0, True)
    # every answer is explained after a restart, from the raw log, with its experiment and arm
    with running_server(env) as base, httpx.Client(headers=READ, timeout=30) as http:
        for answer in users[:3] + anonymous[:3]:
            body = http.get(f"{base}/v1/recommendations/{answer['recommendation_id']}").json()
            assert (body["experiment"], body["arm"], body["model_version"]) == (
                "split", answer["arm"], answer["model_version"])
            assert [(i["item_id"], i["arm"], i["reason"].get("propensity")) for i in
                    body["items"]] == [(i["item_id"], i["arm"], i["propensity"])
                                       for i in answer["items"]]


def test_no_visitor_is_in_the_experiment_until_every_arm_is_loaded(tmp_path):
    env = environment(tmp_path)
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    with environ(env):
        service = Service(get_settings())
        service.start(background=False)  # the champion loaded; no experiment yet
        try:
            service.experiments.create(Experiment("late", "default", (
                Arm("control", "champion", 0.5), Arm("treatment", second, 0.5))))

            def arms() -> Counter[str | None]:
                return Counter(service.recommend(service.request(
                    user_id=f"u{i}", num_results=3)).arm for i in range(200))

            # the treatment's model is loaded at the next model poll: until then the
            # control's visitors were answered within the experiment and the treatment's not
            assert arms() == Counter({None: 200})
            service.refresh_models()
            loaded = arms()
            assert set(loaded) == {"control", "treatment"} and sum(loaded.values()) == 200
        finally:
            service.stop()


def test_an_arm_whose_model_is_missing_is_named_once_and_nobody_is_in_its_experiment(
        tmp_path, caplog):
    env = environment(tmp_path)
    register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                      tmp_path / "artifacts")
    # created without the registry check (as a file edited by hand, or an alias since removed)
    Experiments(tmp_path).create(Experiment("gone", "default", (
        Arm("control", "champion", 0.5), Arm("treatment", "challenger", 0.5))))
    with environ(env), caplog.at_level("WARNING", logger="sluice.serve.arms"):
        service = Service(get_settings())
        service.start(background=False)
        try:
            service.refresh_models()  # a second poll says nothing new
            assert {service.recommend(service.request(user_id=f"u{i}", num_results=3)).arm
                    for i in range(50)} == {None}
        finally:
            service.stop()
    said = [r.getMessage() for r in caplog.records if "challenger" in r.getMessage()]
    assert len(said) == 1 and "answers outside" in said[0], said
