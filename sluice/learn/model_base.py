"""The interface every model family implements, the exact ALS fold-in, and popularity.

Every model exposes `user_factors`/`item_factors` such that score(u, i) = x_u . y_i, so
serving scores any family the same way; `fold_in` builds a vector for a history the model
has not seen (a new user, or a known user with new events) without retraining.

Serving folds histories in by the bundle's meta `fold_in` (`serving_meta`): "als" is
`als_fold_in(item_factors, ..., meta alpha, meta regularization)`, the ALS, BPR and LMF
families' own `fold_in`; "history" is the history itself (item-item, EASE:
`sluice.learn.history_models`); "constant" is one vector for everyone (popularity). What is
tested offline is what serving computes. The families are listed in `sluice.learn.models`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from sluice.scoring import top_k_rows


class Model(abc.ABC):
    """A recommender family; subclasses set `name` and implement fit and params."""

    name: ClassVar[str]
    personalized: ClassVar[bool] = True
    deterministic: ClassVar[bool] = True  # same data and params give the same factors
    fold_in_kind: ClassVar[str] = "als"   # bundle meta["fold_in"]: how a history becomes x_u
    user_factors: np.ndarray
    item_factors: np.ndarray
    _gram_cache: np.ndarray | None  # set once fold-in first needs it; None after a fit

    @abc.abstractmethod
    def fit(self, user_items: sp.csr_matrix) -> Model: ...

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor arguments, so that `make_model(name, **params)` rebuilds it."""

    def serving_meta(self) -> dict[str, Any]:
        """What serving needs to fold histories in: bundle meta alpha, regularization."""
        return {"alpha": self.fold_in_alpha, "regularization": self.fold_in_regularization,
                "fold_in": self.fold_in_kind}

    fold_in_alpha: float = 1.0
    fold_in_regularization: float = 0.0

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A user vector for a history given as item indices and confidences."""
        return als_fold_in(self.item_factors, self._gram(), np.asarray(item_indices),
                           np.asarray(weights), self.fold_in_alpha)

    def _gram(self) -> np.ndarray:
        gram = getattr(self, "_gram_cache", None)
        if gram is None:
            gram = self._gram_cache = als_gram(self.item_factors, self.fold_in_regularization)
        return gram

    def scores(self, user_vectors: np.ndarray) -> np.ndarray:
        return user_vectors @ self.item_factors.T

    def recommend(self, users: np.ndarray, user_items: sp.csr_matrix, n: int = 10,
                  exclude_seen: bool = True) -> np.ndarray:
        """Top-n item indices per user row (best first), the user's own items left out."""
        users = np.asarray(users, dtype=np.int64)
        scores = np.asarray(self.scores(self.user_factors[users]), dtype=np.float32)
        if exclude_seen:
            rows = user_items[users]
            scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        return top_k_rows(scores, n)

    def _keep_factors(self, fitted: Any) -> None:
        """Copy a fitted implicit model's (CPU) factors as contiguous float32 arrays."""
        self.user_factors = np.ascontiguousarray(fitted.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(fitted.item_factors, dtype=np.float32)
        self._gram_cache = None


GRAM_BLOCK = 65_536  # rows converted to float64 at a time: 32 MB at 64 factors


def als_gram(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """YtY + regularization * I, shared by every fold-in. Summed over blocks of rows, so
    that a million items never need a float64 copy of every factor (512 MB at 64 factors)."""
    dims = item_factors.shape[1]
    gram = regularization * np.eye(dims)
    for start in range(0, len(item_factors), GRAM_BLOCK):
        y = item_factors[start:start + GRAM_BLOCK].astype(np.float64)
        gram += y.T @ y
    return gram


def als_fold_in(item_factors: np.ndarray, gram: np.ndarray, item_indices: np.ndarray,
                weights: np.ndarray, alpha: float) -> np.ndarray:
    """The exact ALS user solve: (YtY + reg I + Yt(Cu - I)Y) x = Yt Cu p, with Cu = alpha r."""
    if len(item_indices) == 0:
        return np.zeros(item_factors.shape[1], dtype=np.float32)
    y = item_factors[item_indices].astype(np.float64)
    confidence = alpha * np.asarray(weights, dtype=np.float64)
    a = gram + (y.T * (confidence - 1.0)) @ y
    b = y.T @ confidence
    return np.linalg.solve(a, b).astype(np.float32)


class Popularity(Model):
    """Items ranked by how many users interacted with them: the non-personalized tier."""

    name = "popularity"
    personalized = False
    fold_in_kind = "constant"

    def params(self) -> dict[str, Any]:
        return {}

    def fit(self, user_items: sp.csr_matrix) -> Popularity:
        counts = np.asarray((user_items > 0).sum(axis=0)).ravel().astype(np.float32)
        self.item_factors = counts.reshape(-1, 1)
        self.user_factors = np.ones((user_items.shape[0], 1), dtype=np.float32)
        self.order = np.argsort(-counts, kind="stable")
        return self

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.ones(1, dtype=np.float32)
