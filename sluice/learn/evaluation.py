"""Honest offline evaluation: a held-out split, ranking over all items, seen items excluded.

Three protocols: `time` holds out the last part of the whole history by time (no model sees
the future), `leave_last_out` holds out each user's last interactions and `per_user` each
user's latest fraction (every user with enough history is evaluated; other users' later
events may be in training). `decisive_split` falls back from `time` when it evaluates too
few users to decide anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.learn.matrix import InteractionMatrix, build, positions_from_end
from sluice.learn.models import Model

K_VALUES = (10, 20)
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp        # time: the boundary; otherwise the latest training event
    protocol: str = "time"
    note: str = ""              # why this protocol (and window) was used


def time_split(frame: pd.DataFrame, holdout_fraction: float) -> Split:
    """The last `holdout_fraction` of interactions by time is the test set."""
    cutoff = frame["event_at"].quantile(1.0 - holdout_fraction)
    train = frame[frame["event_at"] < cutoff]
    test = frame[frame["event_at"] >= cutoff]
    return Split(train, test, cutoff, "time")


def leave_last_out_split(frame: pd.DataFrame, leave_out: int = 1) -> Split:
    """Each user's last `leave_out` interactions are the test set, for users with more.

    Ties in time (bulk imports, ratings saved in one second) are broken by a hash of the
    (user, item) ids: the same rows whatever the row order, and, unlike the ids' order,
    unrelated to which items are popular.
    """
    from_end, sizes = positions_from_end(frame)
    held = (from_end < leave_out) & (sizes > leave_out)
    train, test = frame[~held], frame[held]
    return Split(train, test, train["event_at"].max(), "leave_last_out")


def per_user_split(frame: pd.DataFrame, fraction: float) -> Split:
    """Each user's latest `fraction` of interactions (at least one) after their earlier
    history is the test set, for users with two or more; ties broken as in leave last out."""
    from_end, sizes = positions_from_end(frame)
    held = (from_end < np.maximum(1, np.floor(sizes * fraction))) & (sizes > 1)
    train, test = frame[~held], frame[held]
    return Split(train, test, train["event_at"].max(), "per_user")


PROTOCOLS = ("time", "leave_last_out", "per_user")


def make_split(frame: pd.DataFrame, protocol: str, holdout_fraction: float = 0.1,
               leave_out: int = 1) -> Split:
    if protocol == "time":
        return time_split(frame, holdout_fraction)
    if protocol == "leave_last_out":
        return leave_last_out_split(frame, leave_out)
    if protocol == "per_user":
        return per_user_split(frame, holdout_fraction)
    raise ValueError(f"evaluation.protocol: unknown {protocol!r}, use {', '.join(PROTOCOLS)}")


@dataclass
class Holdout:
    split: Split
    train: InteractionMatrix
    relevant: dict[int, np.ndarray]


def decisive_split(frame: pd.DataFrame, protocol: str, holdout_fraction: float, leave_out: int,
                   min_users: int, widen_to: float, config: Any = None) -> Holdout:
    """The configured split, unless it is `time` and evaluates fewer than `min_users`: then
    the time window widens to `widen_to`, and if that is still short each user's latest
    `holdout_fraction` is held out instead. `split.note` says which was used and why."""

    def holdout(split: Split) -> Holdout:
        train = build(split.train, config=config)
        return Holdout(split, train, relevant_items(train, split.test))

    chosen = holdout(make_split(frame, protocol, holdout_fraction, leave_out))
    found = len(chosen.relevant)
    chosen.split.note = f"{protocol} split as configured: {found:,} users"
    if protocol != "time" or found >= min_users:
        return chosen
    why = (f"the last {holdout_fraction:.0%} by time evaluates {found:,} users, fewer than "
           f"evaluation.min_users ({min_users:,})")
    tried = [chosen]
    if widen_to > holdout_fraction:
        wide = holdout(time_split(frame, widen_to))
        wide.split.note = f"{why}; widened to the last {widen_to:.0%}: {len(wide.relevant):,} users"
        if len(wide.relevant) >= min_users:
            return wide
        why = f"{why}; the last {widen_to:.0%} evaluates {len(wide.relevant):,}"
        tried.append(wide)
    user = holdout(per_user_split(frame, holdout_fraction))
    user.split.note = (f"{why}; switched to a per-user temporal split (each user's latest "
                       f"{holdout_fraction:.0%}): {len(user.relevant):,} users")
    tried.append(user)
    best = max(tried, key=lambda h: len(h.relevant))  # the first on a tie: the least leaky
    if best is not user:
        best.split.note = f"{user.split.note}; kept the {best.split.protocol} split with more"
    return best


def relevant_items(train: InteractionMatrix, test: pd.DataFrame) -> dict[int, np.ndarray]:
    """Per known user, the test items they had not interacted with in training."""
    held = build(test.assign(weight=1.0), train.user_ids, train.item_ids).matrix
    held = held - held.multiply(train.matrix > 0)
    held.eliminate_zeros()
    held = held.tocsr()
    return {int(u): held.indices[held.indptr[u]:held.indptr[u + 1]]
            for u in np.flatnonzero(np.diff(held.indptr))}


Ranker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""For a batch of training user rows and a k: the top-k item ids and their scores, best
first, the user's training items left out; a score at or below NO_SCORE marks no item."""

NO_SCORE = float(np.finfo(np.float32).min)  # what implicit's topk gives a filtered item


