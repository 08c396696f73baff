"""Id -> row maps of a model's user and item ids (`id_map`).

A Python dict of a million string ids costs a serving worker about 120 MB and two seconds
to build at each model load (one str object and one table entry per id). Above `DICT_BELOW`
ids the map is instead the id array itself, as the bundle stores it (fixed-width unicode,
mapped from the file and shared by the workers), and the permutation that sorts it, stored
beside it by training: a lookup is a binary search (a few microseconds) and nothing is built
at load. Below it, a dict: lookups stay at dict speed where a catalog is small.

Both answer `get`, `in`, `[]`, `len` and `rows` (many ids at once, -1 for unknown ones).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DICT_BELOW = 200_000  # ids; from here on a sorted map (no per-id Python objects)


def sort_order(ids: np.ndarray) -> np.ndarray:
    """The permutation that sorts `ids`, as `SortedMap` wants it (stored in the bundle)."""
    return np.argsort(ids, kind="stable").astype(np.int64)


def stored_order(ids: np.ndarray) -> np.ndarray | None:
    """What the bundle stores beside `ids`: their sort order when the map will be sorted."""
    return sort_order(ids) if len(ids) >= DICT_BELOW else None


def id_map(ids: np.ndarray, order: np.ndarray | None = None) -> DictMap | SortedMap:
    """The map for `ids`: a dict below DICT_BELOW ids, else a sorted map (`order` as stored
    by training, or computed here for a bundle written before it was stored)."""
    if len(ids) < DICT_BELOW:
        return DictMap(ids)
    return SortedMap(ids, sort_order(ids) if order is None else order)


class DictMap(dict[str, int]):
    """A dict of id -> row, with `rows` and `problem` as SortedMap has them."""

    def __init__(self, ids: np.ndarray):
        super().__init__((value, row) for row, value in enumerate(ids.tolist()))
        self._size = len(ids)

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.get(key, -1) for key in keys), dtype=np.int64)

    def problem(self) -> str | None:
        return None if len(self) == self._size else "id maps hold duplicate ids"


class SortedMap:
    """Id -> row by binary search over the ids in the order that sorts them."""

    def __init__(self, ids: np.ndarray, order: np.ndarray):
        self.ids, self.order = ids, order
        # the ids' fixed width: a longer key cannot match, and searching for one would make
        # numpy widen (copy) the whole array first
        self._width = ids.dtype.itemsize // 4 if ids.dtype.kind == "U" else None

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key: object, default: int | None = None) -> int | None:
        if (not isinstance(key, str) or not len(self.ids)
                or (self._width is not None and len(key) > self._width)):
            return default
        pos = int(np.searchsorted(self.ids, key, sorter=self.order))
        if pos == len(self.ids):
            return default
        row = int(self.order[pos])
        return row if self.ids[row] == key else default

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __getitem__(self, key: str) -> int:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        keys = list(keys)
        if not keys or not len(self.ids):
            return np.full(len(keys), -1, dtype=np.int64)
        # as the ids' dtype (keys too long are cut, then refused below): no widened copy
        wanted = np.asarray(keys, dtype=self.ids.dtype)
        pos = np.minimum(np.searchsorted(self.ids, wanted, sorter=self.order),
                         len(self.ids) - 1)
        rows = self.order[pos].astype(np.int64)
        found = np.where(self.ids[rows] == wanted, rows, -1)
        # cut to the width, or a trailing NUL (numpy's strings drop them): not the same id
        width = self._width or 0
        found[[j for j, key in enumerate(keys)
               if key.endswith("\x00") or (width and len(key) > width)]] = -1
        return found

    def problem(self) -> str | None:
        """Why this map would answer wrongly (the stored order does not sort the ids, or
        they hold a duplicate), or None."""
        order = self.order
        if order.ndim != 1 or len(order) != len(self.ids) or not np.issubdtype(order.dtype,
                                                                            np.integer):
            return f"an id order of shape {order.shape} ({order.dtype}) for {len(self.ids)} ids"
        if len(order) and (order.min() < 0 or order.max() >= len(order)):
            return "an id order points outside its ids"
        ranked = self.ids[order]
        if not bool((ranked[1:] > ranked[:-1]).all()):  # strictly: sorted, and no duplicate
            return ("id maps hold duplicate ids" if bool((ranked[1:] == ranked[:-1]).any())
                    else "an id order does not sort its ids")
        return None
