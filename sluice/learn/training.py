"""Train one tenant's model from the warehouse marts, evaluate it, track it in MLflow, gate it.

One run: load the interactions mart, check there is enough, split (time holdout or leave
last out), build the matrices, fit the configured family on the training part and score it
and the popularity model on the held-out part, score the current champion on the same
part, refit on everything, log and register the bundle, set `candidate`, and let the gate
decide on `champion`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from sluice.learn import gate, offpolicy, quality, registry
from sluice.learn.bundling import dataset_stats, make_bundle, matrix_meta
from sluice.learn.configuration import Configuration, interactions_meta
from sluice.learn.evaluation import K_VALUES, Scored, Split, decisive_split, score_model
from sluice.learn.matrix import InteractionMatrix, build, trained_boost
from sluice.learn.models import ALS, Model, Popularity, make_model
from sluice.learn.tracking import lifts, log_gate, log_model, log_run
from sluice.settings import Settings
from sluice.warehouse.engine import Warehouse, as_warehouse, from_settings
from sluice.warehouse.positions import trained_positions

log = logging.getLogger(__name__)


class InsufficientDataError(RuntimeError):
    """Too little data to train; the message gives what was found and what is needed."""


@dataclass
class TrainResult:
    tenant: str
    model_name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    promoted: bool
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)
    algorithm: str = "als"
    params: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Prepared:
    """A tenant's data, split and turned into matrices: what every fit of a run shares."""

    tenant: str
    frame: pd.DataFrame
    split: Split
    train: InteractionMatrix
    relevant: dict[int, np.ndarray]
    full: InteractionMatrix
    catalog: dict[str, dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    k_values: tuple[int, ...] = K_VALUES
    # how far into the raw log the marts went (sluice.warehouse.positions), for the bundle
    log_positions: dict[str, Any] | None = None

    def test_counts(self) -> np.ndarray:
        """Held-out interactions per training user row (for the 'mostly after' segment)."""
        rows = pd.Index(self.train.user_ids).get_indexer(self.split.test["user_id"].astype(str))
        return np.bincount(rows[rows >= 0], minlength=len(self.train.user_ids))


@dataclass
class Fitted:
    model: Model
    metrics: dict[str, float]
    fit_seconds: float
    scored: Scored | None = None


class Timer:
    """Seconds per phase of a run, for the run's metrics and the speed benchmark."""

    def __init__(self, into: dict[str, float]):
        self.seconds = into

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def tenants(warehouse: Warehouse | Path) -> list[str]:
    return [r[0] for r in as_warehouse(warehouse).rows(
        "select distinct tenant from marts.interactions order by 1")]


def load_interactions(warehouse: Warehouse | Path, tenant: str) -> pd.DataFrame:
    """The tenant's interactions mart; ids and types come categorical (arrow dictionaries),
    which makes building the matrices a lookup in the small category arrays."""
    table = as_warehouse(warehouse).arrow(
        "select user_id, item_id, interaction_type, event_at, event_value, "
        "cast(weight as double precision) as weight from marts.interactions where tenant = ?",
        [tenant])
    for name in ("user_id", "item_id", "interaction_type"):
        column = table.schema.get_field_index(name)
        table = table.set_column(column, name, table[name].dictionary_encode())
    return table.to_pandas()


def load_catalog(warehouse: Warehouse | Path, tenant: str) -> dict[str, dict[str, Any]]:
    rows = as_warehouse(warehouse).rows(
        "select item_id, fields from marts.items where tenant = ?", [tenant])
    return {item_id: json.loads(fields) if fields else {} for item_id, fields in rows}


def check_sufficiency(frame: pd.DataFrame, min_interactions: int, min_users: int,
                      config: str = "config/sluice.yaml") -> None:
    interactions = len(frame)
    users_with_two = int((frame.groupby("user_id", observed=True).size() >= 2).sum()
                         if interactions else 0)
    if interactions < min_interactions or users_with_two < min_users:
        raise InsufficientDataError(
            f"not enough data to train: {interactions:,} interactions (need {min_interactions:,})"
            f" and {users_with_two:,} users with two or more interactions (need {min_users:,})."
            f" Send more events or lower `sufficiency` in {config}."
        )


def prepare(settings: Settings, tenant: str, frame: pd.DataFrame | None = None,
            catalog: dict[str, dict[str, Any]] | None = None) -> Prepared:
    """Load (unless given), check, split and build the matrices of one tenant.

    Given the training part of another split as `frame`, this makes a validation split
    inside it (the tune flow picks hyperparameters there, never on the reported holdout).
    """
    timings: dict[str, float] = {}
    timer = Timer(timings)
    positions = None
    with timer.phase("load"):
        if frame is None:
            warehouse = from_settings(settings)
            frame = load_interactions(warehouse, tenant)
            positions = trained_positions(warehouse, settings.raw_location)
        if catalog is None:
            catalog = load_catalog(from_settings(settings), tenant)
    suff, ev, mx = settings.app.sufficiency, settings.app.evaluation, settings.app.matrix
    check_sufficiency(frame, suff.min_interactions, suff.min_users_with_two_interactions,
                      str(settings.config))
    with timer.phase("matrix"):
        held = decisive_split(frame, ev.protocol, ev.holdout_fraction, ev.leave_out,
                              ev.min_users, ev.widen_to, mx)
        split, train, relevant = held.split, held.train, held.relevant
        full = build(frame, config=mx)
    if not relevant:
        raise InsufficientDataError(
            f"not enough data to evaluate: the {ev.protocol} holdout of {len(split.test):,} "
            "interactions has no user who is also in training with a new item")
    k_values = tuple(sorted({*K_VALUES, ev.k}))  # 10 and 20 always, evaluation.k too
    return Prepared(tenant, frame, split, train, relevant, full, catalog, timings, k_values,
                    positions)


def fit_and_evaluate(prepared: Prepared, algorithm: str, params: dict[str, Any],
                     settings: Settings | None = None) -> Fitted:
    """Fit on the training part, score the held-out part; with `settings`, every metric
    also gets its bootstrap interval and the beyond-accuracy measures are added."""
    started = time.perf_counter()
    model = make_model(algorithm, **params)
    model.fit(prepared.train.for_model(algorithm, trained_boost(model)).matrix)
    fit_seconds = time.perf_counter() - started
    scored = score_model(model, prepared.train, prepared.relevant, prepared.k_values)
    metrics = scored.means()
    if settings is not None:
        ev = settings.app.evaluation
        found = quality.intervals(scored, prepared.train.matrix, prepared.test_counts(),
                                  ev.bootstrap_resamples, ev.confidence, ev.seed)
        metrics.update(quality.as_metrics(found))
    return Fitted(model, metrics, fit_seconds, scored)


def train_tenant(settings: Settings, tenant: str,
                 progress: Callable[[str], None] | None = None, algorithm: str | None = None,
                 params: dict[str, Any] | None = None,
                 prepared: Prepared | None = None) -> TrainResult:
    """One training run of the configured (or given) family, tracked, registered and gated."""
    say = progress or log.info
    started = time.perf_counter()
    algorithm = algorithm or settings.app.model.algorithm
    params = {**settings.app.model.params(algorithm), **(params or {})}
    prepared = prepared or prepare(settings, tenant)
    say(f"[{tenant}] {prepared.split.protocol} holdout from {prepared.split.cutoff}: "
        f"{len(prepared.relevant):,} users and {len(prepared.split.test):,} interactions to "
        f"evaluate ({prepared.split.note})")
    evaluating = time.perf_counter()
    candidate = fit_and_evaluate(prepared, algorithm, params, settings)
    baseline = fit_and_evaluate(prepared, "popularity", {}, settings)
    prepared.timings["fit"] = candidate.fit_seconds
    prepared.timings["evaluate"] = time.perf_counter() - evaluating - candidate.fit_seconds
    say(f"[{tenant}] {algorithm} ndcg@10 {_with_interval(candidate.metrics, 'ndcg_at_10')} vs "
        f"popularity {_with_interval(baseline.metrics, 'ndcg_at_10')}; refitting on all data")
    experiment_id = registry.experiment(registry.client(settings.mlflow_tracking_uri),
                                        f"sluice-{tenant}", settings.artifact_root)
    run_name = f"{algorithm}-{tenant}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name):
        return finish(settings, prepared, candidate, baseline, say, started)


def finish(settings: Settings, prepared: Prepared, candidate: Fitted, baseline: Fitted,
           say: Callable[[str], None], started: float) -> TrainResult:
    """Inside an active MLflow run: score the champion, refit, log, register and gate."""
    tenant, model = prepared.tenant, candidate.model
    name = settings.registered_model_name(tenant)
    metric = settings.app.evaluation.gate_metric
    timer = Timer(prepared.timings)
    with timer.phase("champion"):
        champion = gate.score_champion(settings.mlflow_tracking_uri, name, prepared.train,
                                       prepared.split.test, prepared.relevant,
                                       prepared.k_values, configuration(settings, prepared, model))
    with timer.phase("off_policy"):
        evaluation = settings.app.evaluation
        offpolicy.log(from_settings(settings), prepared.tenant,
                      champion.version if champion else None, model, prepared.train, say,
                      evaluation.off_policy_clip, evaluation.off_policy_min_ess,
                      evaluation.off_policy_min_support)
    refit_started = time.perf_counter()
    final = make_model(model.name, **model.params())
    final.fit(prepared.full.for_model(model.name, trained_boost(final)).matrix)
    prepared.timings["refit"] = time.perf_counter() - refit_started
    with timer.phase("bundle"):
        bundle = make_bundle(settings, prepared, final, say)
    stats = dataset_stats(prepared)
    candidate.metrics.update(lifts(settings, candidate, baseline))
    run = mlflow.active_run()
    assert run is not None, "finish() runs inside an MLflow run"
    with timer.phase("track"):
        log_run(settings, prepared, final, candidate, baseline, stats)
        version = log_model(bundle, name)
        client = registry.client(settings.mlflow_tracking_uri)
        client.set_registered_model_alias(name, registry.CANDIDATE, version)
    with timer.phase("gate"):
        assert candidate.scored is not None and baseline.scored is not None
        rule = gate_rule(settings)
        decision = gate.decide(metric, candidate.scored,
                               baseline.scored if model.personalized else None, champion, rule)
        gate.apply(client, name, version, decision)
        log_gate(decision, champion, rule)
        if decision.serve_popularity:
            served = serve_popularity(settings, prepared, name, decision, say)
            mlflow.set_tag("gate.served_popularity_version", served)
    prepared.timings["total"] = time.perf_counter() - started
    mlflow.log_metrics({f"seconds.{k}": v for k, v in prepared.timings.items()})
    say(f"[{tenant}] {name} v{version}: {decision.reason}")
    return TrainResult(
        tenant, name, version, run.info.run_id, candidate.metrics, baseline.metrics,
        decision.promoted, decision.reason, stats, final.name, final.params(),
        {**decision.as_dict(), "champion_note": champion.note if champion else None},
        dict(prepared.timings))


def configuration(settings: Settings, prepared: Prepared, model: Model) -> Configuration:
    """What `model` is, as its bundle's meta records it: family, parameters, the matrix config
    it trained on with the recency boost it applied (0 for the families without it), and the
    settings its interactions mart was built with."""
    trained = prepared.train.for_model(model.name, trained_boost(model))
    matrix = matrix_meta(settings, trained.boost if trained is not prepared.train else 0.0)
    return Configuration(model.name, model.params(), matrix,
                         interactions_meta(settings.app.events))


def gate_rule(settings: Settings) -> gate.Rule:
    ev = settings.app.evaluation
    return gate.Rule(ev.gate_confidence, ev.gate_min_lift, ev.bootstrap_resamples, ev.seed,
                     ev.gate_min_users)


def serve_popularity(settings: Settings, prepared: Prepared, name: str, decision: gate.Decision,
                     say: Callable[[str], None]) -> str:
    """No champion and a candidate that lost to popularity: popularity becomes the tenant's
    champion (its slots are `model_non_personalized`), registered from the same run."""
    bundle = make_bundle(settings, prepared, Popularity().fit(prepared.full.matrix))
    version = log_model(bundle, name, artifact="popularity")
    client = registry.client(settings.mlflow_tracking_uri)
    reason = f"served as the tenant's model: the personalized candidate {decision.reason}"
    gate.apply(client, name, version, gate.Decision(True, reason, decision.metric,
                                                    decision.popularity or 0.0, None, None))
    say(f"[{prepared.tenant}] {name} v{version}: popularity {reason}")
    return version


def _with_interval(metrics: dict[str, float], name: str) -> str:
    low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
    bounds = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    return f"{metrics[name]:.4f}{bounds}"


__all__ = ["ALS", "InsufficientDataError", "Prepared", "TrainResult", "check_sufficiency",
           "fit_and_evaluate", "prepare", "train_tenant"]
