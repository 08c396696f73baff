"""Model families behind one interface: fit a user x item matrix, then score users.

Every model exposes `user_factors`/`item_factors` such that score(u, i) = x_u . y_i, so
serving scores any family the same way; `fold_in` builds a vector for a history the model
has not seen (a new user, or a known user with new events) without retraining.

Serving folds histories in by the bundle's meta `fold_in` (`serving_meta`): "als" is
`als_fold_in(item_factors, ..., meta alpha, meta regularization)`, the ALS, BPR and LMF
families' own `fold_in`; "history" is the history itself (item-item); "constant" is one
vector for everyone (popularity). What is tested offline is what serving computes. BPR and
LMF carry their biases as factor columns (implicit appends them), so the dot product already
includes them.
"""

from __future__ import annotations

import abc
import contextlib
import warnings
from collections.abc import Iterator
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


class ALS(Model):
    """Implicit-feedback ALS (Hu, Koren, Volinsky) through `implicit`."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 2.0, random_state: int = 42):
        self.factors, self.regularization = factors, regularization
        self.iterations, self.alpha, self.random_state = iterations, alpha, random_state

    @property  # a property where the base class declares a plain attribute
    def fold_in_alpha(self) -> float:  # type: ignore[override]
        return self.alpha

    @property  # a property where the base class declares a plain attribute
    def fold_in_regularization(self) -> float:  # type: ignore[override]
        return self.regularization

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization,
                "iterations": self.iterations, "alpha": self.alpha,
                "random_state": self.random_state}

    def fit(self, user_items: sp.csr_matrix) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization,
            iterations=self.iterations, alpha=self.alpha, random_state=self.random_state,
            calculate_training_loss=False,
        )
        model.fit(user_items.tocsr().astype(np.float32), show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._gram_cache = None
        return self


class _SGDFactorModel(Model):
    """BPR and LMF: implicit's SGD learners, folded in by a ridge solve on their item factors.

    They have no closed-form user solve, so a new history is projected with the ALS solve at
    confidence 1 + `fold_in_alpha` * weight; its ridge term is scaled to the item factors'
    own size (`fold_in_shrinkage` x mean eigenvalue of YtY), fixed at fit time and shipped in
    the bundle meta.
    """

    fold_in_alpha = 1.0
    fold_in_shrinkage = 0.1

    def __init__(self, factors: int, learning_rate: float, regularization: float,
                 iterations: int, random_state: int = 42, num_threads: int = 0):
        self.factors, self.learning_rate = factors, learning_rate
        self.regularization, self.iterations = regularization, iterations
        self.random_state, self.num_threads = random_state, num_threads

    @property  # a property where the base class declares a plain attribute
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.num_threads == 1  # several threads run hogwild SGD

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "learning_rate": self.learning_rate,
                "regularization": self.regularization, "iterations": self.iterations,
                "random_state": self.random_state, "num_threads": self.num_threads}

    @abc.abstractmethod
    def _implicit_model(self) -> Any: ...

    def fit(self, user_items: sp.csr_matrix) -> _SGDFactorModel:
        model = self._implicit_model()
        model.fit(user_items.tocsr().astype(np.float32), show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        y = self.item_factors.astype(np.float64)
        self.fold_in_regularization = float(
            self.fold_in_shrinkage * np.trace(y.T @ y) / max(y.shape[1], 1) + 1e-6)
        self._gram_cache = None
        return self


class BPR(_SGDFactorModel):
    """Bayesian Personalized Ranking through `implicit` (item bias as the last factor)."""

    name = "bpr"

    def __init__(self, factors: int = 64, learning_rate: float = 0.01,
                 regularization: float = 0.01, iterations: int = 100, random_state: int = 42,
                 num_threads: int = 0):
        super().__init__(factors, learning_rate, regularization, iterations, random_state,
                         num_threads)

    def _implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            random_state=self.random_state, num_threads=self.num_threads)


class LMF(_SGDFactorModel):
    """Logistic Matrix Factorization through `implicit` (user and item biases as factors)."""

    name = "lmf"

    def __init__(self, factors: int = 32, learning_rate: float = 1.0,
                 regularization: float = 0.6, iterations: int = 30, neg_prop: int = 30,
                 random_state: int = 42, num_threads: int = 0):
        super().__init__(factors, learning_rate, regularization, iterations, random_state,
                         num_threads)
        self.neg_prop = neg_prop

    def params(self) -> dict[str, Any]:
        return {**super().params(), "neg_prop": self.neg_prop}

    def _implicit_model(self) -> Any:
        from implicit.cpu.lmf import LogisticMatrixFactorization

        return LogisticMatrixFactorization(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            neg_prop=self.neg_prop, random_state=self.random_state,
            num_threads=self.num_threads)


class HistoryModel(Model):
    """Families scored as score(u, i) = sum_j r_uj W[j, i]: x_u is the user's row of the
    matrix and y_i column i of W, both stored dense, which only fits a modest catalog
    (`max_dense_cells` bounds users x items + items x items). The exact fold-in is the
    history itself (bundle meta fold_in = "history"), which serving computes the same way.
    """

    fold_in_kind = "history"
    fold_in_alpha = 1.0
    max_dense_cells: int

    def _check_dense(self, user_items: sp.csr_matrix) -> None:
        n_users, n_items = user_items.shape
        cells = n_users * n_items + n_items * n_items
        if cells > self.max_dense_cells:
            raise ValueError(
                f"model.algorithm {self.name!r}: {n_users:,} users x {n_items:,} items need "
                f"{cells:,} dense cells for dot-product serving, more than "
                f"model.item_item.max_dense_cells ({self.max_dense_cells:,}); use als, bpr "
                f"or lmf for a catalog this size")

    def _set_weights(self, user_items: sp.csr_matrix, weights: np.ndarray) -> None:
        """x_u = the user's row, y_i = column i of `weights` (items x items)."""
        self.user_factors = np.ascontiguousarray(user_items.toarray(), dtype=np.float32)
        self.item_factors = np.ascontiguousarray(weights.T, dtype=np.float32)
        y = self.item_factors.astype(np.float64)
        self.fold_in_regularization = float(np.trace(y.T @ y) / max(len(y), 1) + 1e-6)
        self._gram_cache = None

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        vector = np.zeros(self.item_factors.shape[1], dtype=np.float32)
        np.add.at(vector, np.asarray(item_indices, dtype=np.int64),
                  np.asarray(weights, dtype=np.float32))
        return vector


