"""Serving tells the events a model trained on from new ones by where they sit in the raw log.

For real: events appended to a raw log on disk, ingested, built into the marts by dbt, a model
trained and bundled from them (`prepare`, `make_bundle`), and a serving `Service` that follows
the same log. A late event (stamped before the model's cutoff, appended after training) is
folded in; a trained one is not, whatever the time rule would say; a bundle without the raw
log's positions keeps the time rule.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sluice.bundle import ModelBundle
from sluice.intake import eventlog, log_positions
from sluice.intake.eventlog import EventLog
from sluice.intake.follower import LogFollower
from sluice.intake.log_coverage import UNKNOWN, UNSEEN, Coverage, writer_and_start
from sluice.learn.bundling import make_bundle
from sluice.learn.models import make_model
from sluice.learn.training import prepare
from sluice.serve.model import LoadedModel
from sluice.serve.service import Service
from sluice.settings import Settings
from sluice.warehouse.engine import DuckDBWarehouse, from_settings
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.positions import trained_positions
from sluice.warehouse.transform import dbt_build
from tests.utils.factories import environ, environment
from tests.utils.marts import taste_history

HOUR_MS = 3_600_000


def _events(frame: pd.DataFrame, prefix: str) -> list[dict]:
    return [{"event": "interaction", "id": f"{prefix}{n}", "tenant": "default",
             "user": row.user_id, "item": row.item_id, "type": row.interaction_type,
             "timestamp": int(pd.Timestamp(row.event_at).value // 1_000_000)}
            for n, row in enumerate(frame.itertuples())]


def _ingest_and_build(settings: Settings) -> None:
    warehouse = from_settings(settings)
    Ingestor(warehouse, settings.raw_location, settings.landing_location).run()
    dbt_build(warehouse, settings.home / "dbt", settings.dbt_vars())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("positions")
    with environ(environment(home)):
        settings = Settings()
    events = _events(taste_history(users=300, per_user=12), "t")
    # a writer that moved on from its first segments (whole: the record's prefix), then one
    # still appending to its only segment
    early = EventLog(settings.raw_location, segment_bytes=1)
    for chunk in range(3):
        early.append(events[chunk * 600:(chunk + 1) * 600])
    early.close()
    writer = EventLog(settings.raw_location)
    writer.append(events[1800:])
    _ingest_and_build(settings)
    prepared = prepare(settings, "default")
    final = make_model("als", factors=8, iterations=10, regularization=0.1)
    final.fit(prepared.full.matrix)
    bundle = ModelBundle.load(make_bundle(settings, prepared, final).save(home / "bundle"))
    yield {"settings": settings, "writer": writer, "bundle": bundle, "home": home}
    writer.close()


def _service(trained, bundle: ModelBundle | None = None) -> Service:
    """A serving process started after training: it replays the whole raw log."""
    service = Service(trained["settings"])
    service.install("default", LoadedModel(bundle or trained["bundle"], "1"))
    service.follow_log()
    return service


def _with_meta(bundle: ModelBundle, **changes) -> ModelBundle:
    meta = {k: v for k, v in {**bundle.meta, **changes}.items() if v is not None}
    return dataclasses.replace(bundle, meta=meta)


def _vector(service: Service, user: str) -> np.ndarray:
    rec = service.recommender("default")
    history = service.state.history("default", user)
    vector = rec.users.vector(user, service.state.version("default", user),
                              rec.users.new_pairs(history))
    assert vector is not None
    return vector


def _item_outside_taste(bundle: ModelBundle, user: str) -> str:
    trained = set(bundle.item_ids[bundle.user_items[bundle.user_index.get(user)].indices])
    return next(str(i) for i in bundle.item_ids if i not in trained)


def test_the_bundle_records_every_segment_of_the_raw_log_the_marts_hold(trained):
    found = trained["bundle"].meta["raw_coverage"]
    assert "raw_log" not in trained["bundle"].meta  # a server before the compact form: by time
    segments = {Path(p).name: size
                for p, size in eventlog.segment_sizes(trained["settings"].raw_location)}
    assert len(segments) == 4 and all(segments.values())
    first, second, third = sorted(n for n in segments if trained["writer"].writer_id not in n)
    writer, start = writer_and_start(second) or ("", 0)
    # a local log's writer may append to its newest segment: each writer's is named with its
    # bytes; those its writer moved on from, wholly loaded, are in its prefix
    assert found == {"whole_through": {writer: start}, "unknown": [], "unloaded": [],
                     "covered": {n: size for n, size in segments.items() if n not in (first,
                                                                                     second)}}
    model = LoadedModel(trained["bundle"], "1")
    assert not model.after_training(0, log_positions.position(first, segments[first]))


def test_a_bundle_naming_every_segment_loads_and_answers_the_same(trained, tmp_path):
    """A bundle from before the record was compacted: each segment named with its bytes."""
    segments = {Path(p).name: size
                for p, size in eventlog.segment_sizes(trained["settings"].raw_location)}
    explicit = {"covered": segments, "unknown": []}  # nothing appended yet in this module
    trained["bundle"].save(tmp_path / "new")
    _with_meta(trained["bundle"], raw_coverage=None, raw_log=explicit).save(tmp_path / "old")
    compact, old = (_service(trained, ModelBundle.load(tmp_path / name))
                    for name in ("new", "old"))
    assert old.recommender("default").users.model.trained.coverage.covered == segments
    for key in map(str, trained["bundle"].user_ids):
        pairs = [service.recommender("default").users.new_pairs(
            service.state.history("default", key)) for service in (compact, old)]
        assert pairs[0] == pairs[1] == []


def test_an_event_stamped_before_the_cutoff_and_appended_after_training_is_folded_in(trained):
    bundle = trained["bundle"]
    cutoff = int(bundle.meta["cutoff_ms"])
    user = "u1"
    service = _service(trained)
    rec = service.recommender("default")
    assert rec.users.new_pairs(service.state.history("default", user)) == []  # all trained
    trained_vector = _vector(service, user)
    item = _item_outside_taste(bundle, user)
    # a late batch: another writer (a new segment), and the trained segment's own writer
    # (the same segment, past what training loaded)
    late = EventLog(trained["settings"].raw_location)
    late.append([{"event": "interaction", "id": "late-1", "tenant": "default", "user": user,
                  "item": item, "type": "purchase", "timestamp": cutoff - HOUR_MS}])
    late.close()
    trained["writer"].append([{"event": "interaction", "id": "late-2", "tenant": "default",
                               "user": "u2", "item": _item_outside_taste(bundle, "u2"),
                               "type": "purchase", "timestamp": cutoff - HOUR_MS}])
    assert service.follow_log() == 2
    assert rec.users.new_pairs(service.state.history("default", user)) == [
        (bundle.item_index.get(item), 4.0)]
    assert len(rec.users.new_pairs(service.state.history("default", "u2"))) == 1
    assert not np.allclose(_vector(service, user), trained_vector)
    # a serving process started now replays the log and folds in the same
    again = _service(trained)
    assert again.recommender("default").users.new_pairs(
        again.state.history("default", user)) == [(bundle.item_index.get(item), 4.0)]


def test_an_event_posted_to_serving_after_training_is_folded_in_whatever_its_time(trained):
    bundle = trained["bundle"]
    service = _service(trained)
    item = _item_outside_taste(bundle, "u4")
    service.accept([{"event": "interaction", "id": "posted-1", "tenant": "default",
                     "user": "u4", "item": item, "type": "click",
                     "timestamp": int(bundle.meta["cutoff_ms"]) - 24 * HOUR_MS}])
    history = service.state.history("default", "u4")
    assert history[-1].position != log_positions.NO_POSITION
    assert service.recommender("default").users.new_pairs(history) == [
        (bundle.item_index.get(item), 1.0)]


def test_trained_events_are_not_folded_in_again_even_when_the_time_rule_would(trained):
    # a cutoff a day early: by time alone, the user's last day of trained events is new
    early = _with_meta(trained["bundle"],
                       cutoff_ms=int(trained["bundle"].meta["cutoff_ms"]) - 24 * HOUR_MS)
    service = _service(trained, early)
    users = service.recommender("default").users
    touched = {"u1", "u2", "u4", "u5", "u6", "u9"}  # other tests append events of these
    late_by_time = [key for key in map(str, early.user_ids)
                    if key not in touched and any(e.timestamp > users.model.trained.cutoff_ms
                           for e in service.state.history("default", key))]
    assert late_by_time  # the check below means something
    for key in late_by_time:
        assert users.new_pairs(service.state.history("default", key)) == []


def test_a_bundle_without_the_raw_logs_positions_keeps_the_time_rule(trained):
    bundle = trained["bundle"]
    old = _with_meta(bundle, raw_coverage=None)
    cutoff = int(bundle.meta["cutoff_ms"])
    service = _service(trained, old)
    users = service.recommender("default").users
    assert users.model.trained.coverage is None
    before, after = _item_outside_taste(bundle, "u5"), _item_outside_taste(bundle, "u6")
    service.accept([
        {"event": "interaction", "id": "old-1", "tenant": "default", "user": "u5",
         "item": before, "type": "click", "timestamp": cutoff - HOUR_MS},
        {"event": "interaction", "id": "old-2", "tenant": "default", "user": "u6",
         "item": after, "type": "click", "timestamp": cutoff + HOUR_MS}])
    assert users.new_pairs(service.state.history("default", "u5")) == []  # as before
    assert users.new_pairs(service.state.history("default", "u6")) == [
        (bundle.item_index.get(after), 1.0)]
    # the trained history, replayed from the log, is not folded in either (nor u1's late
    # event, when an earlier test appended one: it is older than the cutoff)
    assert users.new_pairs(service.state.history("default", "u1")) == []


def test_a_segment_loaded_again_after_the_marts_were_built_goes_by_time(trained, tmp_path):
    """Ingest between dbt and training: what the marts hold of that segment is not known."""
    settings = trained["settings"]
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(settings.warehouse_path, copy)
    warehouse = DuckDBWarehouse(copy)
    before = trained_positions(warehouse, settings.raw_location)
    assert before is not None and before["unknown"] == []
    extra = EventLog(settings.raw_location)
    extra.append([{"event": "interaction", "id": "between-1", "tenant": "default",
                   "user": "u9", "item": "i1", "type": "click", "timestamp": 1}])
    extra.close()
    Ingestor(warehouse, settings.raw_location, settings.landing_location).run()
    found = trained_positions(warehouse, settings.raw_location)
    assert found is not None
    # every segment the earlier tests appended to was loaded now, after the marts were built;
    # the others keep what they said
    listed = {Path(p).name for p, _ in eventlog.segment_sizes(settings.raw_location)}
    then, now = Coverage.of(before), Coverage.of(found)
    assert then is not None and now is not None
    assert set(found["unknown"]) == {n for n in listed if then.of_segment(n) != now.of_segment(n)}
    assert {n for n in listed if now.of_segment(n) == UNKNOWN} == set(found["unknown"]) != set()
    assert UNSEEN not in map(now.of_segment, listed)
    # serving goes by time in those segments
    bundle = _with_meta(trained["bundle"], raw_coverage=found)
    model = LoadedModel(bundle, "2")
    cutoff = model.cutoff_ms
    name = found["unknown"][0]
    position = log_positions.position(name, 10)
    assert not model.after_training(cutoff - 1, position)
    assert model.after_training(cutoff + 1, position)


def test_segments_of_a_url_log_are_named_as_a_local_follower_names_them(tmp_path):
    """The manifest keys a URL's segments by full URL; serving may follow a path: the name
    inside the log is what both share."""
    from sluice.warehouse.positions import _segment_of, _spelled

    root = _spelled("memory://raw")
    assert _segment_of("memory://raw/segment-0000000000001-w.jsonl", root) == \
        "segment-0000000000001-w.jsonl"
    assert _segment_of("memory://landing/segment-0000000000001-w.jsonl", root) is None
    assert _segment_of("memory://raw/events.csv", root) is None
    local = _spelled(tmp_path / "raw")
    assert _segment_of(f"{tmp_path}/raw/segment-1-w.jsonl", local) == "segment-1-w.jsonl"
    assert _segment_of(f"{tmp_path}/landing/segment-1-w.jsonl", local) is None


def test_a_follower_on_a_url_log_gives_each_event_its_segment_name_and_end(tmp_path):
    log = EventLog("memory://positions-raw")
    written = log.append([{"n": 1}, {"n": 22}])
    positions: list[int] = []
    events = LogFollower("memory://positions-raw").poll(positions=positions)
    assert [e["n"] for e in events] == [1, 22]
    assert positions == written
    (name, first), (_, second) = map(log_positions.unpack, positions)
    assert name.startswith("segment-") and (first, second) == (8, 17)
