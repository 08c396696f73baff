"""Off-policy estimates: how a candidate ranking would have done on the answers the champion
served, from the logged slots, their propensities and their clicks.

Per slot (position-based): a logged slot (answer, position k, item a, propensity p, click c)
weighs w = 1[the candidate puts a at k] / p. IPS is mean(w * c) over the slots, the
self-normalised IPS (SNIPS) sum(w * c) / sum(w); per answer both are the per-slot value times
the mean slots per answer. Intervals are percentile bootstraps that resample whole answers
(slots of one answer are not independent), and the effective sample size counts the same
unit: with W_a the sum of the weights of answer a's slots, ESS = sum(W)^2 / sum(W^2), the
number of answers of equal weight that would carry as much (`ess_slots` is the same over
slots, sum(w)^2 / sum(w^2), which counts an answer's matching slots as independent draws). An
estimate whose effective sample is below `min_ess` answers is returned all the same, marked
`small_sample`. With `clip` (evaluation.off_policy_clip, off by default) each weight is
min(w, clip): less variance, for a bias (IPS reads low where rare items were explored); the
estimate then carries `clip` and `clipped_share` (the share of matching slots capped). When no
logged slot matches the candidate there is nothing to weigh: no IPS or SNIPS is given (a zero
with a zero-width interval would read as a measured click-through of nothing), only the
match rate and the ESS of 0. SNIPS is undefined in a resample that draws no matching slot;
such resamples are left out of its interval rather than counted as a click-through of zero.

The exploration of sluice.serve.exploration supports, at position k, the champion's k-th item
and its pool: a candidate that puts an item elsewhere is weighed 0 there (IPS reads it as no
click); `match_rate` says how much of the log matches the candidate at all.

Interleaved answers (experiments of kind interleaving) are not read: their model_version names
both arms' versions (`3+4`), never the champion's alone, and their propensities are team
draft's (sluice.serve.arms), a policy that mixes two models rather than the champion's.

Written in numpy rather than with `obp`: obp needs torch and matplotlib, is pinned to old
releases and has no release since 2023; these estimators are a few lines each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from sluice.vocabulary import MODEL_NON_PERSONALIZED, MODEL_PERSONALIZED
from sluice.warehouse.engine import MissingTable, Warehouse, as_warehouse

if TYPE_CHECKING:
    from sluice.learn.matrix import InteractionMatrix
    from sluice.learn.model_base import Model

MIN_ESS = 100.0
BOOTSTRAPS = 500
LEVEL = 0.95
BATCH = 1024  # users scored at once


def log(warehouse: Warehouse | Path, tenant: str, champion_version: str | None, model: Model,
        train: InteractionMatrix, say: Callable[[str], None],
        clip: float | None = None) -> dict[str, Any] | None:
    """Inside the train run: the candidate's estimates as metrics `off_policy.*` beside the
    offline ones (a small effective sample is marked, not hidden)."""
    found = for_candidate(warehouse, tenant, champion_version, model, train, clip=clip)
    if found is None:
        return None
    mlflow.log_metrics({f"off_policy.{k}": float(v) for k, v in found.items()})
    if "snips_ctr" not in found:
        say(f"[{tenant}] off-policy on champion v{champion_version}'s {found['answers']:,} "
            "explored answers: no logged slot matches the candidate's ranking, no estimate")
        return found
    mark = " (small effective sample)" if found["small_sample"] else ""
    if clip is not None:
        mark += (f"; weights clipped at {clip:g} ({found['clipped_share']:.1%} of matching "
                 "slots)")
    say(f"[{tenant}] off-policy on champion v{champion_version}'s {found['answers']:,} explored "
        f"answers: SNIPS CTR {found['snips_ctr']:.4f} [{found['snips_ctr_low']:.4f}, "
        f"{found['snips_ctr_high']:.4f}], ESS {found['ess']:.0f}{mark}")
    return found


def for_candidate(warehouse: Warehouse | Path, tenant: str, champion_version: str | None,
                  model: Model, train: InteractionMatrix,
                  min_ess: float = MIN_ESS, clip: float | None = None) -> dict[str, Any] | None:
    """The candidate's estimates on the explored answers the champion served; None when
    there is no champion or it served no answer with exploration."""
    if champion_version is None:
        return None
    logged = load_logged(warehouse, tenant, champion_version)
    if logged.empty:
        return None
    return estimate(logged, candidate_targets(model, train, logged), min_ess=min_ess, clip=clip)


def load_logged(warehouse: Warehouse | Path, tenant: str, model_version: str) -> pd.DataFrame:
    """The model-tier slots of the answers `model_version` served with exploration."""
    try:
        return as_warehouse(warehouse).frame(
            "select recommendation_id, user_id, position, item_id, propensity, is_clicked "
            "from marts.slot_propensities where tenant = ? and model_version = ? "
            "and exploration_pool > 0 and recommendation_source in (?, ?) "
            "order by recommendation_id, position",
            [tenant, model_version, MODEL_PERSONALIZED, MODEL_NON_PERSONALIZED])
    except MissingTable:  # a warehouse built before the mart existed
        return pd.DataFrame()


def candidate_targets(model: Model, train: InteractionMatrix, logged: pd.DataFrame) -> pd.Series:
    """The candidate's item at each logged slot's position in its own ranking of the user's
    unseen items; None where it does not know the user (weighed 0: no estimate there)."""
    users = pd.Index(train.user_ids).get_indexer(logged["user_id"].astype(str))
    known = np.unique(users[users >= 0])
    positions = logged["position"].to_numpy(dtype=np.int64) - 1
    depth = int(positions.max()) + 1
    top = np.concatenate([model.recommend(known[s:s + BATCH], train.matrix, n=depth)
                          for s in range(0, len(known), BATCH)]) if len(known) else (
        np.empty((0, depth), dtype=np.int64))
    target = np.full(len(logged), None, dtype=object)
    seen = users >= 0
    picks = top[np.searchsorted(known, users[seen]), positions[seen]]
    target[np.flatnonzero(seen)] = np.where(picks >= 0, train.item_ids[np.maximum(picks, 0)],
                                            None)
    return pd.Series(target, index=logged.index)


def estimate(logged: pd.DataFrame, target: pd.Series, *, min_ess: float = MIN_ESS,
             bootstraps: int = BOOTSTRAPS, seed: int = 0,
             clip: float | None = None) -> dict[str, Any]:
    """IPS and SNIPS of the candidate whose item per logged slot is `target` (aligned with
    `logged`, which has recommendation_id, item_id, propensity and is_clicked); with `clip`,
    each slot's weight is capped there."""
    if logged.empty:
        return {"slots": 0, "answers": 0, "ess": 0.0, "small_sample": True}
    propensity = logged["propensity"].to_numpy(dtype=float)
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise ValueError("propensities must be in (0, 1]: rebuild the marts (dbt tests them)")
    match = logged["item_id"].to_numpy() == target.to_numpy()
    weight = match / propensity
    clipped = {}
    if clip is not None:
        capped = weight > clip
        weight = np.minimum(weight, clip)
        clipped = {"clip": float(clip),
                   "clipped_share": float(capped.sum() / match.sum()) if match.any() else 0.0}
    click = logged["is_clicked"].to_numpy(dtype=float)
    answers, group = np.unique(logged["recommendation_id"].to_numpy(), return_inverse=True)
    sums = np.stack([np.bincount(group, weights=w, minlength=len(answers))
                     for w in (weight * click, weight, np.ones_like(weight))])
    per_answer = len(logged) / len(answers)
    ess, ess_slots = (_ess(sums[1]), _ess(weight)) if weight.any() else (0.0, 0.0)
    out = {"slots": len(logged), "answers": len(answers), "slots_per_answer": per_answer,
           "match_rate": float(match.mean()), "logged_ctr": float(click.mean()),
           "ess": ess, "ess_slots": ess_slots, "small_sample": ess < min_ess, **clipped}
    if not weight.any():  # nothing the candidate would have shown was logged: no estimate
        return out
    ips, snips = _values(sums[None, :, :].sum(axis=2))
    low, high = _bootstrap(sums, bootstraps, seed)
    out |= {"ips_ctr": ips[0], "ips_ctr_low": low[0], "ips_ctr_high": high[0],
            "snips_ctr": snips[0], "snips_ctr_low": low[1], "snips_ctr_high": high[1]}
    for name in ("ips", "snips"):
        for tail in ("", "_low", "_high"):
            out[f"{name}_clicks_per_answer{tail}"] = out[f"{name}_ctr{tail}"] * per_answer
    return out


