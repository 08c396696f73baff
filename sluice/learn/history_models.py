"""Families scored through the user's history: item-item neighbours (implicit) and EASE.

Their item side is an items x items weight matrix stored dense, so they suit a modest
catalog; the factor families (ALS, BPR, LMF) are in `sluice.learn.models`.
"""

from __future__ import annotations

import abc
import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from sluice.learn.model_base import Model


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
