"""Each trained user's best unseen items, precomputed into the bundle so that serving can
answer from them without a catalog pass (see `sluice.serve.candidates`, which reads them),
and for large catalogs the index that makes a catalog pass cheap (`item_index`).

Only item indices are stored; serving recomputes their k scores from the factors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from sluice.ann import ItemIndex
from sluice.bundle import NO_CANDIDATE
from sluice.learn.evaluation import NO_SCORE, factor_ranker
from sluice.learn.model_base import Model
from sluice.settings.serving import AnnConfig


def precompute(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix,
               k: int, batch: int = 2048,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Every user's top-k items by dot product, best first, their `seen` items left out.

    Returns item indices, int32 users x k, padded with NO_CANDIDATE. Ranked as the evaluation ranks
    (`factor_ranker`: implicit's blocked multi-threaded top-k), `batch` users at a time.
    """
    n_users, n_items = seen.shape
    k = max(0, min(k, n_items))
    items_out = np.full((n_users, k), NO_CANDIDATE, dtype=np.int32)
    if k == 0 or n_users == 0:
        return items_out
    rank = factor_ranker(lambda users: user_factors[users], item_factors, seen)
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        ids, scores = rank(np.arange(start, stop), k)
        valid = (scores > NO_SCORE) & np.isfinite(scores) & (ids >= 0)
        items_out[start:stop] = np.where(valid, ids, NO_CANDIDATE)
        if progress is not None:
            progress(stop, n_users)
    return items_out


def item_index(model: Model, ann: AnnConfig,
               say: Callable[[str], None] | None = None) -> ItemIndex | None:
    """The approximate nearest-neighbour index of a factor model's items (`sluice.ann`), for
    a catalog of at least `ann.min_items`; None otherwise. The item-item families' vectors
    are rows of the whole catalog and popularity ranks one list, so they never get one."""
    items = model.item_factors.shape[0]
    if not model.personalized or model.fold_in_kind != "als" or items < ann.min_items:
        return None
    started = time.perf_counter()
    index = ItemIndex.build(model.item_factors, ann.kind, ann.lists, ann.m, ann.ef_construction)
    if say is not None:
        say(f"ann index: {items:,} items, {index.describe()}, "
            f"{time.perf_counter() - started:.1f} s")
    return index
