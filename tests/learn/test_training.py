"""Training on real DuckDB marts with a real MLflow SQLite store: runs, registry, gate, tune."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from sluice.bundle import ModelBundle
from sluice.learn import offpolicy, registry
from sluice.learn.training import InsufficientDataError, check_sufficiency, train_tenant
from sluice.learn.tuning import DEFAULT_SPACES, search_space, suggest, tune_tenant
from sluice.settings import Settings
from tests.utils.marts import START, WEIGHTS, taste_history, write_marts

CONFIG = {
    "events": {"weights": WEIGHTS},
    "sufficiency": {"min_interactions": 1000, "min_users_with_two_interactions": 25},
    "model": {"factors": 8, "iterations": 8, "regularization": 0.1, "alpha": 2.0,
              "similar_items_neighbours": 10,
              "bpr": {"factors": 8, "iterations": 100, "learning_rate": 0.05}},
    "evaluation": {"holdout_fraction": 0.2, "min_users": 10, "bootstrap_resamples": 200},
    "serving": {"popular_list_size": 20},
    "tune": {"trials": 2, "grid": {"als": {"factors": [4, 8, 16], "alpha": [2.0],
                                          "iterations": [8]}}},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module; each test trains its own tenant."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def settings_for(home: Path, store: str, monkeypatch, **sections) -> Settings:
    config = json.loads(json.dumps(CONFIG))
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = home / "sluice.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SLUICE_HOME", str(home))
    monkeypatch.setenv("SLUICE_CONFIG", str(path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return Settings()


def test_check_sufficiency_names_both_numbers_found_and_needed():
    frame = taste_history(users=10, per_user=3)  # 30 interactions, 10 users with two or more
    with pytest.raises(InsufficientDataError) as err:
        check_sufficiency(frame, 1000, 25, "/etc/sluice/prod.yaml")
    message = str(err.value)
    assert "lower `sufficiency` in /etc/sluice/prod.yaml" in message  # SLUICE_CONFIG's file
    assert "30 interactions (need 1,000)" in message
    assert "10 users with two or more interactions (need 25)" in message


def test_train_flow_fails_on_a_tiny_warehouse_and_registers_nothing(
        tmp_path, store, monkeypatch, prefect_harness):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(users=20, per_user=5), "tiny")
    from flows.train import train

    state = train(tenant="tiny", return_state=True)
    assert state.is_failed()
    with pytest.raises(InsufficientDataError) as err:
        state.result()
    assert "100 interactions (need 1,000)" in str(err.value)
    assert "20 users with two or more interactions (need 25)" in str(err.value)
    client = registry.client(store)
    assert not client.search_model_versions(f"name = '{settings.registered_model_name('tiny')}'")


def test_a_short_tenant_is_skipped_and_the_others_train(
        tmp_path, store, monkeypatch, prefect_harness):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(users=20, per_user=5), "few")
    write_marts(settings.warehouse_path, taste_history(), "many")
    from prefect.client.orchestration import get_client

    from flows.train import train

    state = train(return_state=True)
    assert state.is_completed()
    (result,) = state.result()
    assert result.tenant == "many" and result.version == "1"
    client = registry.client(store)
    assert not client.search_model_versions(f"name = '{settings.registered_model_name('few')}'")

    async def skipped_artifact():
        async with get_client() as prefect:
            found = await prefect.read_latest_artifacts()
        return next(a for a in found if a.key == "train-skipped")

    import asyncio

    table = json.loads(asyncio.run(skipped_artifact()).data)
    assert [row["tenant"] for row in table] == ["few"]
    assert "100 interactions (need 1,000)" in table[0]["skipped"]


def test_a_run_logs_registers_and_promotes_the_first_champion(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch,
                            matrix={"half_life_days": 60.0, "use_event_value": True})
    write_marts(settings.warehouse_path, taste_history(), "shop")
    result = train_tenant(settings, "shop")

    assert result.promoted and result.reason.startswith("no champion yet")
    assert result.metrics["ndcg_at_10"] > 2 * result.baseline["ndcg_at_10"]
    client = registry.client(store)
    name = settings.registered_model_name("shop")
    champion = client.get_model_version_by_alias(name, registry.CHAMPION)
    candidate = client.get_model_version_by_alias(name, registry.CANDIDATE)
    assert str(champion.version) == str(candidate.version) == result.version
    assert champion.tags["validation_status"] == "passed"

    inputs = client.get_run(result.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["marts.interactions/shop"]
    assert "user_id" in inputs[0].dataset.schema
    run = client.get_run(result.run_id).data
    assert run.params["algorithm"] == "als" and run.params["factors"] == "8"
    assert run.params["matrix.half_life_days"] == "60.0"
    assert run.params["matrix.use_event_value"] == "True"
    assert run.params["evaluation.protocol"] == "time"
    for k in (10, 20):
        for m in ("precision", "recall", "ndcg", "map", "hit_rate"):
            assert f"{m}_at_{k}" in run.metrics and f"popularity.{m}_at_{k}" in run.metrics
    assert run.metrics["lift_ndcg_at_10"] > 2
    assert run.metrics["dataset.users"] == 150 and run.metrics["dataset.items"] == 60
    assert run.metrics["dataset.interactions"] == 1800
    assert 0 < run.metrics["dataset.density"] < 1
    assert run.tags["dataset.time_min"].startswith("2024-01-01")
    assert {"catalog_coverage", "seconds.fit", "seconds.track", "seconds.total"} <= set(
        run.metrics)

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion",
                                                     dst_path=str(tmp_path / "dl")))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["signature"]["inputs"] and mlmodel["signature"]["outputs"]
    assert (local / "input_example.json").exists()
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("*.pickle"))
    bundle = ModelBundle.load(local)  # np.load(allow_pickle=False) inside
    assert bundle.meta["alpha"] == 2.0 and bundle.meta["regularization"] == 0.1
    assert bundle.meta["cutoff_ms"] > 0 and bundle.meta["fold_in"] == "als"
    # ALS trained on the recency-boosted matrix (the default): serving gets its boosted part
    assert bundle.meta["matrix"]["recency_boost"] == 32.0
    assert bundle.recent is not None and bundle.recent.shape == bundle.user_items.data.shape
    assert len(bundle.catalog) == 60 and len(bundle.popular) == 20
    assert bundle.similar is not None and bundle.similar.shape == (60, 60)
    # each user's best unseen items, ready for serving: the user's trained items left out
    assert bundle.candidates is not None and bundle.candidates.shape == (150, 60)
    u0 = bundle.user_index["u0"]
    trained = set(bundle.user_items[u0].indices.tolist())
    unseen = [int(i) for i in bundle.candidates[u0] if i >= 0]
    assert len(unseen) == 60 - len(trained) and not trained & set(unseen)
    scores = bundle.item_factors[unseen] @ bundle.user_factors[u0]
    assert np.all(np.diff(scores) <= 1e-5)  # best first
    stats = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="dataset_stats.json",
        dst_path=str(tmp_path / "st"))).read_text())
    assert stats["time_max"] > stats["time_min"]

    answer = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(
        pd.DataFrame({"user_id": ["u0", "nobody"], "num_results": [5, 3]}))
    mine = answer[answer["user_id"] == "u0"]["item_id"]
    assert len(mine) == 5 and sum(int(i[1:]) < 20 for i in mine) >= 4  # u0 likes group 0


def test_the_gate_keeps_the_champion_when_the_candidate_is_worse(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(), "keep")
    first = train_tenant(settings, "keep")
    worse = train_tenant(settings, "keep", algorithm="popularity")

    assert first.promoted and not worse.promoted
    client = registry.client(store)
    name = settings.registered_model_name("keep")
    assert str(client.get_model_version_by_alias(name, "champion").version) == first.version
    assert str(client.get_model_version_by_alias(name, "candidate").version) == worse.version
    version = client.get_model_version(name, worse.version)
    assert version.tags["validation_status"] == "failed"
    # same data: the champion saw this holdout, so its configuration is refit on this
    # training part and both are compared per user on the same users
    reason = version.tags["gate_reason"]
    assert "does not beat it" in reason and "interval" in reason
    assert "was refit on this run's training part" in reason
    assert f"vs champion v{first.version}" in reason
    assert client.get_run(worse.run_id).data.tags["gate.promoted"] == "false"


def test_the_gate_scores_the_champion_on_the_candidates_holdout(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    early = taste_history(days=20, seed=1)
    write_marts(settings.warehouse_path, early, "fresh")
    first = train_tenant(settings, "fresh", algorithm="popularity")
    later = taste_history(days=10, seed=2, start=START + pd.Timedelta(days=20))
    write_marts(settings.warehouse_path, later, "fresh")  # the new holdout is all after it
    better = train_tenant(settings, "fresh", algorithm="cosine")

    assert first.promoted and better.promoted
    assert "the champion scored as its bundle on this run's holdout" in better.reason
    metrics = registry.client(store).get_run(better.run_id).data.metrics
    # the popular champion, trained on the first 20 days only, ranked on the same users
    assert 0 < metrics["gate.champion"] < better.metrics["ndcg_at_10"]
    assert metrics["gate.candidate"] == pytest.approx(better.metrics["ndcg_at_10"])
    assert metrics["gate.difference_ci_low"] > 0
    assert better.gate["champion_version"] == first.version
    # item-item reads the plain matrix: its bundle has no boost for serving to apply
    local = mlflow.artifacts.download_artifacts(
        f"models:/{settings.registered_model_name('fresh')}@champion",
        dst_path=str(tmp_path / "dl"))
    bundle = ModelBundle.load(Path(local))
    assert bundle.meta["matrix"]["recency_boost"] == 0.0 and bundle.recent is None


def test_leave_last_out_protocol_and_bpr(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch,
                            evaluation={"protocol": "leave_last_out", "k": 5},
                            matrix={"weighting": "bm25"})
    write_marts(settings.warehouse_path, taste_history(), "loo")
    result = train_tenant(settings, "loo", algorithm="bpr")
    assert result.stats["evaluated_users"] == result.metrics["evaluated_users"] <= 150
    assert result.stats["test_interactions"] == 150  # one per user
    assert result.metrics["hit_rate_at_10"] > result.baseline["hit_rate_at_10"]
    assert {"ndcg_at_5", "ndcg_at_10", "ndcg_at_20"} <= set(result.metrics)  # evaluation.k
    run = registry.client(store).get_run(result.run_id).data
    assert run.params["evaluation.protocol"] == "leave_last_out"
    assert run.params["matrix.weighting"] == "bm25" and run.params["algorithm"] == "bpr"


def test_the_als_search_is_wide_and_on_log_scales():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [suggest(study.ask(), DEFAULT_SPACES["als"]) for _ in range(200)]
    factors = [d["factors"] for d in draws]
    assert max(factors) > 256 and min(factors) < 32
    regs = np.array([d["regularization"] for d in draws])
    assert 0.3 < (regs < 1.0).mean() < 0.7  # log scale: half the draws below 1, not 1%
    assert regs.min() < 0.05 and regs.max() > 20  # the shipped default (10) well inside
    assert suggest(study.ask(), {"k": [3]}) == {"k": 3}


def test_tune_runs_nested_trials_and_registers_the_best(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(), "tuned")
    outcome = tune_tenant(settings, "tuned")

    assert len(outcome.trials) == 2
    best = max(outcome.trials, key=lambda t: t.metrics["ndcg_at_10"])
    assert outcome.best.params == best.params  # chosen on the validation split
    assert outcome.best.metrics["evaluated_users"] != best.metrics["evaluated_users"]
    client = registry.client(store)
    parent_experiment = client.get_run(outcome.parent_run_id).info.experiment_id
    for trial in outcome.trials:
        run = client.get_run(trial.run_id)
        assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        # in the tenant's experiment, so MLflow's UI shows the trials under the tune run
        assert run.info.experiment_id == parent_experiment
        assert run.data.metrics["ndcg_at_10"] == pytest.approx(trial.metrics["ndcg_at_10"])
    parent = client.get_run(outcome.parent_run_id).data
    assert parent.params["tune.trials"] == "2"
    assert parent.metrics["validation.ndcg_at_10"] == pytest.approx(best.metrics["ndcg_at_10"])
    assert parent.metrics["ndcg_at_10"] == pytest.approx(outcome.best.metrics["ndcg_at_10"])
    name = settings.registered_model_name("tuned")
    version = client.get_model_version(name, outcome.best.version)
    assert version.run_id == outcome.parent_run_id
    assert version.tags["validation_status"] == "passed"
    assert np.isfinite(parent.metrics["ndcg_at_10"])
    # the recency boost was searched with the rest, and the registered bundle trained on
    # the chosen one: serving folds new events in with it
    assert all(1.0 <= trial.params["recency_boost"] <= 100.0 for trial in outcome.trials)
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/{outcome.best.version}",
                                                dst_path=str(tmp_path / "dl"))
    bundle = ModelBundle.load(Path(local))
    assert bundle.meta["matrix"]["recency_boost"] == pytest.approx(
        outcome.best.params["recency_boost"])
    assert bundle.meta["params"]["recency_boost"] == outcome.best.params["recency_boost"]


def test_the_recency_boost_is_searched_only_where_it_applies(tmp_path, store, monkeypatch):
    on = settings_for(tmp_path / "on", store, monkeypatch)
    assert search_space(on, "als")["recency_boost"] == ("log", 1.0, 100.0)
    assert "recency_boost" not in search_space(on, "ease")  # EASE reads the plain matrix
    off = settings_for(tmp_path / "off", store, monkeypatch, matrix={"recency_boost": 0.0})
    assert "recency_boost" not in search_space(off, "als")
    grid = settings_for(tmp_path / "grid", store, monkeypatch,
                        tune={"grid": {"als": {"recency_boost": [8.0, 32.0]}}})
    assert search_space(grid, "als")["recency_boost"] == [8.0, 32.0]


def test_tune_refuses_a_grid_of_unknown_parameters(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch,
                            tune={"grid": {"als": {"learning_rate": [0.1]}}})
    write_marts(settings.warehouse_path, taste_history(), "badgrid")
    with pytest.raises(ValueError, match="learning_rate"):
        tune_tenant(settings, "badgrid")


def popular_history(users: int = 200, items: int = 100, per_user: int = 10) -> pd.DataFrame:
    """No tastes, only popularity: every user picks items with chance 1 / rank."""
    rng = np.random.default_rng(11)
    chance = 1.0 / np.arange(1, items + 1)
    rows = []
    for u in range(users):
        for item in rng.choice(items, size=per_user, replace=False, p=chance / chance.sum()):
            at = START + pd.Timedelta(days=float(rng.uniform(0, 30)))
            rows.append((f"u{u}", f"i{item}", "click", at, 1.0, 1.0))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type", "event_at",
                                       "event_value", "weight"])


def test_a_model_that_does_not_beat_popularity_leaves_popularity_served(
        tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch,
                            model={"bpr": {"factors": 8, "iterations": 1,
                                           "learning_rate": 0.0001}})
    write_marts(settings.warehouse_path, popular_history(), "pop")
    result = train_tenant(settings, "pop", algorithm="bpr")

    assert not result.promoted
    assert "does not beat popularity; popularity is served" in result.reason
    assert f"vs popularity {result.baseline['ndcg_at_10']:.4f}" in result.reason
    assert result.gate["difference_low"] <= 0
    client = registry.client(store)
    name = settings.registered_model_name("pop")
    champion = client.get_model_version_by_alias(name, registry.CHAMPION)
    assert str(champion.version) != result.version
    assert champion.run_id == result.run_id  # registered from the same run
    assert champion.tags["validation_status"] == "passed"
    assert "served as the tenant's model" in champion.tags["gate_reason"]
    candidate = client.get_model_version(name, result.version)
    assert candidate.tags["validation_status"] == "failed"
    bundle = ModelBundle.load(Path(mlflow.artifacts.download_artifacts(
        f"models:/{name}@champion", dst_path=str(tmp_path / "pop"))))
    assert bundle.meta["algorithm"] == "popularity" and bundle.meta["fold_in"] == "constant"
    from sluice.analytics.report import model_quality

    section = model_quality(store, name)
    assert section.svg and f"champion v{champion.version} is popularity" in section.note


def test_a_retrain_whose_gain_is_inside_the_interval_stays_candidate(
        tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(), "same")
    first = train_tenant(settings, "same")
    again = train_tenant(settings, "same", params={"random_state": 7})

    assert first.promoted and not again.promoted
    low, high = again.gate["difference_low"], again.gate["difference_high"]
    assert low <= 0 <= high and low < high
    assert f"{low:+.4f} to {high:+.4f}" in again.reason
    assert f"vs champion v{first.version}" in again.reason
    run = registry.client(store).get_run(again.run_id).data
    assert run.metrics["gate.difference_ci_low"] == pytest.approx(low)
    assert run.tags["gate.promoted"] == "false"


def test_every_metric_has_an_interval_and_the_run_its_lineage(tmp_path, store, monkeypatch,
                                                               capsys):
    from sluice.learn.tracking import lineage

    settings = settings_for(tmp_path, store, monkeypatch, evaluation={"min_users": 1000})
    write_marts(settings.warehouse_path, taste_history(), "ci")
    result = train_tenant(settings, "ci")
    run = registry.client(store).get_run(result.run_id).data
    for name in ("ndcg_at_10", "recall_at_20", "catalog_coverage", "novelty",
                 "intra_list_diversity", "popularity_bias", "popularity.ndcg_at_10"):
        low, high = run.metrics[f"{name}_ci_low"], run.metrics[f"{name}_ci_high"]
        assert low <= run.metrics[name] <= high, name
    assert run.metrics["lift_ndcg_at_10_ci_low"] < run.metrics["lift_ndcg_at_10"] < (
        run.metrics["lift_ndcg_at_10_ci_high"])
    assert run.metrics["popularity_bias"] < run.metrics["popularity.popularity_bias"]
    assert run.metrics["novelty"] > run.metrics["popularity.novelty"]
    segments = [k for k in run.metrics
                if k.startswith("ndcg_at_10.history_") and not k.endswith(("_low", "_high"))]
    assert segments and all(f"{k}_ci_low" in run.metrics for k in segments)
    assert sum(v for k, v in run.metrics.items() if k.startswith("users.history_")) == (
        run.metrics["evaluated_users"])
    # 150 users cannot reach evaluation.min_users 1000: the split with the most users is kept
    assert run.params["evaluation.protocol_used"] == "per_user"
    assert "evaluation.min_users (1,000)" in run.tags["evaluation.protocol_note"]

    record = lineage(store, settings.registered_model_name("ci"), result.version)
    assert record["run_id"] == result.run_id and record["protocol"] == "per_user"
    assert len(record["mart_digest"]) == 16 and len(record["config_digest"]) == 16
    assert record["datasets"][0]["digest"] == record["mart_digest"]
    assert record["code_version"] and "ingest_high_water" in record
    from cli.main import main

    assert main(["models", "show", result.version, "--tenant", "ci"]) in (0, None)
    shown = json.loads(capsys.readouterr().out)
    assert shown["mart_digest"] == record["mart_digest"] and shown["version"] == result.version


def test_the_prefect_summary_shows_intervals_and_the_holdout_used():
    from flows.train import _summary
    from sluice.learn.training import TrainResult

    metrics = {"ndcg_at_10": 0.31, "ndcg_at_10_ci_low": 0.28, "ndcg_at_10_ci_high": 0.35}
    result = TrainResult("shop", "sluice-shop", "4", "r", metrics, {"ndcg_at_10": 0.2}, False,
                         "reason", {"protocol": "per_user", "evaluated_users": 943,
                                    "test_interactions": 10_000, "protocol_note": "why"})
    text = _summary(result)
    assert "| ndcg_at_10 | 0.3100 [0.2800, 0.3500] | 0.2000 |" in text
    assert "per_user split, 943 users and 10,000 interactions (why)" in text


def test_a_retrain_logs_off_policy_estimates_on_the_champions_explored_answers(
        tmp_path, store, monkeypatch, capsys):
    import duckdb

    settings = settings_for(tmp_path, store, monkeypatch, evaluation={"off_policy_clip": 5.0})
    history = taste_history()
    write_marts(settings.warehouse_path, history, "ope")
    first = train_tenant(settings, "ope")
    rng = np.random.default_rng(0)
    items = sorted(set(history["item_id"]))
    rows = [("ope", f"r{u}", f"u{u}", "personalized", first.version, k, items[rng.integers(
        len(items))], "model_personalized", 0.8 if k % 2 else 0.05, k % 2 == 0, 0.2, 4,
        bool(rng.random() < 0.1)) for u in range(150) for k in range(1, 6)]
    with duckdb.connect(str(settings.warehouse_path)) as con:  # what dbt builds, by hand
        con.execute("create table marts.slot_propensities (tenant varchar, recommendation_id "
                    "varchar, user_id varchar, template varchar, model_version varchar, "
                    "position integer, item_id varchar, recommendation_source varchar, "
                    "propensity double, explored boolean, exploration_share double, "
                    "exploration_pool integer, is_clicked boolean)")
        con.executemany(f"insert into marts.slot_propensities values ({', '.join('?' * 13)})",
                        rows)
    said: list[str] = []
    second = train_tenant(settings, "ope", progress=said.append)
    metrics = registry.client(store).get_run(second.run_id).data.metrics
    assert metrics["off_policy.answers"] == 150 and metrics["off_policy.slots"] == 750
    assert metrics["off_policy.snips_ctr_low"] <= metrics["off_policy.snips_ctr"] <= (
        metrics["off_policy.snips_ctr_high"])
    # random logged items rarely match the candidate: a small sample, marked and still shown
    assert metrics["off_policy.small_sample"] == float(metrics["off_policy.ess"] < 100)
    assert metrics["off_policy.clip"] == 5.0 and 0 <= metrics["off_policy.clipped_share"] <= 1
    assert metrics["off_policy.dr_ctr_low"] <= metrics["off_policy.dr_ctr"] <= (
        metrics["off_policy.dr_ctr_high"])
    assert metrics["off_policy.ess_slots"] >= metrics["off_policy.ess"] > 0
    # so few matching slots that DR is the reward model's guess: marked, and said in words
    assert metrics["off_policy.matched_slots"] > 0 and metrics["off_policy.dr_on_model"] == 1.0
    assert metrics["off_policy.ess"] < 100 or metrics["off_policy.support"] < offpolicy.MIN_SUPPORT
    tags = registry.client(store).get_run(second.run_id).data.tags
    assert tags["off_policy.reward_model"] == offpolicy.REWARD_MODEL
    warning = tags["off_policy.dr_warning"]
    assert warning.startswith("DR rests on the reward model: ")
    assert f"{metrics['off_policy.matched_slots']:,.0f} logged slots match" in warning
    line = next(x for x in said if "off-policy" in x)  # DR, both ESS, the clip in force
    assert f"DR CTR {metrics['off_policy.dr_ctr']:.4f}" in line
    assert (f"ESS {metrics['off_policy.ess']:.0f} answers / "
            f"{metrics['off_policy.ess_slots']:.0f} slots") in line
    assert warning in line
    assert (f"weights clipped at 5 ({metrics['off_policy.clipped_share']:.1%} of matching "
            "slots capped)") in line
    from cli.main import main

    capsys.readouterr()
    assert main(["models", "show", second.version, "--tenant", "ope"]) in (0, None)
    shown = json.loads(capsys.readouterr().out)
    assert shown["off_policy"]["ess"] == metrics["off_policy.ess"]
    assert shown["off_policy"]["ess_slots"] == metrics["off_policy.ess_slots"]
    assert shown["off_policy"]["dr_ctr"] == metrics["off_policy.dr_ctr"]
    assert shown["off_policy"]["reward_model"] == offpolicy.REWARD_MODEL
    assert shown["off_policy"]["dr_warning"] == warning
    assert shown["off_policy"]["dr_on_model"] == 1.0
    first_metrics = registry.client(store).get_run(first.run_id).data.metrics
    assert not any(k.startswith("off_policy.") for k in first_metrics)  # no champion before
    from sluice.analytics import online

    section = online.off_policy(store, "sluice-ope")  # the report: only the version with estimates
    # two tables, each a header and one version: the estimates, then what backs them
    assert section.svg and section.table.count("<tr>") == 4
    assert section.svg.count("<path") and "DR" in section.svg and "SNDR" in section.svg
    assert f"<td>v{second.version}</td><td>150</td><td>750</td>" in section.table
    assert (f"<td>{metrics['off_policy.ess']:.0f}</td><td>{metrics['off_policy.ess_slots']:.0f}"
            f"</td><td>5</td><td>{metrics['off_policy.clipped_share']:.1%}</td>") in section.table
    m = {k.removeprefix("off_policy."): v for k, v in metrics.items()}
    assert (f"<td>{m['dr_ctr']:.4f} [{m['dr_ctr_low']:.4f}, {m['dr_ctr_high']:.4f}]"
            f"{online.ON_MODEL}</td>" in section.table)
    assert f"v{second.version}: {warning}" in section.note
    assert "DR rests on the reward model</td>" in section.table
    assert f"reward model: {offpolicy.REWARD_MODEL}" in section.note
    assert ("small (below the minimum ESS)" in section.table) == bool(
        metrics["off_policy.small_sample"])


def test_a_retrain_of_the_champions_configuration_on_newer_data_is_a_refresh(
        tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(days=20, seed=1), "daily")
    first = train_tenant(settings, "daily")
    later = taste_history(users=150, per_user=2, days=2, seed=3,
                          start=START + pd.Timedelta(days=20))
    write_marts(settings.warehouse_path, later, "daily")  # a day or two more: the champion
    again = train_tenant(settings, "daily")                # saw most of the new holdout

    assert first.promoted and again.promoted and again.gate["refresh"]
    assert "was refit on this run's training part" in again.reason
    assert "+0.0000 to +0.0000" in again.reason and "refresh on newer data" in again.reason
    client = registry.client(store)
    name = settings.registered_model_name("daily")
    assert str(client.get_model_version_by_alias(name, "champion").version) == again.version
    run = client.get_run(again.run_id).data
    assert run.tags["gate.refresh"] == "true" and run.tags["gate.promoted"] == "true"
    assert run.metrics["gate.users"] == again.metrics["evaluated_users"] >= 100
    assert run.metrics["gate.min_users"] == 100 and run.metrics["gate.confidence"] == 0.95
    assert run.tags["gate.method"] == "sign-flip" and run.metrics["gate.resamples"] == 200


def test_a_tenant_of_thirty_users_is_never_promoted(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(users=30, per_group=50, per_user=40),
                "thirty")
    result = train_tenant(settings, "thirty")

    assert not result.promoted and result.gate["users"] <= 30
    assert "fewer than evaluation.gate_min_users (100): too few to decide" in result.reason
    assert "vs popularity" in result.reason and "interval" in result.reason
    client = registry.client(store)
    name = settings.registered_model_name("thirty")
    assert registry.alias_version(client, name, registry.CHAMPION) is None
    run = client.get_run(result.run_id).data
    assert run.tags["gate.promoted"] == "false"
    assert run.metrics["gate.users"] == result.gate["users"]


def test_a_champion_of_another_matrix_config_is_no_refresh(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    write_marts(settings.warehouse_path, taste_history(), "remix")
    first = train_tenant(settings, "remix")
    settings = settings_for(tmp_path, store, monkeypatch, matrix={"recency_half_life": 9.0})
    again = train_tenant(settings, "remix")  # the champion refit here is not its own config

    assert first.promoted and not again.promoted and not again.gate["refresh"]
    assert "does not beat it" in again.reason


def _retrain_on_newer_data(settings: Settings, tenant: str):
    """A champion, then a day or two more events: the champion saw most of the new holdout,
    so the next run refits its configuration on this run's training part."""
    write_marts(settings.warehouse_path, taste_history(days=20, seed=1), tenant)
    first = train_tenant(settings, tenant)
    later = taste_history(users=150, per_user=2, days=2, seed=3,
                          start=START + pd.Timedelta(days=20))
    write_marts(settings.warehouse_path, later, tenant)
    return first