def factor_ranker(user_vectors: Callable[[np.ndarray], np.ndarray], item_factors: np.ndarray,
                  seen: sp.csr_matrix, filter_items: np.ndarray | None = None) -> Ranker:
    """Top-k by dot product through implicit's blocked, multi-threaded top-k."""
    from implicit.cpu.topk import topk

    items = np.ascontiguousarray(item_factors, dtype=np.float32)
    seen = seen.tocsr().astype(np.float32)

    def rank(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = np.ascontiguousarray(user_vectors(users), dtype=np.float32)
        return topk(items, query, k, filter_query_items=seen[users],
                    filter_items=filter_items)

    return rank


def popular_ranker(item_scores: np.ndarray, seen: sp.csr_matrix) -> Ranker:
    """Top-k of one ranking shared by every user: the first k of it each user has not seen."""
    item_scores = np.asarray(item_scores, dtype=np.float32).ravel()
    order = np.argsort(-item_scores, kind="stable")
    n_items = len(order)
    seen = seen.tocsr()

    def rank(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = seen[users]
        counts = np.diff(rows.indptr)
        depth = min(n_items, k + int(counts.max(initial=0)))
        head = order[:depth]
        index = np.arange(len(users), dtype=np.int64)
        blocked = np.isin(index[:, None] * n_items + head[None, :],
                          np.repeat(index, counts) * n_items + rows.indices)
        pick = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        ids = head[pick]
        scores = np.where(np.take_along_axis(blocked, pick, axis=1), NO_SCORE, item_scores[ids])
        return ids, scores.astype(np.float32)

    return rank


def model_ranker(model: Model, train: InteractionMatrix) -> Ranker:
    if model.personalized:
        return factor_ranker(lambda users: model.user_factors[users], model.item_factors,
                             train.matrix)
    # one ranking for everyone: no dot products needed
    return popular_ranker(model.scores(np.ones((1, model.item_factors.shape[1]),
                                               dtype=np.float32))[0], train.matrix)


def score_model(model: Model, train: InteractionMatrix, relevant: dict[int, np.ndarray],
                k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> Scored:
    return score_ranker(model_ranker(model, train), train.matrix.shape[1], relevant, k_values,
                        batch)


def evaluate(model: Model, train: InteractionMatrix, relevant: dict[int, np.ndarray],
             k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    return score_model(model, train, relevant, k_values, batch).means()


def evaluate_ranker(ranker: Ranker, n_items: int, relevant: dict[int, np.ndarray],
                    k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    return score_ranker(ranker, n_items, relevant, k_values, batch).means()


@dataclass
class Scored:
    """Per evaluated user (sorted training rows): each metric, and the top list shown.

    `top` holds the first 10 (or first k) item indices per user, -1 where nothing was ranked:
    what coverage and the beyond-accuracy measures read.
    """

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    top: np.ndarray
    n_items: int

    def means(self) -> dict[str, float]:
        """precision, recall, NDCG, MAP and hit rate at each k; catalog coverage of `top`."""
        n = max(len(self.users), 1)
        metrics = {name: float(values.sum()) / n for name, values in self.per_user.items()}
        shown = np.unique(self.top[self.top >= 0])
        metrics["catalog_coverage"] = len(shown) / max(self.n_items, 1)
        metrics["evaluated_users"] = float(len(self.users))
        return metrics


def score_ranker(ranker: Ranker, n_items: int, relevant: dict[int, np.ndarray],
                 k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> Scored:
    """Every metric per user; `Scored.means()` is the usual table."""
    users = np.array(sorted(relevant), dtype=np.int64)
    max_k = max(k_values)
    coverage_k = 10 if 10 in k_values else k_values[0]
    parts: dict[str, list[np.ndarray]] = {f"{m}_at_{k}": [] for k in k_values for m in METRICS}
    tops: list[np.ndarray] = []
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    ideal = np.cumsum(discounts)  # ideal DCG of m relevant items: ideal[m - 1]
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        ids, scores = ranker(chunk, min(max_k, n_items))
        valid = np.isfinite(scores) & (scores > NO_SCORE) & (ids >= 0)
        truth = [relevant[int(u)] for u in chunk]
        n_rel = np.array([len(t) for t in truth], dtype=np.int64)
        rows = np.arange(len(chunk), dtype=np.int64)
        relevant_keys = np.repeat(rows, n_rel) * n_items + np.concatenate(truth)
        hits = np.isin(rows[:, None] * n_items + np.where(valid, ids, 0), relevant_keys) & valid
        top = np.full((len(chunk), coverage_k), -1, dtype=np.int64)
        width = min(coverage_k, ids.shape[1])
        top[:, :width] = np.where(valid[:, :width], ids[:, :width], -1)
        tops.append(top)
        for k in k_values:
            h = hits[:, :k]
            n_hits = h.sum(axis=1)
            at_most = np.minimum(n_rel, k)
            precisions = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
            parts[f"precision_at_{k}"].append(n_hits / k)
            parts[f"recall_at_{k}"].append(n_hits / n_rel)
            parts[f"ndcg_at_{k}"].append((h * discounts[:h.shape[1]]).sum(axis=1)
                                         / ideal[at_most - 1])
            parts[f"map_at_{k}"].append((precisions * h).sum(axis=1) / at_most)
            parts[f"hit_rate_at_{k}"].append((n_hits > 0).astype(np.float64))
    per_user = {name: np.concatenate(p).astype(np.float64) if p else np.zeros(0)
                for name, p in parts.items()}
    top = np.vstack(tops) if tops else np.zeros((0, coverage_k), dtype=np.int64)
    return Scored(users, per_user, top, n_items)
