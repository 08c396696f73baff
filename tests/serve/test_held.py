"""The held interactions by column (`sluice.serve.held`) and the count a model load makes from
them of the interactions it trained on (`attributes.trained_log_counts`): the same counts as
the former pass over every `Interaction` (kept here as `reference_counts`), whatever rule
tells an event's side (its position, a segment the model saw an unknown part of or nothing of,
an event without a position, a bundle without the raw log's positions)."""

from __future__ import annotations

import numpy as np
import pytest

from sluice import ids
from sluice.intake import log_positions
from sluice.intake.log_positions import NO_POSITION
from sluice.serve import attributes, held
from sluice.serve.attributes import trained_log_counts
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from tests.utils.models import synthetic_bundle

CUTOFF = 5_000
SEGMENTS = ("held-a", "held-b", "held-unknown", "held-unseen")  # the last: not in the meta
RAW_LOG = {"covered": {"held-a": 3_000, "held-b": 10**9}, "unknown": ["held-unknown"]}


def reference_counts(model: LoadedModel, state: RealtimeState, tenant: str) -> np.ndarray:
    """The count before the columns: every held Interaction, one call each."""
    ids = [event.item_id for history in state.histories(tenant) for event in list(history)
           if not model.after_training(event.timestamp, event.position)]
    rows = model.bundle.item_index.rows(ids)
    return np.bincount(rows[rows >= 0], minlength=len(model.bundle.item_ids)).astype(np.int32)


def model(raw_log: dict | None = RAW_LOG) -> LoadedModel:
    bundle = synthetic_bundle(items=40, users=5, heads=0)
    bundle.meta["cutoff_ms"] = CUTOFF
    if raw_log is not None:
        bundle.meta["raw_log"] = raw_log
    return LoadedModel(bundle, "1")


def click(n: int, user: str, item: str, timestamp: int, **more) -> dict:
    return {"event": "interaction", "id": f"e{n}", "user": user, "item": item, "type": "click",
            "timestamp": timestamp, **more}


def mixed_log(state: RealtimeState, events: int, seed: int = 0) -> None:
    """Events on both sides of the cutoff and of each segment's covered bytes, in each kind
    of segment and without a position, for known and unknown items, users and sessions (a
    session's history moves to its user), an event id repeated."""
    rng = np.random.default_rng(seed)
    batch, positions = [], []
    for n in range(events):
        item = f"i{rng.integers(0, 50)}"  # i40-i49: not in the model
        who = ({"user": f"u{rng.integers(0, 30)}"} if n % 5 else
               {"user": None, "session": f"s{rng.integers(0, 10)}"})
        if n % 97 == 0:
            who = {"user": f"u{n % 30}", "session": f"s{n % 10}"}  # ties the session to a user
        batch.append(click(n % (events - 3), who.pop("user"), item,
                           int(rng.integers(0, 2 * CUTOFF)), **who))
        segment = int(rng.integers(0, len(SEGMENTS) + 1))
        positions.append(NO_POSITION if segment == len(SEGMENTS) else log_positions.position(
            SEGMENTS[segment], int(rng.integers(1, 6_000))))
    state.apply(batch, positions)


@pytest.mark.parametrize("raw_log", [  # None: an older bundle, or one of landing files only
    RAW_LOG, None, {"covered": {}, "unknown": []}, {"covered": {}, "unknown": list(SEGMENTS)}],
    ids=["positions", "time-only", "nothing-covered", "all-unknown"])
def test_the_count_is_the_reference_count_over_several_chunks(monkeypatch, raw_log):
    monkeypatch.setattr(held, "CHUNK", 64)  # many full chunks and a partial one
    monkeypatch.setattr(attributes, "_COUNTED_AT_ONCE", 100)  # several bincounts
    state = RealtimeState()
    mixed_log(state, 2_000)
    snapshot = state.held("default")
    assert len(snapshot) == 1_997 and len(snapshot.full) == 31  # a repeated id: not held
    loaded = model(raw_log)
    expected = reference_counts(loaded, state, "default")
    assert 0 < expected.sum() < len(snapshot)  # events on both sides
    counts = trained_log_counts(loaded, snapshot)
    assert counts.dtype == np.int32 and np.array_equal(counts, expected)


