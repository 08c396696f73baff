"""Experiments end to end: real models in a real MLflow store, a simulated population whose
hidden tastes favour one model, answers served by the Service, the raw log ingested, dbt built,
and the decision flow's verdicts: the better arm shipped with an interval excluding zero, an
A/A test without an effect and with a passing sample-ratio check, interleaving won by the
better arm. Then assignment across two workers and a restart of a real server."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from sluice.analytics.experiments import KEEP, SHIP, decide
from sluice.experiments import Arm, Experiment, Experiments
from sluice.learn import registry
from sluice.serve.service import Service
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.auth import ADMIN, READ
from tests.utils.factories import environment
from tests.utils.models import synthetic_bundle, two_versions
from tests.utils.server import running_server
from tests.utils.waits import wait_until

USERS = 600
SECTIONS = {"sufficiency": {"min_interactions": 1, "min_users_with_two_interactions": 1},
            "experiments": {"min_units_per_arm": 100, "auto_promote": True}}
AB = Experiment("ab-test", "ab", (Arm("control", "champion", 0.5),
                                  Arm("treatment", "challenger", 0.5)), template="personalized")
AA = Experiment("aa-test", "aa", (Arm("a", "champion", 0.5), Arm("b", "1", 0.5)))
IL = Experiment("il-test", "il", (Arm("control", "champion", 0.5),
                                  Arm("treatment", "challenger", 0.5)), kind="interleaving")


def _register(tenant: str, uri: str, root) -> tuple[str, str]:
    """v1 (champion) and v2 (alias challenger) of the tenant's model."""
    return two_versions(uri, root, f"sluice-{tenant}", challenger=True, users=USERS)


def _simulate(service: Service, tenant: str, liked: dict[str, set[str]], rng) -> list[dict]:
    """Two answers per user; a slot is clicked with p 0.35 when it is to the user's hidden
    taste (the challenger's top 10), else 0.05; a click is bought with p 0.3."""
    clicks, n = [], 0
    for user in sorted(liked):
        for _ in range(2):
            answer = service.recommend(service.request(tenant=tenant, user_id=user,
                                                       num_results=10))
            for slot in answer.items:
                if rng.random() < (0.35 if slot.item_id in liked[user] else 0.05):
                    for kind in ("click", "purchase") if rng.random() < 0.3 else ("click",):
                        n += 1
                        clicks.append({"event": "interaction", "id": f"{tenant}-{n}",
                                       "timestamp": 1_767_225_600_000 + n, "tenant": tenant,
                                       "user": user, "item": slot.item_id, "type": kind,
                                       "ranking": answer.recommendation_id})
    return clicks


def _tastes() -> dict[str, set[str]]:
    truth = synthetic_bundle(users=USERS, seed=2)
    scores = truth.user_factors @ truth.item_factors.T
    return {f"u{u}": {f"i{i}" for i in np.argsort(-scores[u])[:10]} for u in range(USERS)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiments")
    mp = pytest.MonkeyPatch()
    for key, value in environment(root, **SECTIONS).items():
        mp.setenv(key, value)
    settings = get_settings()
    versions = {t: _register(t, settings.mlflow_tracking_uri, root / "artifacts")
                for t in ("ab", "aa", "il")}
    store = Experiments(settings.home)
    for exp in (AB, AA, IL):
        store.create(exp)
    service = Service(settings)
    service.start(background=False)
    rng, liked = np.random.default_rng(5), _tastes()
    for tenant in ("ab", "aa", "il"):
        service.accept(_simulate(service, tenant, liked, rng))
    service.stop()
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())
    yield settings, versions
    mp.undo()


def test_the_better_arm_is_shipped_with_an_interval_excluding_zero(world):
    settings, _ = world
    decision = decide(settings.warehouse_path, AB, 100)
    assert decision.challenger == "treatment" and decision.control == "control"
    assert decision.recommendation == SHIP, decision
    assert 0 < decision.ci_low < decision.difference < decision.ci_high
    assert decision.srm_passed
    assert sum(decision.units.values()) == USERS
    assert min(decision.units.values()) > 0.4 * USERS


def test_an_a_a_experiment_shows_no_effect_and_passes_the_ratio_check(world):
    settings, _ = world
    decision = decide(settings.warehouse_path, AA, 100)
    assert decision.recommendation == KEEP, decision
    assert decision.ci_low < 0 < decision.ci_high
    assert decision.srm_passed is True and decision.chi_square < 10.828


