"""The slow, obvious ranking the evaluation tests compare the fast rankers against: full score
rows from any scorer, seen items at -inf, numpy's top-k."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from sluice.learn.evaluation import K_VALUES, Ranker, evaluate_ranker
from sluice.learn.model_base import Model
from sluice.scoring import top_k_rows

Scorer = Callable[[np.ndarray], np.ndarray]  # score rows for a batch of training user rows


def scorer_ranker(scorer: Scorer, seen: sp.csr_matrix) -> Ranker:
    def rank(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.array(scorer(users), dtype=np.float32)
        rows = seen[users]
        scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        ranked = top_k_rows(scores, k)
        return ranked, np.take_along_axis(scores, ranked, axis=1)

    return rank


def model_scorer(model: Model) -> Scorer:
    return lambda users: model.scores(model.user_factors[users])


def evaluate_scorer(scorer: Scorer, seen: sp.csr_matrix, relevant: dict[int, np.ndarray],
                    k_values: tuple[int, ...] = K_VALUES, batch: int = 1024) -> dict[str, float]:
    return evaluate_ranker(scorer_ranker(scorer, seen), seen.shape[1], relevant, k_values,
                           batch)