@pytest.mark.parametrize("lookup", ["dict", "sorted-search", "sorted-reverse"])
def test_each_way_of_finding_the_model_rows_counts_the_same(monkeypatch, lookup):
    """A small catalog's dict, or a sorted map (a large catalog), searched for each held item
    or its ids looked up among the held items (many held items, `_model_rows`)."""
    monkeypatch.setattr(attributes, "_IDS_AT_ONCE", 7)  # several slices of the model's ids
    monkeypatch.setattr(attributes, "_SEARCH_PER_ID", 10**6 if lookup == "sorted-reverse" else 0)
    if lookup != "dict":
        monkeypatch.setattr(ids, "DICT_BELOW", 10)
    state = RealtimeState()
    mixed_log(state, 500, seed=3)
    state.apply([click(10**6 + n, "u1", item, 1) for n, item in enumerate(
        ["i1" + "x" * 40, "i2\x00", "new"])])  # longer than the ids, a trailing NUL, unknown
    loaded = model()
    assert isinstance(loaded.bundle.item_index, ids.DictMap) == (lookup == "dict")
    snapshot = state.held("default")
    state.apply([click(2 * 10**6, "u1", "i0", 1)])  # held after the snapshot: not counted
    rows = attributes._model_rows(loaded, snapshot)
    assert rows.tolist() == [loaded.bundle.item_index.get(name, -1) for name in snapshot.names]
    assert np.array_equal(trained_log_counts(loaded, snapshot),
                          reference_counts(loaded, state, "default") - (np.arange(40) == 0))


def test_each_rule_by_hand():
    state = RealtimeState()
    a, b, unknown, unseen = (log_positions.position(name, 0) for name in SEGMENTS)
    cases = [  # (item, timestamp, position, trained?)
        ("i1", CUTOFF + 9, a | 3_000, True),  # within a's covered bytes, whatever its time
        ("i1", 1, a | 3_001, False),  # past them, whatever its time
        ("i2", 1, b | 7, True),
        ("i2", CUTOFF, unknown | 1, True),  # an unknown part: by time
        ("i2", CUTOFF + 1, unknown | 1, False),
        ("i3", 1, unseen | 1, False),  # a segment the model saw nothing of: new
        ("i3", CUTOFF, NO_POSITION, True),  # no position: by time
        ("i3", CUTOFF + 1, NO_POSITION, False),
        ("i39", 1, NO_POSITION, True),
        ("new-item", 1, NO_POSITION, True),  # not a model item: not counted
    ]
    state.apply([click(n, "u1", item, t) for n, (item, t, _, _) in enumerate(cases)],
                [p for _, _, p, _ in cases])
    counts = trained_log_counts(model(), state.held("default"))
    assert {j: int(c) for j, c in enumerate(counts) if c} == {1: 1, 2: 2, 3: 1, 39: 1}
    by_time = trained_log_counts(model(None), state.held("default"))
    assert {j: int(c) for j, c in enumerate(by_time) if c} == {1: 1, 2: 2, 3: 2, 39: 1}


@pytest.mark.parametrize("reverse", [False, True])
def test_a_snapshot_holds_what_was_held_when_taken(monkeypatch, reverse):
    """A model loads in the poller's thread while events keep arriving: what is applied
    after the snapshot (filling its partial chunk, starting new ones, a new item) is not in
    it, whichever way the model's rows are found."""
    monkeypatch.setattr(held, "CHUNK", 8)
    if reverse:
        monkeypatch.setattr(ids, "DICT_BELOW", 10)
        monkeypatch.setattr(attributes, "_SEARCH_PER_ID", 10**6)
    state = RealtimeState()
    state.apply([click(n, "u1", "i1", 1) for n in range(12)])
    snapshot = state.held("default")
    state.apply([click(n, "u2", "i2", 1) for n in range(12, 40)])
    assert len(snapshot) == 12 and snapshot.names == ["i1"]
    assert [len(c[0]) for c in snapshot.chunks()] == [8, 4]
    assert trained_log_counts(model(None), snapshot)[1:3].tolist() == [12, 0]
    assert trained_log_counts(model(None), state.held("default"))[1:3].tolist() == [12, 28]
    assert len(state.held("nobody")) == 0 and not state.has("nobody")  # asking creates nothing


def test_item_counts_and_the_log_popularity_come_from_the_columns():
    state = RealtimeState()
    items = ["i3", "i1", "i3", "i2", "i1", "i4", "i3"]
    state.apply([click(n, f"u{n}", item, n) for n, item in enumerate(items)])
    held_now = state.tenant("default").held
    assert [held_now.count(i) for i in ("i1", "i2", "i3", "i4", "i5")] == [2, 1, 3, 1, 0]
    # most first; ties in the order the items were first seen
    assert state.popular("default", 3) == [("i3", 3.0), ("i1", 2.0), ("i2", 1.0)]
    assert state.popular("default", 10)[-1] == ("i4", 1.0)
    assert state.popular("nobody", 3) == []
