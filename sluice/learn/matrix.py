"""Interactions to a sparse user x item confidence matrix, with id maps kept as arrays.

The mart's `weight` (the event type's weight) is the starting confidence; `MatrixConfig` may
multiply it by the event's value, decay it with age, and re-weight the summed matrix with
BM25 or TF-IDF (implicit's functions, items as documents and users as terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.settings import MatrixConfig

MIN_WEIGHT = 1e-6  # BM25/TF-IDF can reach zero for a user on every item; the cell stays seen


@dataclass
class InteractionMatrix:
    matrix: sp.csr_matrix   # users x items, summed weights
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


def build(frame: pd.DataFrame, user_ids: np.ndarray | None = None,
          item_ids: np.ndarray | None = None, config: MatrixConfig | None = None,
          reference: pd.Timestamp | None = None) -> InteractionMatrix:
    """Sum `weight` per (user_id, item_id); unknown ids are dropped when maps are given."""
    if config is not None:
        frame = confidence(frame, config, reference)
    users, user_ids = positions(frame["user_id"], user_ids)
    items, item_ids = positions(frame["item_id"], item_ids)
    keep = (users >= 0) & (items >= 0)
    weights = frame["weight"].to_numpy(dtype=np.float32)[keep]
    matrix = sp.csr_matrix(
        (weights, (users[keep], items[keep])), shape=(len(user_ids), len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    if config is not None:
        matrix = reweight(matrix, config)
    return InteractionMatrix(matrix, user_ids, item_ids)


def positions(column: pd.Series, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each value's row in `ids` (-1 when absent); `ids` defaults to the sorted distinct values.

    Through categorical codes: the string lookups happen once per distinct value, not per row.
    """
    values = column if isinstance(column.dtype, pd.CategoricalDtype) else column.astype("category")
    codes = values.cat.codes.to_numpy()
    categories = np.asarray(values.cat.categories.astype(str), dtype=str)
    if ids is None:
        present = np.zeros(len(categories), dtype=bool)
        present[codes[codes >= 0]] = True
        ids = np.sort(categories[present])
    lookup = pd.Index(ids).get_indexer(categories)
    if not len(lookup):
        return np.full(len(codes), -1, dtype=np.int64), ids
    return np.where(codes >= 0, lookup[codes], -1), ids


def confidence(frame: pd.DataFrame, config: MatrixConfig,
               reference: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per-row weights: type weight, times the event value where configured, decayed by age."""
    weight = frame["weight"].astype(np.float64)
    if config.use_event_value and "event_value" in frame:
        value = pd.to_numeric(frame["event_value"], errors="coerce")
        applies = value.notna()
        if config.event_value_types:
            applies &= frame["interaction_type"].isin(config.event_value_types)
        weight = weight.where(~applies, weight * value)
    if config.half_life_days is not None and len(frame):
        at = pd.to_datetime(frame["event_at"])
        ref = pd.Timestamp(reference) if reference is not None else at.max()
        age_days = ((ref - at).dt.total_seconds() / 86_400.0).clip(lower=0.0)
        weight = weight * np.power(0.5, age_days / config.half_life_days)
    out = frame.assign(weight=weight)
    return out[out["weight"] > 0]


def reweight(matrix: sp.csr_matrix, config: MatrixConfig) -> sp.csr_matrix:
    """BM25 or TF-IDF over the summed matrix; `none` returns it as it is."""
    if config.weighting == "none" or matrix.nnz == 0:
        return matrix
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    item_users = matrix.T.tocoo()
    if config.weighting == "bm25":
        weighted = bm25_weight(item_users, K1=config.bm25_k1, B=config.bm25_b)
    else:
        weighted = tfidf_weight(item_users)
    out = weighted.T.tocsr().astype(np.float32)
    out.data = np.maximum(out.data, MIN_WEIGHT)
    return out


def config_params(config: MatrixConfig) -> dict[str, Any]:
    """The matrix config as flat MLflow params (`matrix.<key>`)."""
    return {f"matrix.{k}": (",".join(v) if isinstance(v, list) else v)
            for k, v in config.model_dump().items()}
