"""Honest offline evaluation: a held-out split, ranking over all items, seen items excluded.

Two protocols: `time` holds out the last part of the whole history by time (no model sees
the future), `leave_last_out` holds out each user's last interactions (every user with
enough history is evaluated; other users' later events may be in training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.learn.matrix import InteractionMatrix, build
from sluice.learn.models import Model

K_VALUES = (10, 20)
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp        # time: the boundary; leave_last_out: the latest training event
    protocol: str = "time"


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
    user = value_codes(frame["user_id"])
    tie = value_hash(frame["user_id"]) ^ (value_hash(frame["item_id"]) * np.uint64(31))
    at = frame["event_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.lexsort((tie, at, user))  # by user, then time, then the tie hash
    by_user = user[order]
    starts = np.r_[True, by_user[1:] != by_user[:-1]] if len(order) else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group) if len(order) else np.zeros(0, np.int64)
    from_end = sizes[group] - 1 - (np.arange(len(order)) - np.flatnonzero(starts)[group])
    held = np.zeros(len(frame), dtype=bool)
    held[order[(from_end < leave_out) & (sizes[group] > leave_out)]] = True
    train, test = frame[~held], frame[held]
    return Split(train, test, train["event_at"].max(), "leave_last_out")


def value_codes(column: pd.Series) -> np.ndarray:
    """Equal values, equal codes (categorical codes as they are, else factorized)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.int64)
    return pd.factorize(column)[0]


def value_hash(column: pd.Series) -> np.ndarray:
    """A hash of each value's text, computed once per distinct value."""
    values = column if isinstance(column.dtype, pd.CategoricalDtype) else column.astype("category")
    categories = np.asarray(values.cat.categories.astype(str), dtype=object)
    hashes = pd.util.hash_array(categories) if len(categories) else np.zeros(1, np.uint64)
    return hashes[values.cat.codes.to_numpy().clip(min=0)]


def make_split(frame: pd.DataFrame, protocol: str, holdout_fraction: float = 0.1,
               leave_out: int = 1) -> Split:
    if protocol == "time":
        return time_split(frame, holdout_fraction)
    if protocol == "leave_last_out":
        return leave_last_out_split(frame, leave_out)
    raise ValueError(f"evaluation.protocol: unknown {protocol!r}, use time or leave_last_out")


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


def evaluate(model: Model, train: InteractionMatrix, relevant: dict[int, np.ndarray],
             k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    if model.personalized:
        ranker = factor_ranker(lambda users: model.user_factors[users], model.item_factors,
                               train.matrix)
    else:  # one ranking for everyone: no dot products needed
        ranker = popular_ranker(model.scores(np.ones((1, model.item_factors.shape[1]),
                                                     dtype=np.float32))[0], train.matrix)
    return evaluate_ranker(ranker, train.matrix.shape[1], relevant, k_values, batch)


def evaluate_ranker(ranker: Ranker, n_items: int, relevant: dict[int, np.ndarray],
                    k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    """precision, recall, NDCG, MAP and hit rate at each k; catalog coverage at 10 (or first k).

    Coverage is the share of all items that appear in at least one user's top list.
    """
    users = np.array(sorted(relevant), dtype=np.int64)
    max_k = max(k_values)
    coverage_k = 10 if 10 in k_values else k_values[0]
    sums = dict.fromkeys((f"{m}_at_{k}" for k in k_values for m in METRICS), 0.0)
    recommended = np.zeros(n_items, dtype=bool)
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
        recommended[ids[:, :coverage_k][valid[:, :coverage_k]]] = True
        for k in k_values:
            h = hits[:, :k]
            n_hits = h.sum(axis=1)
            at_most = np.minimum(n_rel, k)
            precisions = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
            sums[f"precision_at_{k}"] += float((n_hits / k).sum())
            sums[f"recall_at_{k}"] += float((n_hits / n_rel).sum())
            sums[f"ndcg_at_{k}"] += float(((h * discounts[:h.shape[1]]).sum(axis=1)
                                           / ideal[at_most - 1]).sum())
            sums[f"map_at_{k}"] += float(((precisions * h).sum(axis=1) / at_most).sum())
            sums[f"hit_rate_at_{k}"] += float((n_hits > 0).sum())
    n = max(len(users), 1)
    metrics = {name: value / n for name, value in sums.items()}
    metrics["catalog_coverage"] = float(recommended.sum()) / max(n_items, 1)
    metrics["evaluated_users"] = float(len(users))
    return metrics
