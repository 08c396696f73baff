"""Honest offline evaluation: a time-based holdout, ranking over all items, seen items excluded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.matrix import InteractionMatrix, build
from sluice.models import Model

K_VALUES = (10, 20)


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp


def time_split(frame: pd.DataFrame, holdout_fraction: float) -> Split:
    """The last `holdout_fraction` of interactions by time is the test set."""
    cutoff = frame["event_at"].quantile(1.0 - holdout_fraction)
    train = frame[frame["event_at"] < cutoff]
    test = frame[frame["event_at"] >= cutoff]
    return Split(train, test, cutoff)


def relevant_items(train: InteractionMatrix, test: pd.DataFrame) -> dict[int, np.ndarray]:
    """Per known user, the test items they had not interacted with in training."""
    held = build(test.assign(weight=1.0), train.user_ids, train.item_ids).matrix
    held = held - held.multiply(train.matrix > 0)
    held.eliminate_zeros()
    held = held.tocsr()
    return {u: held.indices[held.indptr[u]:held.indptr[u + 1]]
            for u in np.flatnonzero(np.diff(held.indptr))}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the k best scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def evaluate(model: Model, train: InteractionMatrix, relevant: dict[int, np.ndarray],
             k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    users = np.array(sorted(relevant), dtype=np.int64)
    max_k = max(k_values)
    sums = {f"{m}_at_{k}": 0.0 for k in k_values
            for m in ("precision", "recall", "ndcg", "map", "hit_rate")}
    recommended: set[int] = set()
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    seen: sp.csr_matrix = train.matrix
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        scores = model.scores(model.user_factors[chunk]).astype(np.float32)
        rows = seen[chunk]
        scores[np.repeat(np.arange(len(chunk)), np.diff(rows.indptr)), rows.indices] = -np.inf
        ranked = top_k(scores, max_k)
        for row, u in zip(ranked, chunk, strict=True):
            truth = relevant[int(u)]
            hits = np.isin(row, truth)
            recommended.update(row[:k_values[0]].tolist())
            for k in k_values:
                h = hits[:k]
                n_hits = h.sum()
                ideal = discounts[:min(len(truth), k)].sum()
                precisions = np.cumsum(h) / np.arange(1, k + 1)
                sums[f"precision_at_{k}"] += n_hits / k
                sums[f"recall_at_{k}"] += n_hits / len(truth)
                sums[f"ndcg_at_{k}"] += (discounts[:k] * h).sum() / ideal
                sums[f"map_at_{k}"] += (precisions * h).sum() / min(len(truth), k)
                sums[f"hit_rate_at_{k}"] += float(n_hits > 0)
    n = max(len(users), 1)
    metrics = {name: value / n for name, value in sums.items()}
    metrics["catalog_coverage"] = len(recommended) / max(train.matrix.shape[1], 1)
    metrics["evaluated_users"] = float(len(users))
    return metrics
