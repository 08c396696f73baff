"""Train one tenant's model from the warehouse marts, evaluate it, track it in MLflow, gate it."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from sluice import registry
from sluice.bundle import ModelBundle
from sluice.evaluation import evaluate, relevant_items, time_split
from sluice.matrix import build
from sluice.models import ALS, Model, Popularity, make_model
from sluice.settings import Settings
from sluice.warehouse import connect

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


def tenants(warehouse: Path) -> list[str]:
    con = connect(warehouse, read_only=True)
    try:
        return [r[0] for r in con.execute(
            "select distinct tenant from marts.interactions order by 1").fetchall()]
    finally:
        con.close()


def load_interactions(warehouse: Path, tenant: str) -> pd.DataFrame:
    con = connect(warehouse, read_only=True)
    try:
        return con.execute(
            "select user_id, item_id, interaction_type, event_at, weight "
            "from marts.interactions where tenant = ?", [tenant]).df()
    finally:
        con.close()


def load_catalog(warehouse: Path, tenant: str) -> dict[str, dict[str, Any]]:
    import json

    con = connect(warehouse, read_only=True)
    try:
        rows = con.execute(
            "select item_id, fields from marts.items where tenant = ?", [tenant]).fetchall()
    finally:
        con.close()
    return {item_id: json.loads(fields) if fields else {} for item_id, fields in rows}


def check_sufficiency(frame: pd.DataFrame, min_interactions: int, min_users: int) -> None:
    interactions = len(frame)
    users_with_two = int((frame.groupby("user_id").size() >= 2).sum()) if interactions else 0
    if interactions < min_interactions or users_with_two < min_users:
        raise InsufficientDataError(
            f"not enough data to train: {interactions:,} interactions (need {min_interactions:,})"
            f" and {users_with_two:,} users with two or more interactions (need {min_users:,})."
            " Send more events or lower `sufficiency` in config/sluice.yaml."
        )


def _configured_model(settings: Settings) -> Model:
    cfg = settings.app.model
    return make_model(cfg.algorithm, factors=cfg.factors, regularization=cfg.regularization,
                      iterations=cfg.iterations, alpha=cfg.alpha, random_state=cfg.random_state)


def train_tenant(settings: Settings, tenant: str,
                 progress: Callable[[str], None] | None = None) -> TrainResult:
    say = progress or log.info
    frame = load_interactions(settings.warehouse_path, tenant)
    suff = settings.app.sufficiency
    check_sufficiency(frame, suff.min_interactions, suff.min_users_with_two_interactions)

    split = time_split(frame, settings.app.evaluation.holdout_fraction)
    train = build(split.train)
    relevant = relevant_items(train, split.test)
    say(f"[{tenant}] holdout from {split.cutoff}: {len(relevant):,} users to evaluate")
    started = time.perf_counter()
    candidate = _configured_model(settings).fit(train.matrix)
    fit_seconds = time.perf_counter() - started
    metrics = evaluate(candidate, train, relevant)
    baseline = evaluate(Popularity().fit(train.matrix), train, relevant)
    say(f"[{tenant}] ndcg@10 {metrics['ndcg_at_10']:.4f} vs popularity "
        f"{baseline['ndcg_at_10']:.4f}; refitting on all data")

    full = build(frame)
    final = _configured_model(settings).fit(full.matrix)
    popularity = Popularity().fit(full.matrix)
    stats = {
        "users": int(full.shape[0]), "items": int(full.shape[1]),
        "interactions": int(len(frame)), "cells": int(full.matrix.nnz),
        "density": float(full.matrix.nnz / max(full.shape[0] * full.shape[1], 1)),
        "time_min": str(frame["event_at"].min()), "time_max": str(frame["event_at"].max()),
    }
    cutoff_ms = int(pd.Timestamp(frame["event_at"].max()).value // 1_000_000)
    bundle = ModelBundle(
        user_ids=full.user_ids, item_ids=full.item_ids,
        user_factors=final.user_factors, item_factors=final.item_factors,
        user_items=full.matrix, popular=popularity.order[: settings.app.serving.popular_list_size],
        popular_scores=popularity.item_factors[:, 0][popularity.order][
            : settings.app.serving.popular_list_size],
        meta={"tenant": tenant, "algorithm": final.name, "params": final.params(),
              "cutoff_ms": cutoff_ms, "trained_at_ms": int(time.time() * 1000),
              "alpha": getattr(final, "alpha", 1.0),
              "regularization": getattr(final, "regularization", 0.0), "stats": stats},
        catalog=load_catalog(settings.warehouse_path, tenant),
    )
    return _track(settings, tenant, final, bundle, metrics, baseline, stats, fit_seconds)


def _track(settings: Settings, tenant: str, model: Model, bundle: ModelBundle,
           metrics: dict[str, float], baseline: dict[str, float], stats: dict[str, Any],
           fit_seconds: float) -> TrainResult:
    name = settings.registered_model_name(tenant)
    client = registry.client(settings.mlflow_tracking_uri)
    experiment_id = registry.experiment(client, f"sluice-{tenant}", settings.artifact_root)
    run_name = f"{model.name}-{tenant}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({"algorithm": model.name, **model.params(),
                           **{f"weight.{k}": v for k, v in settings.app.events.weights.items()},
                           "holdout_fraction": settings.app.evaluation.holdout_fraction})
        mlflow.log_metrics({**metrics, **{f"popularity.{k}": v for k, v in baseline.items()},
                            "lift_ndcg_at_10": _lift(metrics, baseline, "ndcg_at_10"),
                            "fit_seconds": fit_seconds})
        mlflow.log_dict(stats, "dataset_stats.json")
        mlflow.set_tags({"tenant": tenant, "cutoff_ms": str(bundle.meta["cutoff_ms"])})
        version = _log_model(bundle, name)
        run_id = run.info.run_id
    client.set_registered_model_alias(name, registry.CANDIDATE, version)
    promoted, reason = _gate(client, name, version, metrics, settings.app.evaluation.gate_metric)
    return TrainResult(tenant, name, version, run_id, metrics, baseline, promoted, reason, stats)


def _lift(metrics: dict[str, float], baseline: dict[str, float], key: str) -> float:
    return metrics[key] / baseline[key] if baseline.get(key) else float("inf")


def _log_model(bundle: ModelBundle, name: str) -> str:
    from sluice.pyfunc import recommend_frame

    with tempfile.TemporaryDirectory() as tmp:
        path = bundle.save(Path(tmp) / "bundle")
        example = pd.DataFrame({"user_id": [str(bundle.user_ids[0])], "num_results": [10.0]})
        signature = infer_signature(example, recommend_frame(bundle, example))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("pyfunc_code.py")),
            code_paths=[str(Path(__file__).parent)], artifacts={"bundle": str(path)},
            signature=signature, input_example=example, registered_model_name=name,
            pip_requirements=[f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
                              f"scipy=={__import__('scipy').__version__}"],
        )
    return str(info.registered_model_version)


def _gate(client, name: str, version: str, metrics: dict[str, float],
          metric: str) -> tuple[bool, str]:
    """Move `champion` only if the candidate beats it on `metric`, or if there is none."""
    current = registry.alias_version(client, name, registry.CHAMPION)
    value = metrics.get(metric)
    if value is None:
        raise ValueError(f"evaluation.gate_metric: {metric!r} is not a computed metric")
    if current is None:
        promoted, reason = True, f"no champion yet; {metric}={value:.4f}"
    else:
        champion_value = client.get_run(current.run_id).data.metrics.get(metric)
        promoted = champion_value is None or value > champion_value
        reason = (f"{metric} {value:.4f} vs champion v{current.version} "
                  f"{(champion_value or float('nan')):.4f}")
    client.set_model_version_tag(name, version, "validation_status",
                                 "passed" if promoted else "failed")
    client.set_model_version_tag(name, version, "gate_reason", reason)
    if promoted:
        client.set_registered_model_alias(name, registry.CHAMPION, version)
    log.info("model %s v%s %s: %s", name, version, "promoted" if promoted else "kept out", reason)
    return promoted, reason


__all__ = ["ALS", "InsufficientDataError", "TrainResult", "check_sufficiency", "train_tenant"]
