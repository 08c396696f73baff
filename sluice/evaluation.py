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

from sluice.matrix import InteractionMatrix, build
from sluice.models import Model
from sluice.scoring import top_k_rows

K_VALUES = (10, 20)
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")
top_k = top_k_rows


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
    """Each user's last `leave_out` interactions are the test set, for users with more."""
    # item_id breaks ties in time, so the same data always holds out the same rows
    ordered = frame.sort_values(["user_id", "event_at", "item_id"], kind="stable")
    from_end = ordered.groupby("user_id").cumcount(ascending=False)
    size = ordered.groupby("user_id")["user_id"].transform("size")
    held = (from_end < leave_out) & (size > leave_out)
    train, test = ordered[~held], ordered[held]
    return Split(train, test, train["event_at"].max(), "leave_last_out")


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
    return {u: held.indices[held.indptr[u]:held.indptr[u + 1]]
            for u in np.flatnonzero(np.diff(held.indptr))}


Scorer = Callable[[np.ndarray], np.ndarray]
"""Scores over the training item space for a batch of training user rows."""


def model_scorer(model: Model) -> Scorer:
    return lambda users: model.scores(model.user_factors[users])


def evaluate(model: Model, train: InteractionMatrix, relevant: dict[int, np.ndarray],
             k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    return evaluate_scorer(model_scorer(model), train.matrix, relevant, k_values, batch)


def evaluate_scorer(scorer: Scorer, seen: sp.csr_matrix, relevant: dict[int, np.ndarray],
                    k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    """precision, recall, NDCG, MAP and hit rate at each k, and catalog coverage at the first."""
    users = np.array(sorted(relevant), dtype=np.int64)
    max_k = max(k_values)
    sums = {f"{m}_at_{k}": 0.0 for k in k_values for m in METRICS}
    recommended: set[int] = set()
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        scores = np.array(scorer(chunk), dtype=np.float32)
        rows = seen[chunk]
        scores[np.repeat(np.arange(len(chunk)), np.diff(rows.indptr)), rows.indices] = -np.inf
        ranked = top_k_rows(scores, max_k)
        ranked_scores = np.take_along_axis(scores, ranked, axis=1)
        for row, row_scores, u in zip(ranked, ranked_scores, chunk, strict=True):
            truth = relevant[int(u)]
            hits = np.isin(row, truth) & np.isfinite(row_scores)
            recommended.update(row[:k_values[0]][np.isfinite(row_scores[:k_values[0]])].tolist())
            for k in k_values:
                h = hits[:k]
                n_hits = h.sum()
                ideal = discounts[:min(len(truth), k)].sum()
                precisions = np.cumsum(h) / np.arange(1, len(h) + 1)
                sums[f"precision_at_{k}"] += n_hits / k
                sums[f"recall_at_{k}"] += n_hits / len(truth)
                sums[f"ndcg_at_{k}"] += (discounts[:len(h)] * h).sum() / ideal
                sums[f"map_at_{k}"] += (precisions * h).sum() / min(len(truth), k)
                sums[f"hit_rate_at_{k}"] += float(n_hits > 0)
    n = max(len(users), 1)
    metrics = {name: value / n for name, value in sums.items()}
    metrics["catalog_coverage"] = len(recommended) / max(seen.shape[1], 1)
    metrics["evaluated_users"] = float(len(users))
    return metrics