def test_changed_event_weights_are_no_refresh(tmp_path, store, monkeypatch):
    import duckdb

    settings = settings_for(tmp_path, store, monkeypatch)
    first = _retrain_on_newer_data(settings, "reweigh")
    heavier = {"click": 1.0, "purchase": 8.0}
    with duckdb.connect(str(settings.warehouse_path)) as con:  # the marts dbt rebuilds
        con.execute("update marts.interactions set weight = 8.0 where tenant = 'reweigh' "
                    "and interaction_type = 'purchase'")
    settings = settings_for(tmp_path, store, monkeypatch, events={"weights": heavier})
    again = train_tenant(settings, "reweigh")  # the champion refit on the new marts: a tie

    assert first.promoted and not again.promoted and not again.gate["refresh"]
    assert "was refit on this run's training part" in again.reason
    assert ("does not beat it (needs the interval above zero); no refresh: events.weights "
            "click 1, purchase 4 -> click 1, purchase 8") in again.reason
    client = registry.client(store)
    name = settings.registered_model_name("reweigh")
    assert str(client.get_model_version_by_alias(name, "champion").version) == first.version
    recorded = {"weights": heavier, "event_value_threshold": None}
    run = client.get_run(again.run_id).data
    assert json.loads(run.tags["training.interactions"]) == recorded
    assert run.params["weight.purchase"] == "8.0"
    bundle = ModelBundle.load(Path(mlflow.artifacts.download_artifacts(
        f"models:/{name}/{again.version}")))
    assert bundle.meta["interactions"] == recorded


