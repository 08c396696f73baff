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

from sluice.ann import Calibration, ItemIndex, calibrate
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


CALIBRATION_USERS = 200  # trained users whose histories' fold-ins calibrate the index


def item_index(model: Model, user_items: sp.csr_matrix, ann: AnnConfig, candidates: int,
               say: Callable[[str], None] | None = None,
               ) -> tuple[ItemIndex, Calibration] | None:
    """The approximate nearest-neighbour index of a factor model's items (`sluice.ann`), for
    a catalog of at least `ann.min_items`, with its breadth calibrated to `ann.recall_target`
    on fold-ins of a sample of `user_items`' histories (what serving searches with for a user
    with new events), asking `candidates` items as serving does; None for a smaller catalog.
    The item-item families' vectors are rows of the whole catalog and popularity ranks one
    list, so they never get one."""
    items = model.item_factors.shape[0]
    if not model.personalized or model.fold_in_kind != "als" or items < ann.min_items:
        return None
    started = time.perf_counter()
    index = ItemIndex.build(model.item_factors, ann.kind, ann.lists, ann.m, ann.ef_construction,
                            ann.codes)
    built = time.perf_counter() - started
    calibration = calibrate(index, model.item_factors, fold_ins(model.fold_in, user_items),
                            ann.recall_target, candidates)
    if say is not None:
        say(f"ann index: {items:,} items, {index.describe()}, built in {built:.1f} s; "
            f"breadth {calibration.breadth}: recall@25 {calibration.recall:.3f} (worst "
            f"{calibration.worst:.2f}) on {calibration.queries} users against the exact scan"
            + ("" if calibration.met else f", short of the target {ann.recall_target}: "
               + ("raise serving.ann.m and ef_construction" if index.kind == "hnsw"
                  else "set serving.ann.codes: flat") + ", then retrain"))
    return index, calibration


def fold_ins(fold_in: Callable[[np.ndarray, np.ndarray], np.ndarray],
             user_items: sp.csr_matrix, users: int = CALIBRATION_USERS,
             seed: int = 7) -> np.ndarray:
    """`fold_in` (a model's) of up to `users` trained histories (seeded): the vectors
    serving computes for those users once they have a new event."""
    rows = np.flatnonzero(np.diff(user_items.indptr) > 0)
    if not len(rows):
        raise ValueError("no user has a history to calibrate the ann index with")
    chosen = np.sort(np.random.default_rng(seed).choice(rows, min(users, len(rows)),
                                                        replace=False))
    return np.stack([fold_in(user_items[u].indices, user_items[u].data) for u in chosen])
