"""Every interaction serving holds from the log, by column, beside the histories that hold
them as `Interaction`s: so that a model load counts what it trained on with array operations
(`sluice.serve.attributes.trained_log_counts`) instead of a pass in Python over every event
(about 0.8 s per million held interactions, per model load).

Per interaction: its item (a number per distinct item id, int32), time (int64) and position in
the raw log (int64): 20 bytes. They are kept in arrays of `CHUNK` interactions, which never
change once full, and Python lists for the last, partial one, so that a snapshot taken under
the state's lock copies at most one chunk's list of references.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 16  # interactions per array
Columns = tuple[np.ndarray, np.ndarray, np.ndarray]  # item numbers, timestamps, positions


@dataclass(frozen=True)
class HeldSnapshot:
    """The held interactions at one moment: `names[n]` is the id of item number n."""

    all_names: list[str]  # the state's own list and dict: only added to, read up to
    all_numbers: dict[str, int]  # `distinct`
    distinct: int
    full: list[Columns]
    partial: tuple[list[int], list[int], list[int]]

    @property
    def names(self) -> list[str]:
        return self.all_names[:self.distinct]

    def numbers_of(self, item_ids: list[str]) -> np.ndarray:
        """Each id's item number, -1 for an item not held."""
        get, found = self.all_numbers.get, np.full(len(item_ids), -1, dtype=np.int64)
        numbers = np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64,
                              count=len(item_ids))
        held = (numbers >= 0) & (numbers < self.distinct)
        found[held] = numbers[held]
        return found

    def chunks(self) -> Iterator[Columns]:
        yield from self.full
        items, times, positions = self.partial
        if items:
            yield (np.array(items, dtype=np.int32), np.array(times, dtype=np.int64),
                   np.array(positions, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.full) * CHUNK + len(self.partial[0])


class HeldColumns:
    """One tenant's held interactions by column, and each item's count of them. Written under
    the state's lock (`add`); read through `snapshot`, under it too."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}  # item id -> its number, in order of first sight
        self.names: list[str] = []
        self.counts = array("q")  # per item number, its held interactions
        self._full: list[Columns] = []
        self._items: list[int] = []
        self._times: list[int] = []
        self._positions: list[int] = []

    def add(self, item_id: str, timestamp: int, position: int) -> None:
        number = self.numbers.get(item_id)
        if number is None:
            number = self.numbers[item_id] = len(self.names)
            self.names.append(item_id)
            self.counts.append(0)
        self.counts[number] += 1
        self._items.append(number)
        self._times.append(timestamp)
        self._positions.append(position)
        if len(self._items) == CHUNK:
            self._full.append((np.array(self._items, dtype=np.int32),
                               np.array(self._times, dtype=np.int64),
                               np.array(self._positions, dtype=np.int64)))
            self._items, self._times, self._positions = [], [], []

    def count(self, item_id: str) -> int:
        """The item's held interactions (0 for an item never seen)."""
        number = self.numbers.get(item_id)
        return 0 if number is None else self.counts[number]

    def counted(self) -> tuple[list[str], np.ndarray]:
        """Every item's held interactions (a copy; the names shared: only appended to)."""
        return self.names, np.array(self.counts, dtype=np.int64)

    def snapshot(self) -> HeldSnapshot:
        """What is held now: the partial chunk's lists copied, the rest shared."""
        return HeldSnapshot(self.names, self.numbers, len(self.names), self._full[:],
                            (self._items[:], self._times[:], self._positions[:]))