class ItemItem(HistoryModel):
    """Item-item nearest neighbours through `implicit` (W: the similarity matrix)."""

    def __init__(self, neighbours: int = 100, max_dense_cells: int = 50_000_000,
                 num_threads: int = 0):
        self.neighbours, self.max_dense_cells, self.num_threads = (
            neighbours, max_dense_cells, num_threads)

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "max_dense_cells": self.max_dense_cells,
                "num_threads": self.num_threads}

    @abc.abstractmethod
    def _implicit_model(self) -> Any: ...

    def fit(self, user_items: sp.csr_matrix) -> ItemItem:
        self._check_dense(user_items)
        model = self._implicit_model()
        user_items = user_items.tocsr().astype(np.float32)
        with quiet_implicit():
            model.fit(user_items, show_progress=False)
        self.similarity: sp.csr_matrix = model.similarity.tocsr().astype(np.float32)
        self._set_weights(user_items, self.similarity.toarray())
        return self


class EASE(HistoryModel):
    """EASE (Steck 2019): W = I - P diag(1 / diag P), P = (XtX + l2 I)^-1, diag W = 0.

    A closed form over the item x item Gram matrix, so `max_items` bounds the catalog (its
    solve holds items^2 float64 numbers: 20,000 items are 3.2 GB) besides the dense cells.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000,
                 max_dense_cells: int = 50_000_000):
        self.l2, self.max_items, self.max_dense_cells = l2, max_items, max_dense_cells

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2, "max_items": self.max_items,
                "max_dense_cells": self.max_dense_cells}

    def fit(self, user_items: sp.csr_matrix) -> EASE:
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"model.algorithm 'ease': {n_items:,} items need a {n_items:,} x {n_items:,} "
                f"solve ({n_items * n_items * 8 / 1e9:.1f} GB), more than model.ease.max_items "
                f"({self.max_items:,}); use als for a catalog this size")
        self._check_dense(user_items)
        x = user_items.tocsr().astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n_items)] += self.l2
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)[None, :]
        weights[np.diag_indices(n_items)] = 0.0
        self._set_weights(x, weights)
        return self


class Cosine(ItemItem):
    """Item-item on cosine similarity of the item columns."""

    name = "cosine"

    def _implicit_model(self) -> Any:
        from implicit.nearest_neighbours import CosineRecommender

        return CosineRecommender(K=self.neighbours, num_threads=self.num_threads)


class TFIDF(ItemItem):
    """Item-item on TF-IDF weighted item columns."""

    name = "tfidf"

    def _implicit_model(self) -> Any:
        from implicit.nearest_neighbours import TFIDFRecommender

        return TFIDFRecommender(K=self.neighbours, num_threads=self.num_threads)


class BM25(ItemItem):
    """Item-item on BM25 weighted item columns."""

    name = "bm25"

    def __init__(self, neighbours: int = 100, k1: float = 1.2, b: float = 0.75,
                 max_dense_cells: int = 50_000_000, num_threads: int = 0):
        super().__init__(neighbours, max_dense_cells, num_threads)
        self.k1, self.b = k1, b

    def params(self) -> dict[str, Any]:
        return {**super().params(), "k1": self.k1, "b": self.b}

    def _implicit_model(self) -> Any:
        from implicit.nearest_neighbours import BM25Recommender

        return BM25Recommender(K=self.neighbours, K1=self.k1, B=self.b,
                               num_threads=self.num_threads)


@contextlib.contextmanager
def quiet_implicit() -> Iterator[None]:
    """implicit's item-item models hand themselves COO matrices, then warn about it."""
    from implicit.utils import ParameterWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)
        yield


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


MODELS: dict[str, type[Model]] = {
    family.name: family for family in (ALS, BPR, LMF, Cosine, BM25, TFIDF, EASE, Popularity)}


def make_model(algorithm: str, **params: Any) -> Model:
    try:
        family = MODELS[algorithm]
    except KeyError:
        raise ValueError(f"model.algorithm: unknown {algorithm!r}, use one of "
                         f"{', '.join(sorted(MODELS))}") from None
    try:
        return family(**params)
    except TypeError as exc:
        raise ValueError(f"model {algorithm!r}: bad parameters {sorted(params)}: {exc}") from None
