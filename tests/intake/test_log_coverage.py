"""The compact raw-log record gives serving the same answer as the explicit one, event by event.

Logs are simulated as `EventLog` writes them: each writer starts segments at increasing
milliseconds, one after the other; on an object store a segment never changes once written,
elsewhere only a writer's newest segment grows. The manifest at training time is drawn at
random over what was there: segments loaded whole, in part (still being written, or loaded
before their last lines), loaded again after the marts were built (unknown), never loaded
(gaps among loaded ones, the newest not yet), loaded and gone from the listing. For every
line that ever ends in any segment (those started after training too), the compact record
and the explicit one must say the same.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from sluice.intake import log_positions
from sluice.intake.log_coverage import UNSEEN, WHOLE, Coverage, compact, writer_and_start
from sluice.serve.model import TrainedLog

CUTOFF = 1_000_000


@dataclass
class Segment:
    name: str
    ends: list[int]  # where each of its lines ends, once the log has stopped growing
    listed: int | None = None  # its size when training listed the log (None: not listed)
    loaded: tuple[int, bool] | None = None  # its manifest row: bytes, whether the marts hold it


@dataclass
class Log:
    immutable: bool
    segments: list[Segment] = field(default_factory=list)

    def explicit(self) -> dict:
        """The record as bundles wrote it before it was compacted."""
        rows = {s.name: s.loaded for s in self.segments if s.loaded is not None}
        return {"covered": {n: b for n, (b, seen) in rows.items() if seen},
                "unknown": sorted(n for n, (_, seen) in rows.items() if not seen)}

    def compact(self) -> dict:
        return compact({s.name: s.loaded for s in self.segments if s.loaded is not None},
                       {s.name: s.listed for s in self.segments if s.listed is not None},
                       self.immutable)


def _name(ms: int, writer: str) -> str:
    return f"segment-{ms:013d}-{writer}.jsonl"


def _lines(rng: random.Random) -> list[int]:
    ends, end = [], 0
    for _ in range(rng.randint(1, 5)):
        end += rng.randint(20, 90)
        ends.append(end)
    return ends


def _loaded(rng: random.Random, ends_then: list[int]) -> tuple[int, bool] | None:
    """A manifest row for a segment whose lines ended at `ends_then` when it was loaded."""
    kind = rng.choice(["whole", "whole", "whole", "part", "unknown", "none"])
    if kind == "none" or not ends_then:
        return None
    if kind == "part":
        return rng.choice([0, *ends_then[:-1]]), True
    return ends_then[-1], kind == "whole"


def _random_log(rng: random.Random, immutable: bool) -> Log:
    log = Log(immutable)
    clock = rng.randint(1, 10**6)
    for writer in [f"host-{w}-{rng.randrange(16**6):06x}" for w in range(rng.randint(1, 4))]:
        count = rng.randint(1, 8)
        started_after = min(count - 1, rng.choice([0, 0, 0, 1, 2]))  # after training listed
        for n in range(count):
            clock += rng.randint(1, 50)
            ends = _lines(rng)
            if n >= count - started_after:
                log.segments.append(Segment(_name(clock, writer), ends))
                continue
            # what the log held when ingest last read it, and when training listed it: all of
            # it, but for a segment its writer was appending to then (the newest may have
            # grown since the listing too)
            newest = n == count - started_after - 1
            growing = not immutable and (newest or rng.random() < 0.3)
            at_load = ends[:rng.randint(0, len(ends))] if growing else ends
            at_listing = (ends[:rng.randint(len(at_load), len(ends))] if newest and growing
                          else ends)
            segment = Segment(_name(clock, writer), ends, at_listing[-1] if at_listing else 0,
                              _loaded(rng, at_load))
            if segment.loaded is not None and rng.random() < 0.03:
                segment.listed = None  # gone from the listing since it was loaded
            log.segments.append(segment)
    if rng.random() < 0.1:  # a file named like a segment, not by EventLog
        log.segments.append(Segment("segment-7-odd.jsonl", [40], 40, (40, True)))
    return log


def _same_answers(log: Log, arrays_too: bool = True) -> int:
    old = TrainedLog.of({"raw_log": log.explicit()}, CUTOFF)
    new = TrainedLog.of({"raw_coverage": json.loads(json.dumps(log.compact()))}, CUTOFF)
    checked, times, positions = 0, [], []
    for segment in log.segments:
        for end in segment.ends:
            position = log_positions.position(segment.name, end)
            for timestamp in (CUTOFF - 1, CUTOFF + 1):
                assert new.after(timestamp, position) == old.after(timestamp, position), (
                    segment, log.compact())
                checked += 1
                times.append(timestamp)
                positions.append(position)
    if not arrays_too:
        return checked
    # the cold count's rule over arrays (sluice.serve.held) says the same of every event; its
    # table spans every segment number this process has seen, so not for every random log
    arrays = np.array(times, dtype=np.int64), np.array(positions, dtype=np.int64)
    expected = [not old.after(t, p) for t, p in zip(times, positions, strict=True)]
    assert new.trained(*arrays).tolist() == old.trained(*arrays).tolist() == expected
    return checked


@pytest.mark.parametrize("immutable", [True, False], ids=["object store", "appending"])
def test_the_compact_record_answers_as_the_explicit_one_for_every_line(immutable):
    rng = random.Random(20261203 + immutable)
    checked = sum(_same_answers(_random_log(rng, immutable), arrays_too=n % 50 == 0)
                  for n in range(2_000))
    assert checked > 20_000


def _writer_log(immutable: bool, rows: list[tuple[int, bool] | None]) -> Log:
    """One writer's segments of 100 bytes each, loaded as `rows` says."""
    return Log(immutable, [Segment(_name(ms, "w"), [50, 100], 100, row)
                           for ms, row in enumerate(rows, start=1)])


