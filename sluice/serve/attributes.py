"""The attribute index as serving asks it: an item's neighbours by its fields.

A trained item whose fields have not changed since training reads its top-K from the bundle.
An item that arrived (or changed) after training, through an `item` event or PutItems, is
vectorised from its live fields with the trained vocabulary and scored against every
trained item's vector: a sparse product touching only the items that share one of its terms,
so it answers within the budget of a request without retraining.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sluice.bundle import BundleError, ModelBundle
from sluice.ids import DictMap, id_map
from sluice.learn.attributes import AttributeIndex
from sluice.serve.answers import NeedsScan

if TYPE_CHECKING:
    from sluice.serve.held import HeldSnapshot
    from sluice.serve.model import LoadedModel

Candidates = list[tuple[str, float]]
DEFAULT_COLD = 5  # interactions below which similar_items puts attribute neighbours first
_WIDE = 20  # with filters, this many times the answer's size is drawn before filtering
_COUNTED_AT_ONCE = 1 << 20  # trained interactions per bincount over every model item
_SEARCH_PER_ID = 4  # what a sorted map's search costs per id, in lookups of a model id
_IDS_AT_ONCE = 100_000  # model ids made Python strings at a time


class AttributeNeighbours:
    """Neighbours of trained and new items, and how many interactions an item had."""

    def __init__(self, bundle: ModelBundle):
        assert bundle.attributes is not None
        meta = bundle.meta["attributes"]
        self.index = _checked(bundle.attributes, meta)
        self.ids = self.index.item_ids
        self.row = id_map(self.ids)  # a dict, or a binary search at a million items
        self.by_term = self.index.terms_by_item()  # terms x items: a new row's product
        self.cold_below = int(meta.get("cold_item_interactions", DEFAULT_COLD))
        # users per item: counted from the matrix's column indices (a transposed copy of
        # every interaction only to count them cost as much memory as the matrix)
        self._trained_counts = np.bincount(bundle.user_items.indices,
                                           minlength=bundle.user_items.shape[1])
        self._model_index = bundle.item_index

    @classmethod
    def of(cls, bundle: ModelBundle) -> AttributeNeighbours | None:
        """None for a bundle without an index (trained before it existed, or no fields)."""
        if bundle.attributes is None or "attributes" not in bundle.meta:
            return None
        return cls(bundle)

    def trained_interactions(self, item_id: str) -> int:
        j = self._model_index.get(item_id)
        return int(self._trained_counts[j]) if j is not None else 0

    def neighbours(self, item_id: str, fields: dict[str, Any] | None, wanted: int,
                   filtered: bool, scan: bool = True) -> Candidates:
        """Most similar first. `fields`: the item's live fields when they arrived or changed
        after training (None: the trained ones). Scoring (milliseconds on a large catalog)
        raises NeedsScan when `scan` is false, so that an event loop hands it to a thread."""
        row = self.row.get(item_id)
        if fields is None and row is not None:
            kept = self._kept(row)
            if len(kept) >= wanted * (_WIDE if filtered else 1):
                return kept
        if not scan and (fields is not None or row is not None):
            raise NeedsScan
        if fields is not None:
            cols, vals = self.index.space.row(fields)
        elif row is not None:
            start, end = self.index.vectors.indptr[row], self.index.vectors.indptr[row + 1]
            cols, vals = self.index.vectors.indices[start:end], self.index.vectors.data[start:end]
        else:
            return []
        return self._scored(cols, vals, row, wanted * (_WIDE if filtered else 1))

    def _kept(self, row: int) -> Candidates:
        matrix = self.index.neighbours
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        order = np.argsort(-matrix.data[start:end], kind="stable")
        picks = matrix.indices[start:end][order]
        return list(zip(self.ids[picks].tolist(), matrix.data[start:end][order].tolist(),
                        strict=True))

    def _scored(self, cols: np.ndarray, vals: np.ndarray, row: int | None,
                n: int) -> Candidates:
        """Cosine with every trained item sharing a term: each term's posting list, weighted
        and summed (touches only those items)."""
        if len(cols) == 0:
            return []
        ptr, by_term = self.by_term.indptr, self.by_term
        items = np.concatenate([by_term.indices[ptr[j]:ptr[j + 1]] for j in cols.tolist()])
        weights = np.concatenate([by_term.data[ptr[j]:ptr[j + 1]] * v
                                  for j, v in zip(cols.tolist(), vals.tolist(), strict=True)])
        scores = np.bincount(items, weights=weights, minlength=len(self.ids))
        items = np.flatnonzero(scores)
        values = scores[items].astype(np.float32)
        if row is not None:
            keep = items != row
            items, values = items[keep], values[keep]
        if len(values) > n:
            top = np.argpartition(-values, n)[:n]
            items, values = items[top], values[top]
        order = np.lexsort((items, -values))  # best first, ties by position: deterministic
        return list(zip(self.ids[items[order]].tolist(), values[order].tolist(), strict=True))


def _checked(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> AttributeIndex:
    """The index, or BundleError when its arrays do not fit together (served only whole)."""
    try:
        index = AttributeIndex.from_arrays(arrays, meta)
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"inconsistent model bundle: the attribute index ({exc!r})") from None
    finite = all(np.isfinite(m.data.sum(dtype=np.float64)) for m in (
        index.vectors, index.neighbours, index.terms_by_item()))
    if not finite or not np.isfinite(index.space.idf).all():
        raise BundleError("inconsistent model bundle: the attribute index has non-finite scores")
    return index


def trained_log_counts(model: LoadedModel, held: HeldSnapshot) -> np.ndarray:
    """Per model item, the interactions held from the log that the model trained on (by their
    position in the raw log, else their time: `LoadedModel.trained_on`). The cold check counts
    an item's trained users from the bundle and only the log's other interactions: serving
    reads the whole log, so the trained ones would otherwise count twice. Counted when a model
    is loaded, with array operations over the held interactions' columns (`sluice.serve.held`),
    a million of them at a time."""
    rows = _model_rows(model, held)
    counts = np.zeros(len(model.bundle.item_ids), dtype=np.int64)
    found: list[np.ndarray] = []
    for items, timestamps, positions in held.chunks():
        picked = rows[items[model.trained_on(timestamps, positions)]]
        found.append(picked[picked >= 0])
        if sum(len(f) for f in found) >= _COUNTED_AT_ONCE:
            counts += np.bincount(np.concatenate(found), minlength=len(counts))
            found = []
    if found:
        counts += np.bincount(np.concatenate(found), minlength=len(counts))
    return counts.astype(np.int32)


def _model_rows(model: LoadedModel, held: HeldSnapshot) -> np.ndarray:
    """Per held item number, its row in the model, or -1. A sorted id map (a large catalog)
    finds a string in microseconds (seconds for a few hundred thousand held items), so for
    many held items the model's ids are looked up in the state's dict of held items instead
    (well under a microsecond each), a slice of them at a time."""
    index, ids = model.bundle.item_index, model.bundle.item_ids
    if isinstance(index, DictMap) or held.distinct * _SEARCH_PER_ID < len(ids):
        return index.rows(held.names)
    rows = np.full(held.distinct, -1, dtype=np.int64)
    for start in range(0, len(ids), _IDS_AT_ONCE):
        numbers = held.numbers_of(ids[start:start + _IDS_AT_ONCE].tolist())
        found = np.flatnonzero(numbers >= 0)
        rows[numbers[found]] = found + start
    return rows
