"""What a user has done, as the model sees it: the items trained on, the events since the
model was trained (past its position in the raw log, `sluice.serve.model.TrainedLog`), and the
user's vector (trained, or folded in from both), kept per version.

With `matrix.recency_boost` a fold-in weighs the history as training would weigh it whole:
the new events boosted by their rank from the latest, the trained cells' boosted parts
decayed by as many ranks as there are new events (`sluice.learn.matrix.shifted_weights`)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from sluice.learn.matrix import boosted, shifted_weights
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import Interaction


class UserVectors:
    """One tenant's users under one model (maybe none yet); vectors kept for `cache_size`."""

    def __init__(self, model: LoadedModel | None, weights: dict[str, float],
                 cache_size: int = 50_000):
        self.model, self.weights, self._cache_size = model, weights, cache_size
        self._vectors: OrderedDict[str, tuple[int, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def trained_items(self, key: str | None) -> np.ndarray:
        """Indices of the items the model was trained on for this user (none if unknown)."""
        model = self.model
        row = model.bundle.user_index.get(key) if model is not None and key else None
        if row is None:
            return np.empty(0, dtype=np.int32)
        ui = model.bundle.user_items  # type: ignore[union-attr]
        return ui.indices[ui.indptr[row]:ui.indptr[row + 1]]

    def seen_indices(self, key: str | None, history: list[Interaction]) -> np.ndarray:
        """Indices of the model's items the user interacted with: in training and in the log
        (what a catalog pass leaves out)."""
        index = self.model.bundle.item_index  # type: ignore[union-attr]
        rows = index.rows(e.item_id for e in history)
        return np.concatenate([self.trained_items(key), rows[rows >= 0].astype(np.int32)])

    def seen(self, key: str | None, history: list[Interaction]) -> set[str]:
        """Item ids the user interacted with: in training and in the log."""
        seen = {event.item_id for event in history}
        trained = self.trained_items(key)
        if len(trained):
            seen.update(self.model.bundle.item_ids[trained].tolist())  # type: ignore[union-attr]
        return seen

    def new_pairs(self, history: list[Interaction]) -> list[tuple[int, float]]:
        """(item index, weight) of the events the model did not train on, oldest first, to fold
        in (events on items the model does not know are left out, and not counted)."""
        model = self.model
        if model is None:
            return []
        pairs = []
        for event in sorted(history, key=lambda e: e.timestamp):
            weight = self.weights.get(event.type)
            if weight is None or not model.after_training(event.timestamp, event.position):
                continue
            index = model.bundle.item_index.get(event.item_id)
            if index is not None:
                pairs.append((index, weight))
        return pairs

    def vector(self, key: str, version: int, new: list[tuple[int, float]]) -> np.ndarray | None:
        """The user's vector at this state version: trained, or folded in with `new`."""
        with self._lock:
            cached = self._vectors.get(key)
            if cached is not None and cached[0] == version:
                self._vectors.move_to_end(key)
                return cached[1]
        vector = self._compute(key, new)
        with self._lock:
            self._vectors[key] = (version, vector)
            if len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
        return vector

    def _compute(self, key: str, new: list[tuple[int, float]]) -> np.ndarray | None:
        model = self.model
        assert model is not None
        row = model.bundle.user_index.get(key)
        if row is not None and not new:
            return model.bundle.user_factors[row]
        weights: dict[int, float] = {}
        if row is not None:
            for i, w in zip(*self._trained_row(row, len(new)), strict=True):
                weights[int(i)] = float(w)
        added = boosted(np.array([w for _, w in new], dtype=np.float64), model.matrix)
        for (i, _), w in zip(new, added, strict=True):
            weights[i] = weights.get(i, 0.0) + float(w)
        if not weights:
            return None
        return model.fold_in(np.fromiter(weights.keys(), dtype=np.int64),
                             np.fromiter(weights.values(), dtype=np.float64))

    def _trained_row(self, row: int, later: int) -> tuple[np.ndarray, np.ndarray]:
        """A trained user's item indices and cell weights, as `later` new events leave them."""
        bundle = self.model.bundle  # type: ignore[union-attr]
        cells = slice(bundle.user_items.indptr[row], bundle.user_items.indptr[row + 1])
        weights = bundle.user_items.data[cells].astype(np.float64)
        if bundle.recent is not None:
            weights = shifted_weights(weights, bundle.recent[cells].astype(np.float64), later,
                                      self.model.matrix)  # type: ignore[union-attr]
        return bundle.user_items.indices[cells], weights
