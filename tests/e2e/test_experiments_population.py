"""An experiment between two models the pipeline trained, on the synthetic population: the
history `sluice.intake.synthetic` writes is ingested, transformed and trained on (popularity
and ALS); the same users then meet the arms' answers and click by their hidden tastes
(`synthetic.population`, the generator's own click rule). The decision flow must ship the
arm whose served slots the users truly liked more, with an interval that holds the true
difference; an A/A experiment run after it must not ship anything."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sluice.analytics.experiments import KEEP, SHIP, STOP, decide
from sluice.experiments import Arm, Experiment, Experiments
from sluice.intake import synthetic
from sluice.learn import registry
from sluice.learn.training import train_tenant
from sluice.serve.service import Service
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.factories import environment

SPEC = synthetic.SyntheticSpec(users=500, items=300, events=30_000, days=30, seed=11, files=1)
SECTIONS = {"sufficiency": {"min_interactions": 1, "min_users_with_two_interactions": 1},
            "experiments": {"min_units_per_arm": 100, "auto_promote": True}}
ANSWERS_PER_USER = 3


def _serve_and_click(service: Service, hidden: synthetic.Population, rng) -> tuple[
        list[dict], dict[str, list[float]]]:
    """Every user asks ANSWERS_PER_USER times; each slot is clicked with the probability the
    generator would give it. Returns the clicks and, per arm, the true click probability of
    every slot it served (the value the experiment estimates)."""
    clicks, truth, n = [], {}, 0
    now = int(time.time() * 1000)
    for u in range(SPEC.users):
        for _ in range(ANSWERS_PER_USER):
            answer = service.recommend(service.request(user_id=f"u{u}", num_results=10))
            items = np.array([int(s.item_id[1:]) for s in answer.items])
            probability = hidden.click_probability(u, items)
            truth.setdefault(answer.arm, []).extend(probability.tolist())
            for item, p in zip(items, probability, strict=True):
                if rng.random() >= p:
                    continue
                bought = rng.random() < hidden.purchase_probability(u, int(item))
                for kind in ("click", "purchase") if bought else ("click",):
                    n += 1
                    clicks.append({"event": "interaction", "id": f"sim-{n}", "timestamp": now + n,
                                   "user": f"u{u}", "item": f"i{item}", "type": kind,
                                   "ranking": answer.recommendation_id})
    return clicks, truth


def _run(settings, exp: Experiment, rng) -> dict[str, list[float]]:
    """Serve the experiment to the population, log the clicks, load and transform."""
    store = Experiments(settings.home)
    store.create(exp)
    service = Service(settings)
    service.start(background=False)
    hidden = synthetic.population(SPEC)
    try:
        clicks, truth = _serve_and_click(service, hidden, rng)
        service.accept(clicks)
    finally:
        service.stop()
    store.stop(exp.id)
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())
    return truth


@pytest.fixture(scope="module")
def population_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("population")
    mp = pytest.MonkeyPatch()
    for key, value in environment(root, **SECTIONS).items():
        mp.setenv(key, value)
    settings = get_settings()
    synthetic.generate(settings.landing_dir, SPEC)
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())
    popular = train_tenant(settings, "default", algorithm="popularity")
    als = train_tenant(settings, "default", algorithm="als")
    client = registry.client(settings.mlflow_tracking_uri)
    name = settings.registered_model_name("default")
    client.set_registered_model_alias(name, registry.CHAMPION, popular.version)
    client.set_registered_model_alias(name, "challenger", als.version)
    rng = np.random.default_rng(3)
    ab = Experiment("pop-vs-als", "default", (Arm("popularity", "champion", 0.5),
                                              Arm("als", "challenger", 0.5)),
                    template="personalized", start_ms=int(time.time() * 1000) - 1)
    ab_truth = _run(settings, ab, rng)
    aa = Experiment("als-vs-als", "default", (Arm("a", als.version, 0.5),
                                              Arm("b", als.version, 0.5)),
                    template="personalized", start_ms=int(time.time() * 1000) + 1)
    time.sleep(0.01)
    aa_truth = _run(settings, aa, rng)
    yield settings, {"ab": ab, "aa": aa, "ab_truth": ab_truth, "aa_truth": aa_truth,
                     "versions": (popular.version, als.version)}
    mp.undo()


def test_the_arm_the_population_prefers_wins_with_the_true_difference_inside(
        population_world):
    """ALS is the challenger: shipped when the users truly clicked its slots more, stopped
    when they clicked popularity's more; either way the interval holds the true difference
    and excludes zero."""
    settings, found = population_world
    truth = {arm: float(np.mean(p)) for arm, p in found["ab_truth"].items()}
    decision = decide(settings.warehouse_path, found["ab"], 100)
    assert (decision.control, decision.challenger) == ("popularity", "als")
    true_difference = truth["als"] - truth["popularity"]
    assert decision.recommendation == (SHIP if true_difference > 0 else STOP), (decision, truth)
    assert decision.ci_low <= true_difference <= decision.ci_high, (decision, truth)
    assert not decision.ci_low <= 0 <= decision.ci_high
    assert decision.srm_passed and sum(decision.units.values()) == SPEC.users


def test_the_a_a_experiment_on_the_same_population_ships_nothing(population_world):
    settings, found = population_world
    decision = decide(settings.warehouse_path, found["aa"], 100)
    assert decision.recommendation == KEEP, decision
    assert decision.ci_low < 0 < decision.ci_high and decision.srm_passed


def test_the_decision_flow_promotes_the_preferred_model(population_world, prefect_harness):
    from flows.experiments import decide_one

    settings, found = population_world
    truth = {arm: float(np.mean(p)) for arm, p in found["ab_truth"].items()}
    verdict = decide_one("pop-vs-als")  # the flow's task, on a stopped experiment
    if truth["als"] > truth["popularity"]:  # auto_promote: champion moves to ALS
        assert verdict["recommendation"] == SHIP
        assert verdict["promoted_version"] == found["versions"][1]
    else:
        assert verdict["recommendation"] == STOP and "promoted_version" not in verdict
    assert decide_one("als-vs-als")["recommendation"] == KEEP
    champion = registry.alias_version(registry.client(settings.mlflow_tracking_uri),
                                      settings.registered_model_name("default"), "champion")
    assert str(champion.version) == verdict.get("promoted_version", found["versions"][0])
