"""Approximate top-N by inner product over the item factors, for catalogs too large to scan.

The train flow builds the index (`ItemIndex.build`) into the bundle when the catalog has at
least `serving.ann.min_items` items; serving asks it for a few hundred candidates and scores
those exactly from the factors (`sluice.serve.retrieval`), so the ranking it returns is the
exact ranking of the candidates it found.

The index is faiss's inverted file of flat vectors under the inner-product metric
(`IndexIVFFlat`, METRIC_INNER_PRODUCT): k-means splits the items into `lists`, a query scans
the `probes` lists whose centroids score best. Inner product is what the models rank by
(score = x_u . y_i; BPR and LMF keep their biases as factor columns, so the index sees them
too), and an inverted file ranks the items it scans exactly, unlike a graph index, whose
routing assumes a metric. It is stored as faiss's own serialization, a uint8 array in the
bundle's `.npz` (never pickle), and checked at load like every array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SEED = 7  # the k-means sample and initialisation: the same factors give the same index
POINTS_PER_LIST = 64  # k-means trains on this many items per list (faiss warns below 39)
KMEANS_ITERATIONS = 10


def _faiss() -> Any:
    import faiss  # imported on use: only catalogs above serving.ann.min_items need it

    return faiss


def default_lists(items: int) -> int:
    """About 4 sqrt(items) lists (4,000 at a million): a few hundred items per list."""
    return max(1, min(items // POINTS_PER_LIST, int(4 * math.sqrt(items))))


class ItemIndex:
    """An inverted-file index of item factors (row j is item j); see the module docstring."""

    def __init__(self, index: Any):
        self.index = index

    @classmethod
    def build(cls, item_factors: np.ndarray, lists: int = 0) -> ItemIndex:
        faiss = _faiss()
        vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
        items, dims = vectors.shape
        lists = min(lists or default_lists(items), items)
        quantizer = faiss.IndexFlatIP(dims)
        index = faiss.IndexIVFFlat(quantizer, dims, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter, index.cp.seed = KMEANS_ITERATIONS, SEED
        sample = min(items, lists * POINTS_PER_LIST)
        rows = np.random.default_rng(SEED).choice(items, sample, replace=False)
        index.train(vectors[np.sort(rows)])
        index.add(vectors)  # ids are row numbers: item j is id j
        return cls(index)

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> ItemIndex:
        faiss = _faiss()
        return cls(faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)))

    def to_bytes(self) -> np.ndarray:
        return _faiss().serialize_index(self.index)

    @property
    def items(self) -> int:
        return int(self.index.ntotal)

    @property
    def dims(self) -> int:
        return int(self.index.d)

    @property
    def lists(self) -> int:
        return int(self.index.nlist)

    def search(self, vector: np.ndarray, count: int, probes: int) -> np.ndarray:
        """Item rows of up to `count` best items among the `probes` best lists, best first
        (fewer when those lists hold fewer items)."""
        faiss = _faiss()
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        params = faiss.SearchParametersIVF(nprobe=max(1, min(probes, self.lists)))
        _, found = self.index.search(query, count, params=params)
        rows = found[0]
        return rows[rows >= 0]


def single_threaded() -> None:
    """One OpenMP thread for faiss in serving: each request searches one vector from its own
    thread, and a team of OpenMP threads per call only fights those threads for the cores."""
    _faiss().omp_set_num_threads(1)