def test_interleaving_prefers_the_better_arm(world):
    settings, _ = world
    decision = decide(settings.warehouse_path, IL, 100)
    assert decision.value > 0.5 and decision.ci_low > 0, decision
    assert decision.recommendation == SHIP
    # units (users here), not answers: each user sees both arms, decided answers are more
    deciding = decision.units["treatment"]
    assert decision.units == {"treatment": deciding, "control": deciding}
    assert 100 <= deciding <= decision.units_shown <= USERS
    assert sum(decision.answers_won.values()) > deciding
    assert (f"units: {deciding:,} decided an answer, of {decision.units_shown:,} units shown "
            "interleaved answers") in decision.reason


def test_daily_marts_keep_the_counts(world):
    from sluice.warehouse.db import connect

    settings, _ = world
    con = connect(settings.warehouse_path, read_only=True)
    rows = con.execute("select experiment, arm, sum(exposures), sum(slots_served), sum(clicks) "
                       "from marts.experiment_daily group by all order by all").fetchall()
    con.close()
    by = {(e, a): (x, s, c) for e, a, x, s, c in rows}
    assert set(by) == {("aa-test", "a"), ("aa-test", "b"), ("ab-test", "control"),
                       ("ab-test", "treatment"), ("il-test", "control"),
                       ("il-test", "treatment")}
    assert sum(by[("ab-test", arm)][0] for arm in ("control", "treatment")) == 2 * USERS
    # interleaving: each answer's 10 slots split between the arms that placed them
    assert sum(by[("il-test", arm)][1] for arm in ("control", "treatment")) == 20 * USERS
    assert by[("ab-test", "treatment")][2] > by[("ab-test", "control")][2]


def test_the_flow_writes_verdicts_and_promotes_the_shipped_arm(world, prefect_harness):
    from flows.experiments import experiments

    settings, versions = world
    found = {d["experiment"]: d for d in experiments()}
    assert found["aa-test"]["recommendation"] == KEEP
    assert found["ab-test"]["promoted_version"] == versions["ab"][1]
    client = registry.client(settings.mlflow_tracking_uri)
    assert registry.alias_version(client, "sluice-ab", "champion").version == int(
        versions["ab"][1])
    assert registry.alias_version(client, "sluice-aa", "champion").version == int(
        versions["aa"][0])
    # the shipped experiment is stopped (left running, both arms would now serve the shipped
    # version); the one kept running is not
    store = Experiments(settings.home)
    assert store.get("ab-test").stopped_ms is not None
    assert store.get("aa-test").stopped_ms is None


def _arms_served(base: str, users: list[str]) -> dict[str, tuple[str, str]]:
    """Per user, the (arm, model version) of three answers, each on a new connection (so the
    two workers share them); the three must agree."""
    found: dict[str, tuple[str, str]] = {}
    for user in users:
        seen = set()
        for _ in range(3):
            r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=10,
                           json={"user_id": user, "num_results": 5})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["experiment"] == "split" and {s["arm"] for s in body["items"]} == {
                body["arm"]}
            seen.add((body["arm"], body["model_version"]))
        assert len(seen) == 1, (user, seen)
        found[user] = seen.pop()
    return found


def test_assignment_is_stable_across_workers_and_a_restart(tmp_path):
    env = environment(tmp_path, serving={"model_poll_seconds": 0.5}, templates={"blue": {
        "base": "personalized", "filters": [{"field": "color", "op": "eq", "value": "blue"}]}})
    uri = env["MLFLOW_TRACKING_URI"]
    first, second = two_versions(uri, tmp_path / "artifacts")
    split = Experiment("split", "default", (Arm("control", "champion", 0.5),
                                            Arm("treatment", second, 0.5)),
                       template="personalized")
    Experiments(tmp_path).create(split)
    users = [f"u{i}" for i in range(30)]
    expected = {u: split.assign(u, None).name for u in users}  # this process's hash
    with running_server(env, workers=2) as base:
        before = _arms_served(base, users)
        metrics = httpx.get(f"{base}/metrics").text
        _admin_routes(base)
    assert {u: arm for u, (arm, _) in before.items()} == expected
    assert {version for arm, version in before.values() if arm == "treatment"} == {second}
    assert {version for arm, version in before.values() if arm == "control"} == {first}
    assert 'sluice_experiment_answers_total{arm="treatment",experiment="split"' in metrics
    with running_server(env, workers=1) as base:
        assert _arms_served(base, users) == before


