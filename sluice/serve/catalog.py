"""One tenant's catalog as the lower tiers draw from it: popular items (the model's list, or
counted in the log while there is no model) and random items that pass the filters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from sluice.serve.answers import NeedsScan
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState

LOG_POPULAR_SIZE = 1000
Passes = Callable[[str], bool] | None  # a filter predicate on item ids; None: no filters


class Catalog:
    def __init__(self, tenant: str, model: LoadedModel | None, state: RealtimeState,
                 seed: int | None = None):
        self.tenant, self.model, self.state = tenant, model, state
        self._rng = np.random.default_rng(seed)
        self._items: tuple[int, _Pool] | None = None
        self._trained: tuple[np.ndarray, np.ndarray] | None = None
        self._log_popular_cache: tuple[int, float, list[tuple[str, float]]] | None = None

    def items(self) -> _Pool:
        """Model items, catalog snapshot and items seen in the log since (cached), as one
        sequence over the model's arrays: no string per item is made until it is drawn."""
        live = self.state.tenant(self.tenant).items
        if self._items is None or self._items[0] != len(live):
            if self._trained is None:  # once per model: the catalog's items the model lacks
                if self.model is None:
                    self._trained = (np.array([], dtype=str), np.array([], dtype=str))
                else:
                    model_ids, catalog_ids = self.model.bundle.item_ids, self.model.fields.ids
                    self._trained = (model_ids,
                                     catalog_ids[~np.isin(catalog_ids, model_ids)]
                                     if len(catalog_ids) else catalog_ids)
            model_ids, extra = self._trained
            model = self.model
            new = [i for i in list(live) if model is None
                   or (i not in model.bundle.item_index and i not in model.fields)]
            self._items = (len(live), _Pool(model_ids, extra, new))
        return self._items[1]

    def popular(self) -> list[tuple[str, float]]:
        if self.model is None:
            return self._log_popular()
        return self.model.popular

    def _log_popular(self) -> list[tuple[str, float]]:
        """Without a model: the items most interacted with in the log, recounted at most once
        a second (and only when new interactions arrived)."""
        seen = self.state.tenant(self.tenant).interactions
        now = time.monotonic()
        cached = self._log_popular_cache
        if cached is None or (cached[0] != seen and now - cached[1] >= 1.0):
            cached = self._log_popular_cache = (seen, now, self.state.popular(
                self.tenant, LOG_POPULAR_SIZE))
        return cached[2]

    def random(self, n: int, exclude: set[str], passes: Passes,
               scan: bool = True) -> list[tuple[str, float]]:
        """Up to n random catalog items that pass the filters, visited in random order."""
        if n <= 0:
            return []
        pool = self.items()
        if not pool:
            return []
        picked: list[tuple[str, float]] = []
        chosen: set[str] = set()
        for order in self._orders(len(pool), 4 * n + len(exclude) + 16):
            if order is None:
                if not scan:
                    raise NeedsScan
                order = self._rng.permutation(len(pool))
            for i in order.tolist():
                item_id = pool[i]
                if item_id in exclude or item_id in chosen or (
                        passes is not None and not passes(item_id)):
                    continue
                chosen.add(item_id)
                picked.append((item_id, 0.0))
                if len(picked) >= n:
                    return picked
        return picked

    def _orders(self, size: int, wanted: int) -> list[np.ndarray | None]:
        """A small draw first (cheap on a large catalog); None: then the whole catalog, if
        the draw falls short."""
        first = min(size, wanted)
        if 4 * first >= size:
            return [self._rng.permutation(size)]
        sample = np.unique(self._rng.integers(0, size, size=first))  # distinct, sorted
        return [self._rng.permutation(sample), None]


class _Pool:
    """The items random draws pick from: the model's, then the catalog's it lacks (arrays
    as the bundle maps them), then those seen in the log since training."""

    def __init__(self, model_ids: np.ndarray, extra: np.ndarray, new: list[str]):
        self._parts: tuple[np.ndarray, np.ndarray, list[str]] = (model_ids, extra, new)
        self._ends = np.cumsum([len(model_ids), len(extra), len(new)]).tolist()

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self)
        (model_ids, extra, new), (first, second, third) = self._parts, self._ends
        if 0 <= i < first:
            return str(model_ids[i])
        if first <= i < second:
            return str(extra[i - first])
        if second <= i < third:
            return new[i - second]
        raise IndexError(i)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))