def test_a_segment_not_loaded_between_loaded_ones_is_named_not_covered():
    """Ingest's listing missed one object that later ones of its writer were listed after."""
    log = _writer_log(True, [(100, True), None, (100, True), (100, True)])
    record = log.compact()
    assert record == {"whole_through": {"w": 4}, "covered": {}, "unknown": [],
                      "unloaded": [_name(2, "w")]}
    coverage = Coverage.of(record)
    assert coverage is not None
    assert [coverage.of_segment(s.name) for s in log.segments] == [WHOLE, UNSEEN, WHOLE, WHOLE]
    assert _same_answers(log) == 16


def test_partial_and_unknown_segments_inside_a_prefix_keep_their_entries():
    log = _writer_log(True, [(100, True), (50, True), (100, False), (100, True)])
    assert log.compact() == {"whole_through": {"w": 4}, "covered": {_name(2, "w"): 50},
                             "unknown": [_name(3, "w")], "unloaded": []}
    assert _same_answers(log) == 16


def test_a_segment_that_may_still_grow_is_named_with_its_bytes():
    """Appending (a local log): the writer's newest segment is named even when the marts hold
    all of it so far; its older ones can no longer grow."""
    log = _writer_log(False, [(100, True), (100, True), (100, True)])
    assert log.compact() == {"whole_through": {"w": 2}, "covered": {_name(3, "w"): 100},
                             "unknown": [], "unloaded": []}
    log.segments[-1].ends.append(180)  # a line appended after training: new
    assert _same_answers(log) == 14
    assert TrainedLog.of({"raw_coverage": log.compact()}, CUTOFF).after(
        0, log_positions.position(_name(3, "w"), 180))


def test_a_segment_loaded_before_its_last_lines_is_not_whole():
    """Loaded in part, then its writer moved on: the listing says more than the marts hold."""
    log = _writer_log(False, [(50, True), (100, True), None])
    assert log.compact() == {"whole_through": {"w": 2}, "covered": {_name(1, "w"): 50},
                             "unknown": [], "unloaded": []}
    assert _same_answers(log) == 12


def test_without_a_listing_every_segment_is_named_as_before():
    log = _writer_log(True, [(100, True), None, (100, False)])
    assert compact({s.name: s.loaded for s in log.segments if s.loaded is not None}, None,
                   True) == log.explicit()


def test_each_writer_has_its_own_prefix():
    segments = [Segment(_name(1, "a"), [100], 100, (100, True)),
                Segment(_name(2, "b"), [100], 100, None),
                Segment(_name(3, "b"), [100], 100, (100, True)),
                Segment(_name(4, "a"), [100], 100, None),
                Segment(_name(5, "c"), [100], 100, (100, False))]
    log = Log(True, segments)
    assert log.compact() == {"whole_through": {"a": 1, "b": 3}, "covered": {},
                             "unknown": [_name(5, "c")], "unloaded": [_name(2, "b")]}
    assert _same_answers(log) == 10


def test_names_not_made_by_a_writer_are_named():
    assert writer_and_start("segment-0000000000042-host-1-abc.jsonl") == ("host-1-abc", 42)
    assert writer_and_start("segment-42-w.jsonl") is None  # not 13 digits: not a writer's
    assert writer_and_start("segment-0000000000042-.jsonl") is None
    log = Log(True, [Segment("segment-42-w.jsonl", [10], 10, (10, True))])
    assert log.compact()["covered"] == {"segment-42-w.jsonl": 10}


def test_the_record_of_many_whole_objects_does_not_grow_with_them():
    segments = [Segment(_name(ms, f"writer-{ms % 4}"), [60], 60, (60, True))
                for ms in range(1, 20_001)]
    log = Log(True, segments)
    explicit, compacted = (len(json.dumps(r)) for r in (log.explicit(), log.compact()))
    assert explicit > 20_000 * 40 and compacted < 200
    assert _same_answers(Log(True, segments[:2_000])) == 4_000
