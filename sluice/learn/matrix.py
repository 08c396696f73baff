"""Interactions to a sparse user x item confidence matrix, with id maps kept as arrays.

The mart's `weight` (the event type's weight) is the starting confidence; `MatrixConfig` may
multiply it by the event's value, decay it with age, boost each user's latest events by their
position in the user's own history, and re-weight the summed matrix with BM25 or TF-IDF
(implicit's functions, items as documents and users as terms).

The recency boost multiplies an event's weight by 1 + boost * 0.5 ** (rank / half_life),
rank 0 being the user's latest event, for the families in `recency_models` only (ALS: the
history families and the item-item indexes read the plain matrix, `for_model`). Its boosted
part is kept per cell (`recent`): m later events multiply every rank's decay by the same
0.5 ** (m / half_life), so serving folds a user's new events in exactly as a retraining on
the longer history would weigh them (`shifted_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.settings import MatrixConfig

MIN_WEIGHT = 1e-6  # BM25/TF-IDF can reach zero for a user on every item; the cell stays seen


@dataclass
class InteractionMatrix:
    matrix: sp.csr_matrix   # users x items, summed weights (the boost not added)
    user_ids: np.ndarray
    item_ids: np.ndarray
    # per stored cell of `matrix` (same order): the sum of its events' weight x decay, the
    # part that `boost` multiplies for the `boosted_models`; None without the boost
    recent: np.ndarray | None = None
    boost: float = 0.0
    boosted_models: tuple[str, ...] = ()
    _boosted: dict[float, InteractionMatrix] = field(default_factory=dict, repr=False,
                                                     compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def for_model(self, algorithm: str, boost: float | None = None) -> InteractionMatrix:
        """What `algorithm` trains on: the recency boost (`boost`, default the configured
        one) added if it is one of the boosted families, else this matrix. Kept once made:
        every fit of a run shares it; its `boost` says what was added."""
        boost = self.boost if boost is None else float(boost)
        if self.recent is None or boost <= 0 or algorithm not in self.boosted_models:
            return self
        if boost not in self._boosted:
            data = self.matrix.data + np.float32(boost) * self.recent
            matrix = sp.csr_matrix((data, self.matrix.indices, self.matrix.indptr),
                                   shape=self.matrix.shape, copy=False)  # structure shared
            self._boosted[boost] = InteractionMatrix(
                matrix, self.user_ids, self.item_ids, self.recent, boost)  # boosts no further
        return self._boosted[boost]


def build(frame: pd.DataFrame, user_ids: np.ndarray | None = None,
          item_ids: np.ndarray | None = None, config: MatrixConfig | None = None,
          reference: pd.Timestamp | None = None) -> InteractionMatrix:
    """Sum `weight` per (user_id, item_id); unknown ids are dropped when maps are given."""
    decay = None
    if config is not None:
        if config.recency_boost > 0 and config.weighting == "none" and len(frame):
            frame = frame.assign(_decay=recency_decay(frame, config.recency_half_life))
        frame = confidence(frame, config, reference)
        decay = frame.pop("_decay").to_numpy() if "_decay" in frame else None
    users, user_ids = positions(frame["user_id"], user_ids)
    items, item_ids = positions(frame["item_id"], item_ids)
    keep = (users >= 0) & (items >= 0)
    weights = frame["weight"].to_numpy(dtype=np.float64)[keep]
    shape, cells = (len(user_ids), len(item_ids)), (users[keep], items[keep])
    matrix = _summed(weights, cells, shape)
    if config is not None and config.weighting != "none":
        return InteractionMatrix(reweight(matrix, config), user_ids, item_ids)  # no boost
    if decay is None:
        return InteractionMatrix(matrix, user_ids, item_ids)
    assert config is not None  # same cells, so the same structure: the data arrays line up
    recent = _summed(weights * decay[keep], cells, shape).data.astype(np.float32)
    return InteractionMatrix(matrix, user_ids, item_ids, recent, config.recency_boost,
                             tuple(config.recency_models))


def _summed(weights: np.ndarray, cells: tuple[np.ndarray, np.ndarray],
            shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((weights.astype(np.float32), cells), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def trained_boost(model: Any) -> float | None:
    """The recency boost a model was made to train on (tuned), None for the configured one."""
    return getattr(model, "recency_boost", None)


def recency_decay(frame: pd.DataFrame, half_life: float) -> np.ndarray:
    """Per row: 0.5 ** (how many of its user's events come after it / half_life)."""
    from_end, _ = positions_from_end(frame)
    return np.power(0.5, from_end / half_life)


def shifted_weights(weights: np.ndarray, recent: np.ndarray, later: int,
                    config: MatrixConfig) -> np.ndarray:
    """A trained row's cell weights once `later` newer events follow them: each event's
    boosted part decays by 0.5 ** (later / half_life), the same for every rank."""
    if config.recency_boost <= 0 or later <= 0:
        return weights
    fade = 1.0 - 0.5 ** (later / config.recency_half_life)
    return weights - config.recency_boost * fade * recent


def boosted(weights: np.ndarray, config: MatrixConfig) -> np.ndarray:
    """Weights of events given oldest first, boosted by their rank from the latest."""
    if config.recency_boost <= 0 or not len(weights):
        return weights
    from_end = np.arange(len(weights) - 1, -1, -1, dtype=np.float64)
    return weights * (1.0 + config.recency_boost * 0.5 ** (from_end / config.recency_half_life))


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


def positions_from_end(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many of its user's interactions come after it, and the user's count."""
    user = value_codes(frame["user_id"])
    tie = value_hash(frame["user_id"]) ^ (value_hash(frame["item_id"]) * np.uint64(31))
    at = frame["event_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    # by user, then time, then the tie hash, then (one item twice at one instant: a click and
    # a purchase) what the row weighs, so no tie is left to the row order an engine returns
    order = np.lexsort((*_same_pair_keys(frame), tie, at, user))
    by_user = user[order]
    starts = np.r_[True, by_user[1:] != by_user[:-1]] if len(order) else np.zeros(0, bool)
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group) if len(order) else np.zeros(0, np.int64)
    from_end = np.zeros(len(frame), dtype=np.int64)
    count = np.zeros(len(frame), dtype=np.int64)
    from_end[order] = sizes[group] - 1 - (np.arange(len(order)) - np.flatnonzero(starts)[group])
    count[order] = sizes[group]
    return from_end, count


def _same_pair_keys(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """The interaction type's hash and the weight: what tells apart the rows of one (user,
    item) at one instant (rows equal in these are interchangeable for training)."""
    keys = []
    if "weight" in frame:
        keys.append(frame["weight"].to_numpy(dtype=np.float64))
    if "interaction_type" in frame:
        keys.append(value_hash(frame["interaction_type"].astype(str)))
    return tuple(keys)


def value_codes(column: pd.Series) -> np.ndarray:
    """Equal values, equal codes (categorical codes as they are, else factorized)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.int64)
    return pd.factorize(column)[0]


def value_hash(column: pd.Series) -> np.ndarray:
    """A hash of each value's text, computed once per distinct value."""
    values = column if isinstance(column.dtype, pd.CategoricalDtype) else column.astype("category")
    categories = np.asarray(values.cat.categories.astype(str), dtype=object)
    hashes = pd.util.hash_array(categories) if len(categories) else np.zeros(1, np.uint64)
    return hashes[values.cat.codes.to_numpy().clip(min=0)]