def _ess(weights: np.ndarray) -> float:
    """Kish's effective sample size of `weights` (per answer, or per slot)."""
    return float(weights.sum() ** 2 / (weights ** 2).sum())


def _values(totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IPS and SNIPS from (resample, [sum w*c, sum w, slots]) totals."""
    weighted, weights, slots = totals[:, 0], totals[:, 1], totals[:, 2]
    ips = weighted / slots
    snips = np.divide(weighted, weights, out=np.full_like(weighted, np.nan), where=weights > 0)
    return ips, snips


def _bootstrap(sums: np.ndarray, bootstraps: int, seed: int) -> tuple[list[float], list[float]]:
    """Percentile intervals of IPS and SNIPS over answers drawn with replacement."""
    rng = np.random.default_rng(seed)
    n = sums.shape[1]
    ips, snips = [], []
    for start in range(0, bootstraps, 50):  # in chunks: memory stays at 50 x answers
        counts = rng.multinomial(n, np.full(n, 1 / n), size=min(50, bootstraps - start))
        a, b = _values(counts @ sums.T)
        ips.append(a)
        snips.append(b)
    tails = [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100]
    qi, qs = np.percentile(np.concatenate(ips), tails), np.nanpercentile(np.concatenate(snips),
                                                                          tails)
    return [float(qi[0]), float(qs[0])], [float(qi[1]), float(qs[1])]
