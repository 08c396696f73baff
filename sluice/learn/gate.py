"""The champion gate: a candidate takes alias `champion` only if it beats it on the same holdout.

The current champion's bundle is scored on the candidate's holdout the way serving would use
it: every evaluated user folded in from their training history, ranking over the items both
models know. A champion trained after part of that holdout has seen it, so only the holdout
events after its cutoff are used then (both models re-scored on them); with too few users
left, or a champion that cannot be loaded, the gate falls back to the metric the champion's
own run logged, and says so.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sluice.bundle import ModelBundle
from sluice.learn import registry, versions
from sluice.learn.evaluation import (
    K_VALUES,
    Ranker,
    evaluate,
    evaluate_ranker,
    factor_ranker,
    popular_ranker,
    relevant_items,
)
from sluice.learn.matrix import InteractionMatrix
from sluice.learn.models import Model, als_fold_in, als_gram

log = logging.getLogger(__name__)

PASSED, FAILED = "passed", "failed"


@dataclass
class ChampionScore:
    version: str
    run_id: str | None
    logged: float | None               # the metric its own run logged, on its own holdout
    on_holdout: float | None           # its bundle on this run's holdout, None when not scored
    candidate_on_same: float | None    # the candidate on that same (maybe narrowed) holdout
    users: int                         # evaluated users behind on_holdout
    note: str                          # how it was scored, or why it was not


@dataclass
class Decision:
    promoted: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None
    champion_version: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bundle_ranker(bundle: ModelBundle, train: InteractionMatrix) -> Ranker:
    """Top-k over `train`'s items for `train`'s user rows, by a bundle trained elsewhere.

    Users are folded in from their `train` history as serving would (bundle meta fold_in,
    alpha, regularization); items the bundle does not know are never recommended.
    """
    to_bundle = pd.Index(bundle.item_ids).get_indexer(train.item_ids)
    known = to_bundle >= 0
    items = np.zeros((len(train.item_ids), bundle.item_factors.shape[1]), dtype=np.float32)
    items[known] = bundle.item_factors[to_bundle[known]]
    meta = bundle.meta
    kind = meta.get("fold_in", "als")
    gram = (als_gram(bundle.item_factors, float(meta.get("regularization", 0.0)))
            if kind == "als" else None)
    alpha = float(meta.get("alpha", 1.0))
    rows = train.matrix.tocsr()

    def user_vector(u: int) -> np.ndarray:
        start, end = rows.indptr[u], rows.indptr[u + 1]
        picked, weights = to_bundle[rows.indices[start:end]], rows.data[start:end]
        keep = picked >= 0
        picked, weights = picked[keep], weights[keep]
        if kind == "history":
            vector = np.zeros(bundle.item_factors.shape[1], dtype=np.float32)
            np.add.at(vector, picked, weights)
            return vector
        if kind == "constant":
            return np.ones(bundle.item_factors.shape[1], dtype=np.float32)
        assert gram is not None
        return als_fold_in(bundle.item_factors, gram, picked, weights, alpha)

    def vectors(users: np.ndarray) -> np.ndarray:
        return np.vstack([user_vector(int(u)) for u in users])

    unknown = np.flatnonzero(~known)
    if kind == "constant":  # one ranking for everyone (popularity)
        shared = items @ np.ones(items.shape[1], dtype=np.float32)
        shared[unknown] = -np.inf
        return popular_ranker(shared, rows)
    return factor_ranker(vectors, items, rows, unknown if len(unknown) else None)


def score_champion(tracking_uri: str, name: str, metric: str, candidate: Model,
                   train: InteractionMatrix, test: pd.DataFrame,
                   relevant: dict[int, np.ndarray], candidate_metrics: dict[str, float],
                   min_users: int, k_values: tuple[int, ...] = K_VALUES) -> ChampionScore | None:
    """The current champion on this run's holdout; None when there is no champion."""
    client = registry.client(tracking_uri)
    current = registry.alias_version(client, name, registry.CHAMPION)
    if current is None:
        return None
    logged = None
    if current.run_id:
        logged = client.get_run(current.run_id).data.metrics.get(metric)
    score = ChampionScore(str(current.version), current.run_id, logged, None, None, 0, "")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            found = registry.download_alias(tracking_uri, name, registry.CHAMPION, Path(tmp))
            assert found is not None
            bundle = ModelBundle.load(found.local_path)
    except Exception as exc:  # a champion we cannot read must not block training
        score.note = f"its bundle could not be loaded ({type(exc).__name__}: {exc})"
        return score
    cutoff_ms = int(bundle.meta.get("cutoff_ms", 0))
    event_ms = test["event_at"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    fresh = event_ms > cutoff_ms
    users_on, candidate_value = relevant, candidate_metrics[metric]
    if not fresh.all():
        users_on = relevant_items(train, test[fresh])
        seen_share = 1.0 - fresh.mean()
        if len(users_on) < min_users:
            score.note = (f"it was trained on {seen_share:.0%} of this holdout, and the rest has "
                          f"{len(users_on)} users (evaluation.gate_min_users is {min_users})")
            return score
        candidate_value = evaluate(candidate, train, users_on, k_values)[metric]
        score.note = (f"on the {1 - seen_share:.0%} of this holdout after its cutoff "
                      f"({len(users_on)} users)")
    else:
        score.note = f"on this run's holdout ({len(users_on)} users)"
    champion_metrics = evaluate_ranker(bundle_ranker(bundle, train), len(train.item_ids),
                                       users_on, k_values)
    if metric not in champion_metrics:
        score.note = f"{metric} is not a computed metric"
        return score
    score.on_holdout, score.candidate_on_same = champion_metrics[metric], candidate_value
    score.users = len(users_on)
    return score


def decide(metric: str, candidate_metrics: dict[str, float],
           champion: ChampionScore | None) -> Decision:
    """Promote when there is no champion, or when the candidate is strictly better."""
    value = candidate_metrics.get(metric)
    if value is None:
        raise ValueError(f"evaluation.gate_metric: {metric!r} is not a computed metric")
    if champion is None:
        return Decision(True, f"no champion yet; {metric}={value:.4f}", metric, value, None, None)
    if champion.on_holdout is not None and champion.candidate_on_same is not None:
        mine, theirs = champion.candidate_on_same, champion.on_holdout
        how = f"both scored {champion.note}"
    elif champion.logged is not None:
        mine, theirs = value, champion.logged
        how = (f"champion not scored here ({champion.note}): compared with the {metric} its "
               f"own run logged")
    else:
        return Decision(True, f"champion v{champion.version} has no {metric} to compare "
                        f"({champion.note}); {metric}={value:.4f}", metric, value, None,
                        champion.version)
    promoted = mine > theirs
    verdict = "beats" if promoted else "does not beat"
    reason = (f"{metric} {mine:.4f} {verdict} champion v{champion.version} {theirs:.4f}; {how}")
    return Decision(promoted, reason, metric, mine, theirs, champion.version)


def apply(client: Any, name: str, version: str, decision: Decision) -> None:
    """Tag the version with the outcome and move `champion` when it passed."""
    client.set_model_version_tag(name, version, "validation_status",
                                 PASSED if decision.promoted else FAILED)
    client.set_model_version_tag(name, version, "gate_reason", decision.reason[:5000])
    if decision.promoted:  # recording the champion it replaces, for `sluice rollback`
        versions.move_champion(client, name, version, decision.reason)
    log.debug("model %s v%s %s: %s", name, version,  # training reports it, once
              "promoted" if decision.promoted else "kept out", decision.reason)
