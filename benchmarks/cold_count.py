"""The cold-item count at a model load: the held interactions' columns against the former
pass over every `Interaction`, in the same run.

    python benchmarks/cold_count.py                     # 1M and 10M held interactions
    python benchmarks/cold_count.py --sizes 200000

A serving state holds a synthetic log applied through `RealtimeState.apply` (in batches, as
the poller applies it): 300,000 users, items drawn Zipf-like over 300,000 ids of which the
model knows 250,000 (a sorted id map, as at that size), events spread over four raw-log
segments (one the model covered whole, one in part, one of unknown coverage, one it never saw)
and a tenth without a position. For each size and two bundles (with the raw log's positions;
without them: the time rule), it times `attributes.trained_log_counts` on a snapshot of the
columns against `reference_counts` (the code before, over `RealtimeState.histories`), and
checks the counts are equal. Also: the columns' bytes, and what `HeldColumns.add` costs per
event beside the item count it replaced and what `apply` costs per event in all.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table

from sluice.bundle import ModelBundle
from sluice.intake import log_positions
from sluice.intake.log_positions import NO_POSITION
from sluice.serve.attributes import trained_log_counts
from sluice.serve.held import HeldColumns
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState

ITEMS, KNOWN, USERS, CUTOFF = 300_000, 250_000, 300_000, 1_000_000
SEGMENTS = ("cc-whole", "cc-part", "cc-unknown", "cc-unseen")
BATCH = 200_000


def reference_counts(model: LoadedModel, state: RealtimeState, tenant: str) -> np.ndarray:
    """The count before the columns: every held Interaction, one call each."""
    ids = [event.item_id for history in state.histories(tenant) for event in list(history)
           if not model.after_training(event.timestamp, event.position)]
    rows = model.bundle.item_index.rows(ids)
    return np.bincount(rows[rows >= 0], minlength=len(model.bundle.item_ids)).astype(np.int32)


def bundle(positions: bool) -> LoadedModel:
    rng = np.random.default_rng(1)
    users = 1_000
    user_items = sp.csr_matrix((np.ones(users, np.float32), (np.arange(users),
                                rng.integers(0, KNOWN, users))), shape=(users, KNOWN))
    meta = {"alpha": 1.0, "regularization": 0.1, "cutoff_ms": CUTOFF, "tenant": "default"}
    if positions:
        meta["raw_log"] = {"covered": {"cc-whole": 1 << 39, "cc-part": 1 << 30},
                           "unknown": ["cc-unknown"]}
    return LoadedModel(ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(users)]),
        item_ids=np.array([f"item-{i}" for i in range(KNOWN)]),
        user_factors=rng.normal(size=(users, 8)).astype(np.float32),
        item_factors=rng.normal(size=(KNOWN, 8)).astype(np.float32), user_items=user_items,
        popular=np.arange(100), popular_scores=np.linspace(100, 1, 100).astype(np.float32),
        meta=meta), "1")


def filled(events: int, seed: int = 0) -> tuple[RealtimeState, float]:
    """A state holding `events` interactions, and apply's seconds per event."""
    rng = np.random.default_rng(seed)
    state, spent, segment_ends = RealtimeState(), 0.0, [0] * len(SEGMENTS)
    for start in range(0, events, BATCH):
        n = min(BATCH, events - start)
        items = (np.minimum(rng.zipf(1.3, n), ITEMS) * 7919) % ITEMS
        users, times = rng.integers(0, USERS, n), rng.integers(0, 2 * CUTOFF, n)
        segments = rng.integers(0, len(SEGMENTS) + 1, n)
        batch, positions = [], []
        for k, (item, user, t, s) in enumerate(zip(items.tolist(), users.tolist(),
                                                   times.tolist(), segments.tolist(), strict=True)):
            batch.append({"event": "interaction", "id": f"e{start + k}", "user": f"u{user}",
                          "item": f"item-{item}", "type": "click", "timestamp": t})
            if s == len(SEGMENTS):
                positions.append(NO_POSITION)
            else:
                segment_ends[s] += 300  # a line's bytes; cc-part passes 1 << 30 at ~3.6M lines
                positions.append(log_positions.position(SEGMENTS[s], segment_ends[s]))
        began = time.perf_counter()
        state.apply(batch, positions)
        spent += time.perf_counter() - began
    return state, spent / events


def add_cost(events: int = 1_000_000) -> tuple[float, float]:
    """Seconds per event: HeldColumns.add, and the per-item count it replaced in `apply`."""
    columns, names = HeldColumns(), [f"item-{i}" for i in range(ITEMS)]
    items = [names[j] for j in np.random.default_rng(2).integers(0, ITEMS, events).tolist()]
    began = time.perf_counter()
    for k, item in enumerate(items):
        columns.add(item, k, k)
    added = time.perf_counter() - began
    counts: defaultdict[str, int] = defaultdict(int)
    began = time.perf_counter()
    for _k, item in enumerate(items):  # the same loop as above
        counts[item] += 1
    return added / events, (time.perf_counter() - began) / events


def timed(fn, *args) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - began, result


def measure(events: int, models: dict[str, LoadedModel]) -> list[dict]:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    state, apply_cost = filled(events)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    held = state.tenant("default").held
    column_bytes = sum(a.nbytes for chunk in held.snapshot().chunks() for a in chunk)
    rows = []
    for name, model in models.items():
        before, expected = timed(reference_counts, model, state, "default")
        after, counts = timed(lambda m: trained_log_counts(m, state.held("default")), model)
        assert np.array_equal(counts, expected), "the counts differ"
        rows.append({"held": f"{events:,}", "bundle": name, "trained": f"{int(counts.sum()):,}",
                     "before s": before, "after s": after, "ratio": before / after,
                     "apply us/event": apply_cost * 1e6, "columns MiB": column_bytes / 2**20,
                     "max RSS grew MiB": grown})
        print(table(rows[-1:], list(rows[-1])), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    models = {"positions": bundle(True), "time rule": bundle(False)}
    added, counted = add_cost()
    print(f"per event applied: HeldColumns.add {added * 1e6:.3f} us, the item count it "
          f"replaced {counted * 1e6:.3f} us", flush=True)
    rows = [row for events in args.sizes for row in measure(events, models)]
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
