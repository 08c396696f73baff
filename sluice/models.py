"""Model families behind one interface: fit a user x item matrix, then score users.

Every model exposes `user_factors`/`item_factors` such that score(u, i) = x_u . y_i, so
serving scores any family the same way; `fold_in` builds a vector for a history the model
has not seen (a new user, or a known user with new events) without retraining.
"""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class Model(abc.ABC):
    """A recommender family; subclasses set `name` and implement fit and fold_in."""

    name: ClassVar[str]
    personalized: ClassVar[bool] = True
    user_factors: np.ndarray
    item_factors: np.ndarray

    @abc.abstractmethod
    def fit(self, user_items: sp.csr_matrix) -> Model: ...

    @abc.abstractmethod
    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A user vector for a history given as item indices and confidences."""

    def params(self) -> dict[str, Any]:
        return {}

    def scores(self, user_vectors: np.ndarray) -> np.ndarray:
        return user_vectors @ self.item_factors.T


class ALS(Model):
    """Implicit-feedback ALS (Hu, Koren, Volinsky) through `implicit`."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 2.0, random_state: int = 42):
        self.factors, self.regularization = factors, regularization
        self.iterations, self.alpha, self.random_state = iterations, alpha, random_state

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization,
                "iterations": self.iterations, "alpha": self.alpha,
                "random_state": self.random_state}

    def fit(self, user_items: sp.csr_matrix) -> ALS:
        from implicit.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization,
            iterations=self.iterations, alpha=self.alpha, random_state=self.random_state,
            calculate_training_loss=False, use_gpu=False,
        )
        model.fit(user_items.tocsr().astype(np.float32), show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.gram = als_gram(self.item_factors, self.regularization)
        return self

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return als_fold_in(self.item_factors, self.gram, item_indices, weights, self.alpha)


def als_gram(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """YtY + regularization * I, shared by every fold-in."""
    y = item_factors.astype(np.float64)
    return y.T @ y + regularization * np.eye(y.shape[1])


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

    def fit(self, user_items: sp.csr_matrix) -> Popularity:
        counts = np.asarray((user_items > 0).sum(axis=0)).ravel().astype(np.float32)
        self.item_factors = counts.reshape(-1, 1)
        self.user_factors = np.ones((user_items.shape[0], 1), dtype=np.float32)
        self.order = np.argsort(-counts, kind="stable")
        return self

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.ones(1, dtype=np.float32)


MODELS: dict[str, type[Model]] = {"als": ALS, "popularity": Popularity}


def make_model(algorithm: str, **params: Any) -> Model:
    try:
        family = MODELS[algorithm]
    except KeyError:
        raise ValueError(f"model.algorithm: unknown {algorithm!r}, use one of "
                         f"{', '.join(sorted(MODELS))}") from None
    return family(**params) if family is not Popularity else family()