def test_a_changed_event_value_threshold_is_no_refresh(tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    first = _retrain_on_newer_data(settings, "valued")
    settings = settings_for(tmp_path, store, monkeypatch, events={
        "weights": WEIGHTS, "event_value_threshold": 1.0})  # every test row passes it
    again = train_tenant(settings, "valued")

    assert first.promoted and not again.promoted and not again.gate["refresh"]
    assert "no refresh: events.event_value_threshold none -> 1" in again.reason


def test_a_champion_without_a_record_of_its_event_settings_is_no_refresh(
        tmp_path, store, monkeypatch):
    settings = settings_for(tmp_path, store, monkeypatch)
    first = _retrain_on_newer_data(settings, "legacy")
    stripped = 0  # the champion as a version registered before the record was kept
    for path in Path(settings.artifact_root).rglob("meta.json"):
        meta = json.loads(path.read_text())
        if meta.get("tenant") == "legacy" and "interactions" in meta:
            del meta["interactions"]
            path.write_text(json.dumps(meta))
            stripped += 1
    assert stripped
    again = train_tenant(settings, "legacy")

    assert first.promoted and not again.promoted and not again.gate["refresh"]
    assert ("no refresh: no record of events.weights and events.event_value_threshold "
            "(trained before they were recorded)") in again.reason