def _admin_routes(base: str) -> None:
    url = f"{base}/admin/experiments"
    arms = [{"name": "a", "model": "champion", "share": 0.5},
            {"name": "b", "model": "champion", "share": 0.4}]
    bad = httpx.post(url, headers=ADMIN, json={"id": "x", "template": "popular", "arms": arms})
    assert bad.status_code == 422 and "sum to 0.9" in bad.text
    arms[1] = {"name": "b", "model": "challenger", "share": 0.5}
    unknown = httpx.post(url, headers=ADMIN, json={"id": "x", "template": "popular",
                                                   "arms": arms})
    assert unknown.status_code == 422 and "'challenger'" in unknown.text
    arms[1]["model"] = "1"
    overlap = httpx.post(url, headers=ADMIN, json={"id": "x", "arms": arms})  # every template
    assert overlap.status_code == 422 and "overlaps experiment 'split'" in overlap.text
    made = httpx.post(url, headers=ADMIN, json={"id": "x", "template": "popular",
                                                "start_ms": 4102444800000, "arms": arms})
    assert made.status_code == 201, made.text
    assert {e["id"] for e in httpx.get(url, headers=ADMIN).json()} == {"split", "x"}
    assert httpx.post(f"{url}/x/stop", headers=ADMIN).json()["stopped_ms"] > 0
    # a configured template: its own experiment beside the one on its base template
    narrow = httpx.post(url, headers=ADMIN, json={"id": "narrow", "template": "blue",
                                                  "arms": arms})
    assert narrow.status_code == 201, narrow.text
    # each worker re-reads the definitions within a second; an answer outside any experiment
    # has no "experiment" field: a worker that has not re-read them yet answers that way
    wait_until(lambda: [httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=10, json={
        "user_id": f"u{n}", "num_results": 5, "template": "blue"}).json() for n in range(6)],
        "every worker to answer template 'blue' within experiment 'narrow'",
        until=lambda answers: {a.get("experiment") for a in answers} == {"narrow"})
    assert httpx.post(f"{url}/narrow/stop", headers=ADMIN).status_code == 200
    assert httpx.post(url, headers=ADMIN, json={"id": "y", "template": "green", "arms": arms}
                      ).json()["detail"][0]["reason"].startswith("no template 'green'")
    assert httpx.get(f"{url}/missing", headers=ADMIN).status_code == 404
    assert httpx.get(url, headers=READ).status_code == 403


def test_the_report_draws_each_experiment_with_its_decision(world, tmp_path):
    """Per tenant: the experiment's arms, units, metric per arm with its interval, SRM or
    preference, and the decision, drawn in headless Chromium when Debian's is installed."""
    import re
    import shutil
    import subprocess

    from sluice.analytics.report import write_report

    settings, _ = world
    pages = {}
    quiet = Experiment("quiet", "ab", AB.arms, template="similar_items")  # never served
    for exp in (AB, IL):
        out = write_report(settings.warehouse_path, settings.mlflow_tracking_uri,
                           f"sluice-{exp.tenant}", tmp_path / f"{exp.tenant}.html",
                           [exp, quiet] if exp is AB else [exp], 100)
        pages[exp.tenant] = out
        page = out.read_text()
        section = page[page.index(f"<h2>Experiment {exp.id} ({exp.kind}, running)</h2>"):]
        assert f"{SHIP}: treatment better: the interval excludes zero" in section
        for arm in ("control", "treatment"):  # a value with its interval per arm
            assert re.search(rf"<td>{arm}</td>.*?\d\.\d{{4}} \[\d\.\d{{4}}, \d\.\d{{4}}\]",
                             section), arm
    assert "sample ratio</td><td>passed (chi-square" in pages["ab"].read_text()
    assert "<td>unit</td><td>session: a session, else a user</td>" in pages["ab"].read_text()
    assert "answers won</td><td>treatment " in pages["il"].read_text()
    assert "no version has off-policy estimates yet" in pages["ab"].read_text()
    unserved = pages["ab"].read_text().split("<h2>Experiment quiet (ab, running)</h2>")[1]
    assert unserved.startswith("<p class='note'>tenant ab, template similar_items: no "
                               "answers of this experiment in the marts yet")
    assert "<td>challenger</td><td>0.5</td><td>0</td><td>0</td>" in unserved
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", pages["ab"].as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    charts = dict(re.findall(r"<h2>(.*?)</h2>.*?<section class=\"chart\">(.*?)</section>", dom,
                             re.DOTALL))
    drawn = charts["Experiment ab-test (ab, running)"]
    assert len(re.findall(r'id="mark-\d+"', drawn)) >= 4  # two arms, two daily lines
    assert "<table>" in drawn
