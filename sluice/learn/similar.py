"""The similar-items index for the similar-items template: each item's nearest neighbours.

Item-item cosine over the interaction matrix (implicit's `CosineRecommender`), the top
`neighbours` per item kept as a sparse row, the item itself left out. It is built on every
training run whatever the primary family and ships in the bundle as `.npz` arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sluice.learn.history_models import quiet_implicit


class SimilarItems:
    """Nearest neighbours per item; `query` answers an item index with its top-n."""

    def __init__(self, neighbours: int = 50, num_threads: int = 0):
        self.neighbours, self.num_threads = neighbours, num_threads
        self.matrix: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, user_items: sp.csr_matrix) -> SimilarItems:
        from implicit.nearest_neighbours import CosineRecommender

        # one more neighbour than kept: the item itself is always its own nearest
        model = CosineRecommender(K=self.neighbours + 1, num_threads=self.num_threads)
        with quiet_implicit():
            model.fit(user_items.tocsr().astype(np.float32), show_progress=False)
        return self.from_similarity(model.similarity)

    def from_similarity(self, similarity: sp.spmatrix) -> SimilarItems:
        sim = sp.csr_matrix(similarity, dtype=np.float32)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        self.matrix = _top_per_row(sim, self.neighbours)
        return self

    def query(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices and similarities of `item`, most similar first."""
        start, end = self.matrix.indptr[item], self.matrix.indptr[item + 1]
        ids, scores = self.matrix.indices[start:end], self.matrix.data[start:end]
        order = np.argsort(-scores, kind="stable")[:n]
        return ids[order], scores[order]


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        data = matrix.data[start:end]
        keep = np.argsort(-data, kind="stable")[:k]
        rows.append(np.full(len(keep), r, dtype=np.int64))
        cols.append(matrix.indices[start:end][keep])
        vals.append(data[keep])
    if not rows:
        return sp.csr_matrix(matrix.shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=matrix.shape, dtype=np.float32)
