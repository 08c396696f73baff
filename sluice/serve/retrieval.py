"""Catalog passes through the bundle's approximate index (`sluice.ann`), for large catalogs.

The index names candidates; their scores come from the factors, exactly as a full pass
scores them, and the candidates are ranked by those scores. Exclusions (seen and excluded
items) and filters are applied to the candidates, and when they leave too few, more are
fetched from more lists; when even `MAX_FETCH` candidates cannot fill the answer (a rare
filter, a user who has seen most of what is near), the caller scores every item instead.
A graph index (hnsw) gets no refills: its search stops where every neighbour scores worse,
so its deeper results are unreliable (a third to a half of the true top 1,000 to 7,000 at
20,000 items, measured), and a filter its first candidates cannot satisfy goes to the
exact pass at once.
The answer's slots and sources are the same as a full pass's; only which items are
considered differs (the breadth the train flow calibrated into the bundle, or
`serving.ann.probes` / `ef_search`, sets how many are; `tests/serve/test_ann.py` measures the
recall of the top 25 against the exact pass).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from sluice.bundle import HEAD_SIZE
from sluice.serve.candidates import Head
from sluice.serve.model import LoadedModel

if TYPE_CHECKING:
    from sluice.serve.tiers import Candidates, Draft

# candidates asked first under filters: this many times the items wanted, plus the blocked.
# Without filters the wanted plus the blocked are enough: the index ranks what it finds by
# the exact inner product, so more candidates would only rank below them
OVER_FETCH = 4
GROWTH = 4  # each refill asks this many times more candidates from twice the lists
MAX_FETCH = 8192  # candidates beyond the blocked ones, at most, before a full pass instead
# candidates asked at least: the index's own scores (8-bit codes, sluice.ann) only choose
# them, so a margin past the answer keeps its exact top from being cut at the border; the
# train flow's calibration measures recall with as many (HEAD_SIZE)
AT_LEAST = HEAD_SIZE


def ann_head(draft: Draft, vector: np.ndarray) -> Head | None:
    """The head of the user's ranking (seen items left out) from the index's candidates;
    None without an index, or when it cannot supply a whole head."""
    model = draft.rec.model
    if model is None or model.ann is None:
        return None
    seen = draft.rec.users.seen_indices(draft.key, draft.history)
    found = search(model, vector, seen, model.head_size, None)
    if found is None:
        return None
    rows, scores = found
    # never `complete`: items the index did not name may follow (the caller then searches
    # again with the filters, and scans when that falls short)
    return Head(rows.astype(np.int32), scores, complete=False)


def ann_top(draft: Draft, vector: np.ndarray, skip: set[str]) -> Candidates | None:
    """The model tier's candidates passing exclusions and filters, best first, from the
    index; None without an index, or when it cannot supply enough of them."""
    model = draft.rec.model
    if model is None or model.ann is None:
        return None
    bundle = model.bundle
    blocked = bundle.item_index.rows(skip)
    blocked = blocked[blocked >= 0]
    if draft.req.exclude_seen:
        blocked = np.concatenate([blocked, draft.rec.users.seen_indices(draft.key,
                                                                        draft.history)])
    passes, ids = draft.passes, bundle.item_ids
    check = None if passes is None else (lambda row: passes(str(ids[row])))
    found = search(model, vector, blocked, draft.ranked, check)
    if found is None:
        return None
    rows, scores = found
    return list(zip(ids[rows].tolist(), scores.tolist(), strict=True))


def search(model: LoadedModel, vector: np.ndarray, blocked: np.ndarray, want: int,
           check: Callable[[int], bool] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and exact scores of the `want` best items the index names that are not
    `blocked` and pass `check`, best first; None when it cannot name that many."""
    assert model.ann is not None
    items = len(model.bundle.item_ids)
    # a set, not np.isin: a few hundred rows against a few dozen blocked items, where
    # np.unique and np.isin cost more than the graph search itself (profiled at 1M items)
    skip = set(blocked.tolist())
    count = max(AT_LEAST, want if check is None else OVER_FETCH * want) + len(skip)
    breadth = model.ann_breadth
    while True:
        found = model.ann.search(vector, min(count, items), breadth)
        rows = np.fromiter((r for r in found.tolist() if r not in skip), dtype=np.int64)
        scores = model.bundle.item_factors[rows] @ vector
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order], scores[order]
        if check is not None:
            rows, scores = _passing(rows, scores, want, check)
        if len(rows) >= want:
            return rows[:want], scores[:want].astype(np.float32)
        if count - len(skip) >= MAX_FETCH or count >= items or model.ann.kind == "hnsw":
            return None
        count, breadth = count * GROWTH, breadth * 2


def _passing(rows: np.ndarray, scores: np.ndarray, want: int,
             check: Callable[[int], bool]) -> tuple[np.ndarray, np.ndarray]:
    """The first `want` rows passing `check`, in order (checked lazily: filters cost)."""
    keep: list[int] = []
    for position, row in enumerate(rows.tolist()):
        if check(row):
            keep.append(position)
            if len(keep) >= want:
                break
    return rows[keep], scores[keep]
