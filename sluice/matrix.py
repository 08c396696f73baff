"""Interactions to a sparse user x item confidence matrix, with id maps kept as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class InteractionMatrix:
    matrix: sp.csr_matrix   # users x items, summed weights
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]


def build(frame: pd.DataFrame, user_ids: np.ndarray | None = None,
          item_ids: np.ndarray | None = None) -> InteractionMatrix:
    """Sum `weight` per (user_id, item_id); unknown ids are dropped when maps are given."""
    if user_ids is None:
        user_ids = np.array(sorted(frame["user_id"].unique()), dtype=str)
    if item_ids is None:
        item_ids = np.array(sorted(frame["item_id"].unique()), dtype=str)
    users = pd.Index(user_ids).get_indexer(frame["user_id"])
    items = pd.Index(item_ids).get_indexer(frame["item_id"])
    keep = (users >= 0) & (items >= 0)
    weights = frame["weight"].to_numpy(dtype=np.float32)[keep]
    matrix = sp.csr_matrix(
        (weights, (users[keep], items[keep])), shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return InteractionMatrix(matrix, user_ids, item_ids)
