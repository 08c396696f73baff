"""Each user's best items, kept so that an answer does not scan the catalog.

Scoring one user against 100,000 items x 64 factors reads 25 MB, about a millisecond, which
caps one serving process near a thousand answers a second. Most answers need only the first
few dozen items of a ranking that changes only when the user does something, so the
ranking's head is kept:

- the training flow writes each trained user's top `k` item indices (their training items
  left out) into the bundle (`precompute`); their scores are recomputed from the factors
  when read (k dot products), which halves what the bundle stores;
- serving answers from that head while the user has no event the model did not train on, and
  keeps the head of every ranking it had to compute (a known user with new events, a new
  visitor) until the user's history changes again (`CandidateCache`).

A head is exact for any answer it can fill after filters and exclusions: it is the top of
the full ranking. When filters leave too few, the caller scans.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from sluice.bundle import NO_CANDIDATE
from sluice.scoring import top_n_blocked


@dataclass(frozen=True)
class Head:
    """The first items of one user's ranking, best first, seen items already left out."""

    items: np.ndarray     # int32 item indices
    scores: np.ndarray    # float32
    complete: bool        # True when no other item could follow (the catalog ran out)


def head_of(scores: np.ndarray, k: int) -> Head:
    """The head of a full score row in which seen items are -inf."""
    picks = top_n_blocked(scores, k)  # finite scores only: fewer than k means no more exist
    return Head(picks.astype(np.int32), scores[picks].astype(np.float32),
                complete=len(picks) < k)


class CandidateCache:
    """Heads by user: the bundle's precomputed ones, then those computed while serving (LRU).

    A precomputed head holds while the user has no event the model did not train on; a computed
    one while the user's history version is the one it was computed at.
    """

    def __init__(self, items: np.ndarray | None, user_factors: np.ndarray,
                 item_factors: np.ndarray, size: int = 50_000):
        self.items, self.user_factors, self.item_factors = items, user_factors, item_factors
        self.k = int(items.shape[1]) if items is not None else 0
        self._computed: OrderedDict[str, tuple[int, Head]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def precomputed(self, row: int | None) -> Head | None:
        if row is None or self.items is None:
            return None
        items = self.items[row]
        count = int(np.count_nonzero(items != NO_CANDIDATE))
        items = items[:count]
        scores = self.item_factors[items] @ self.user_factors[row]
        return Head(items, scores, complete=count < self.k)

    def get(self, key: str, version: int) -> Head | None:
        with self._lock:
            found = self._computed.get(key)
            if found is not None and found[0] == version:
                self._computed.move_to_end(key)
                return found[1]
        return None

    def resize(self, size: int) -> None:
        """Keep at most `size` computed heads from now on (a batch job keeps one block)."""
        with self._lock:
            self._size = max(size, 1)

    def put(self, key: str, version: int, head: Head) -> None:
        with self._lock:
            self._computed[key] = (version, head)
            self._computed.move_to_end(key)
            while len(self._computed) > self._size:
                self._computed.popitem(last=False)
