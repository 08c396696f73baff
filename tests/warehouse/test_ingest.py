"""Ingest: raw log segments and landing files into DuckDB raw.*, exactly once."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pytest

from sluice.intake import tabular
from sluice.intake.eventlog import EventLog, segments
from sluice.intake.events import parse_event
from sluice.warehouse import ingest, loading, sources
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.unused import not_used
from tests.utils.reads import file_reads

T0 = 1_750_000_000_000


def _ev(n: int, kind: str = "interaction", **extra) -> dict:
    base = {"id": f"e{n}", "timestamp": T0 + n * 1000}
    if kind == "interaction":
        base |= {"event": "interaction", "user": f"u{n % 5}", "session": f"s{n % 3}",
                 "item": f"i{n % 7}", "type": "click"}
    elif kind == "item":
        base |= {"event": "item", "item": f"i{n}",
                 "fields": [{"name": "color", "value": "red"}, {"name": "tags", "value": ["a"]}]}
    elif kind == "user":
        base |= {"event": "user", "user": f"u{n}", "fields": {"country": "de"}}
    elif kind == "ranking":
        base |= {"event": "ranking", "session": f"s{n}", "items": [{"id": "i1"}, {"id": "i2"}]}
    return base | extra


def _write_jsonl(path: Path, events: list, raw_lines: dict[int, str] | None = None) -> Path:
    """JSON lines; raw_lines puts literal text at the given 0-based positions."""
    lines = [json.dumps(e) for e in events]
    for position, text in sorted((raw_lines or {}).items()):
        lines.insert(position, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.warehouse = root / "warehouse.duckdb"
        self.raw = root / "raw"
        self.landing = root / "landing"
        self.landing.mkdir(parents=True)

    def ingestor(self, **kwargs) -> Ingestor:
        return Ingestor(self.warehouse, self.raw, self.landing, **kwargs)

    def run(self, **kwargs) -> ingest.IngestReport:
        return self.ingestor(**kwargs).run()

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def count(self, table: str = "raw.events", where: str = "true", params=None) -> int:
        return self.rows(f"select count(*) from {table} where {where}", params)[0][0]

    def ids(self) -> list[str]:
        return sorted(r[0] for r in self.rows("select event_id from raw.events"))

    def landing_path(self, name: str) -> str:
        return str((self.landing / name).resolve())


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def _by_path(report) -> dict[str, ingest.FileResult]:
    return {Path(f.path).name: f for f in report.files}


# --- JSON lines landing files -------------------------------------------------------------


def test_jsonl_landing_files_load(env):
    events = [_ev(1, "item"), _ev(2, "user"), _ev(3, "ranking"), _ev(4, value=2.5, ranking="r3"),
              _ev(5, tenant="shop")]
    _write_jsonl(env.landing / "a.jsonl", events[:3])
    _write_jsonl(env.landing / "nested" / "b.ndjson", events[3:])
    report = env.run()
    assert report.rows_loaded == len(events)
    assert report.summary()["files"] == 2
    assert {f.status for f in report.files} == {"loaded"}
    assert env.count() == len(events)

    got = {r[0]: r for r in env.rows(
        "select event_id, tenant, event_type, event_at, user_id, session_id, item_id, "
        "interaction_type, ranking_id, event_value, fields, items, source_file from raw.events")}
    for raw in events:
        parsed = parse_event(raw)
        row = got[parsed["id"]]
        assert row[1] == parsed["tenant"]
        assert row[2] == parsed["event"]
        expected_at = datetime.fromtimestamp(parsed["timestamp"] / 1000, tz=UTC)
        assert row[3] == expected_at.replace(tzinfo=None)
        assert row[4:9] == tuple(parsed.get(k) for k in ("user", "session", "item", "type",
                                                          "ranking"))
        assert row[9] == parsed.get("value")
        assert (json.loads(row[10]) if row[10] else None) == parsed.get("fields")
        assert (json.loads(row[11]) if row[11] else None) == parsed.get("items")
    assert got["e1"][12] == env.landing_path("a.jsonl")
    assert got["e4"][12] == env.landing_path("nested/b.ndjson")

    manifest = {r[0]: r[1:] for r in env.rows(
        "select path, size_bytes, checksum, rows_loaded, rows_quarantined from raw.manifest")}
    path_a = env.landing / "a.jsonl"
    assert manifest[env.landing_path("a.jsonl")] == (
        path_a.stat().st_size, hashlib.sha256(path_a.read_bytes()).hexdigest(), 3, 0)


def test_rerun_loads_nothing(env):
    _write_jsonl(env.landing / "a.jsonl", [_ev(n) for n in range(10)])
    first = env.run()
    assert first.rows_loaded == 10
    manifest_before = env.rows("select * from raw.manifest")
    second = env.run()
    assert second.rows_loaded == 0
    assert [f.status for f in second.files] == ["unchanged"]
    assert second.as_rows() == []
    assert second.summary()["files"] == 0
    assert env.count() == 10
    assert env.rows("select * from raw.manifest") == manifest_before


def test_bad_lines_quarantined_good_lines_load(env):
    no_type = _ev(3)
    del no_type["type"]
    path = _write_jsonl(env.landing / "mixed.jsonl", [_ev(1), _ev(2), no_type, _ev(4)],
                        raw_lines={1: '{"event": "interaction", broken', 3: "",
                                   5: '["not", "an", "object"]'})
    # lines: 1 e1, 2 broken, 3 e2, 4 blank, 5 no_type, 6 array, 7 e4
    report = env.run()
    result = _by_path(report)["mixed.jsonl"]
    assert result.status == "loaded"
    assert (result.rows_loaded, result.rows_quarantined) == (3, 3)
    assert env.ids() == ["e1", "e2", "e4"]
    quarantined = env.rows("select source_file, line_number, record, reason from raw.quarantine "
                           "order by line_number")
    assert [q[1] for q in quarantined] == [2, 5, 6]
    assert {q[0] for q in quarantined} == {str(path.resolve())}
    text = path.read_text().splitlines()
    assert [q[2] for q in quarantined] == [text[1], text[4], text[5]]
    assert "not JSON" in quarantined[0][3]
    assert quarantined[1][3].startswith("type:")
    assert quarantined[2][3].startswith("event:")
    assert env.rows("select rows_loaded, rows_quarantined from raw.manifest") == [(3, 3)]


def test_a_line_giving_a_key_twice_is_quarantined_naming_it(env):
    """As `POST /v1/events` refuses it: which user `{"user": "u1", ..., "user": "u2"}` is
    for would be the reader's guess. Lines past the first block of lines are checked too."""
    twice = '{"event": "interaction", "id": "t1", "timestamp": 1767225600000, "user": "u1", ' \
            '"item": "i", "type": "click", "user": "u2"}'
    nested = '{"event": "item", "id": "t2", "timestamp": 1767225600000, "item": "i", ' \
             '"fields": [{"name": "a", "value": 1, "value": 2}]}'
    colons = '{"event": "item", "id": "t3:\\"x\\":", "timestamp": 1767225600000, ' \
             '"item": "i:\\"", "fields": [{"name": "a:\\\\", "value": "\\"b\\": 1"}]}'
    events = [_ev(n) for n in range(10_002)]
    _write_jsonl(env.landing / "twice.jsonl", events,
                 raw_lines={2: twice, 10_001: nested, 10_003: colons})
    result = _by_path(env.run())["twice.jsonl"]
    assert (result.rows_loaded, result.rows_quarantined) == (10_003, 2)
    quarantined = env.rows("select line_number, reason from raw.quarantine order by 1")
    assert [q[0] for q in quarantined] == [3, 10_002]
    assert quarantined[0][1].startswith("user: given twice in one object")
    assert quarantined[1][1].startswith("fields[0].value: given twice in one object")
    assert env.count() == 10_003
    # the run's not-used report groups by the field before the reason's first colon
    report = not_used(env.warehouse, datetime(2000, 1, 1, tzinfo=UTC), {})["quarantined"]
    assert sorted(group["field"] for group in report) == ["fields[0].value", "user"]


def test_internal_events_refused_in_landing(env):
    recommendation = _ev(1, "ranking", event="recommendation")
    _write_jsonl(env.landing / "a.jsonl", [recommendation, _ev(2)])
    report = env.run()
    assert report.rows_loaded == 1 and report.rows_quarantined == 1
    assert env.ids() == ["e2"]


def test_duplicate_ids_across_files_load_once(env):
    _write_jsonl(env.landing / "a.jsonl", [_ev(n) for n in (1, 2, 3)])
    _write_jsonl(env.landing / "b.jsonl", [_ev(n) for n in (2, 3, 4, 5, 5)])
    # the same id in another tenant is another event
    _write_jsonl(env.landing / "c.jsonl", [_ev(1, tenant="shop")])
    report = env.run()
    files = _by_path(report)
    assert files["a.jsonl"].rows_loaded == 3
    assert (files["b.jsonl"].rows_loaded, files["b.jsonl"].duplicates_skipped) == (2, 3)
    assert files["c.jsonl"].rows_loaded == 1
    assert report.duplicates_skipped == 3
    assert report.summary()["duplicates_skipped"] == 3
    assert env.count() == 6
    assert env.rows("select tenant, count(*) from raw.events group by tenant order by tenant") \
        == [("default", 5), ("shop", 1)]
    # the first file's copy wins
    source = env.rows("select source_file from raw.events where event_id = 'e2'")
    assert source == [(env.landing_path("a.jsonl"),)]


def test_a_landing_file_no_reader_takes_is_reported_each_run_not_skipped_in_silence(env):
    _write_jsonl(env.landing / "a.jsonl", [_ev(1)])
    _write_jsonl(env.landing / "b.json", [_ev(2)])
    _write_jsonl(env.landing / "export" / "C.JSONL", [_ev(3)])
    _write_jsonl(env.landing / ".partial.json", [_ev(4)])  # hidden: an upload in progress
    _write_jsonl(env.landing / "d.jsonl.tmp", [_ev(5)])  # so is this
    for _ in range(2):  # ignored again until renamed: never loaded, never forgotten
        report = env.run()
        ignored = report.summary()["ignored_files"]
        assert ignored == [str((env.landing / n).resolve()) for n in ("b.json", "export/C.JSONL")]
        rows = {r["file"].rsplit("/", 1)[-1]: r for r in report.table_rows()}
        assert rows["b.json"]["status"] == "ignored" and ".partial.json" not in rows
        assert all("rename a data file" in f.message for f in report.files if f.status == "ignored")
    assert env.ids() == ["e1"]
    (env.landing / "b.json").rename(env.landing / "b.jsonl")
    assert env.run().summary()["ignored_files"] == [str((env.landing / "export/C.JSONL"
                                                         ).resolve())]
    assert env.ids() == ["e1", "e2"]


def test_landing_file_changed_after_loading_is_reported_not_reloaded(env):
    path = _write_jsonl(env.landing / "a.jsonl", [_ev(1), _ev(2)])
    env.run()
    checksum = env.rows("select checksum from raw.manifest")[0][0]
    _write_jsonl(path, [_ev(1), _ev(2), _ev(3)])
    report = env.run()
    result = _by_path(report)["a.jsonl"]
    assert result.status == "changed_after_loading"
    assert result.message
    assert report.summary()["changed_files"] == [str(path.resolve())]
    assert [r["status"] for r in report.as_rows()] == ["changed_after_loading"]
    assert env.ids() == ["e1", "e2"]
    assert env.rows("select checksum from raw.manifest")[0][0] == checksum


def test_same_size_rewrite_is_detected(env):
    path = _write_jsonl(env.landing / "a.jsonl", [_ev(1, user="ua")])
    env.run()
    size = path.stat().st_size
    _write_jsonl(path, [_ev(1, user="ub")])
    assert path.stat().st_size == size
    assert _by_path(env.run())["a.jsonl"].status == "changed_after_loading"
    assert env.rows("select user_id from raw.events") == [("ua",)]


def _gzip_corrupt_body(events: list) -> bytes:
    data = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
    middle = len(data) // 2
    return data[:12] + bytes(b ^ 0x5A for b in data[12:middle]) + data[middle:]


@pytest.mark.parametrize("damage", ["garbled_body", "truncated", "not_gzip"])
def test_corrupt_gzip_quarantined_whole(env, damage):
    events = [_ev(n, fields={"pad": "x" * 50}) for n in range(200)]
    good = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events[:5]))
    (env.landing / "good.jsonl.gz").write_bytes(good)
    bad_bytes = {
        "garbled_body": _gzip_corrupt_body(events),
        "truncated": gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))[:-40],
        "not_gzip": b"this is not gzip at all\n" * 10,
    }[damage]
    bad = env.landing / "bad.jsonl.gz"
    bad.write_bytes(bad_bytes)
    report = env.run()
    files = _by_path(report)
    assert files["good.jsonl.gz"].rows_loaded == 5
    assert files["bad.jsonl.gz"].status == "unreadable"
    assert files["bad.jsonl.gz"].message
    assert report.summary()["unreadable_files"] == [str(bad.resolve())]
    assert env.count(where="source_file = ?", params=[str(bad.resolve())]) == 0
    quarantine = env.rows("select line_number, record, reason from raw.quarantine "
                          "where source_file = ?", [str(bad.resolve())])
    assert len(quarantine) == 1
    assert quarantine[0][0] is None and quarantine[0][1] is None and quarantine[0][2]
    # quarantined once: a re-run does not try again
    again = _by_path(env.run())
    assert again["bad.jsonl.gz"].status == "unchanged"
    assert env.count("raw.quarantine") == 1


# --- raw log segments ---------------------------------------------------------------------


def test_raw_log_segments_load_and_grow(env):
    log = EventLog(env.raw)
    first = [parse_event(_ev(n)) for n in range(5)]
    recommendation = parse_event(
        _ev(5, "ranking", event="recommendation",
            items=[{"id": "i1", "score": 0.5, "position": 1, "source": "als"}]),
        allow_internal=True)
    log.append([*first, recommendation])
    report = env.run()
    (segment,) = segments(env.raw)
    result = _by_path(report)[segment.name]
    assert result.kind == "raw_log"
    assert result.rows_loaded == 6
    assert env.rows("select event_type from raw.events where event_id = 'e5'") == [
        ("recommendation",)]

    assert _by_path(env.run())[segment.name].status == "unchanged"

    log.append([parse_event(_ev(n)) for n in range(6, 9)])
    with open(segment, "ab") as handle:  # a torn line, then one still being written
        handle.write(b'{"event":"interaction",\n{"event":"interaction","id":"e9"')
    result = _by_path(env.run())[segment.name]
    assert result.status == "loaded"
    assert result.rows_loaded == 3
    assert result.rows_quarantined == 1
    assert env.ids() == sorted(f"e{n}" for n in range(9))
    torn = env.rows("select line_number from raw.quarantine")
    assert torn == [(10,)]  # 6 + 3 lines before it
    complete = segment.read_bytes()
    consumed = complete.rfind(b"\n") + 1
    assert env.rows("select size_bytes, checksum, rows_loaded, rows_quarantined "
                    "from raw.manifest") == [
        (consumed, hashlib.sha256(complete[:consumed]).hexdigest(), 9, 1)]

    with open(segment, "ab") as handle:  # the partial line is finished
        handle.write(b',"timestamp":1750000000000,"session":"s","item":"i","type":"view"}\n')
    result = _by_path(env.run())[segment.name]
    assert result.rows_loaded == 1
    assert env.count() == 10
    assert env.rows("select interaction_type from raw.events where event_id = 'e9'") == [
        ("view",)]


def test_raw_segment_rewritten_after_loading(env):
    log = EventLog(env.raw)
    log.append([parse_event(_ev(1)), parse_event(_ev(2))])
    env.run()
    (segment,) = segments(env.raw)
    segment.write_bytes(segment.read_bytes().replace(b'"e1"', b'"x1"'))
    result = _by_path(env.run())[segment.name]
    assert result.status == "changed_after_loading"
    assert env.ids() == ["e1", "e2"]


def test_a_run_reads_only_what_changed_since_the_last(env, monkeypatch):
    """Sealed segments and old landing files are not read again (a run costs what is new,
    not the whole history); one touched since its load is read and checked."""
    log = EventLog(env.raw)
    log.append([parse_event(_ev(1)), parse_event(_ev(2))])
    log.close()
    old = _write_jsonl(env.landing / "old.jsonl", [_ev(3)])
    (segment,) = segments(env.raw)
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    for path in (segment, old):
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert env.run().rows_loaded == 3
    opened = file_reads(monkeypatch)
    _write_jsonl(env.landing / "new.jsonl", [_ev(4)])
    again = env.run()
    assert again.rows_loaded == 1 and env.count() == 4
    assert str(segment) not in opened and env.landing_path("old.jsonl") not in opened
    assert env.landing_path("new.jsonl") in opened
    assert {f.status for f in again.files if f.path != env.landing_path("new.jsonl")} == {
        "unchanged"}
    # touched after its load (same size, same bytes): read, checked, still unchanged
    os.utime(old)
    opened.clear()
    assert env.run().rows_loaded == 0
    assert opened == [env.landing_path("old.jsonl")] * 2  # hashed once (sha256 opens it)


def test_raw_log_and_landing_share_dedup(env):
    EventLog(env.raw).append([parse_event(_ev(1)), parse_event(_ev(2))])
    _write_jsonl(env.landing / "a.jsonl", [_ev(2), _ev(3)])
    report = env.run()
    assert report.rows_loaded == 3
    assert report.duplicates_skipped == 1


# --- crash safety -------------------------------------------------------------------------


def test_crash_mid_file_leaves_nothing_then_rerun_loads_once(env, monkeypatch):
    _write_jsonl(env.landing / "a.jsonl", [_ev(n) for n in range(3)])
    env.run()
    b_events = [_ev(n) for n in range(100, 110)]
    b = _write_jsonl(env.landing / "b.jsonl", b_events, raw_lines={2: "garbage"})
    _write_jsonl(env.landing / "c.jsonl", [_ev(200)])
    monkeypatch.setattr(loading, "CHUNK_LINES", 3)
    real_flush = loading.FileLoader._flush
    calls = {"n": 0}

    def crashing_flush(self, batch, result):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real_flush(self, batch, result)

    monkeypatch.setattr(loading.FileLoader, "_flush", crashing_flush)
    with pytest.raises(RuntimeError, match="simulated crash"):
        env.run()
    assert calls["n"] == 2
    source = str(b.resolve())
    assert env.count(where="source_file = ?", params=[source]) == 0
    assert env.count("raw.manifest", "path = ?", [source]) == 0
    assert env.count("raw.quarantine", "source_file = ?", [source]) == 0
    assert env.count() == 3  # what was committed before stays

    monkeypatch.setattr(loading.FileLoader, "_flush", real_flush)
    report = env.run()
    files = _by_path(report)
    assert files["a.jsonl"].status == "unchanged"
    assert (files["b.jsonl"].rows_loaded, files["b.jsonl"].rows_quarantined) == (10, 1)
    assert files["b.jsonl"].duplicates_skipped == 0
    assert files["c.jsonl"].rows_loaded == 1
    assert env.rows("select count(*), count(distinct event_id) from raw.events "
                    "where source_file = ?", [source]) == [(10, 10)]
    assert env.count("raw.quarantine", "source_file = ?", [source]) == 1
    assert env.count() == 3 + 10 + 1


def test_chunked_load_counts_match(env, monkeypatch):
    monkeypatch.setattr(loading, "CHUNK_LINES", 4)
    messages: list[str] = []
    _write_jsonl(env.landing / "a.jsonl", [_ev(n) for n in range(10)] + [_ev(3)])
    report = env.run(progress=messages.append)
    assert report.rows_loaded == 10
    assert report.duplicates_skipped == 1
    assert len(messages) == 3  # one per full chunk, then one when the file is committed
    assert messages[0].startswith("a.jsonl: 4 of ~11 records (36%), 4 loaded")
    assert messages[-1].startswith("a.jsonl: committed 10 rows, 0 quarantined, 1 duplicates")
    assert env.rows("select rows_loaded, duplicates_skipped from raw.manifest") == [(10, 1)]


# --- Personalize-style CSV and Parquet ----------------------------------------------------

INTERACTIONS_CSV = """USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,DEVICE
u1,i1,1700000000,click,1.5,mobile
u2,i2,soon,click,,desktop
,i3,1700000001,purchase,3,tablet
u3,i4,1700000002,purchase,,web
u1,i2,1700000003,click,2,mobile
"""


def _interaction_rows(env: Env) -> list[tuple]:
    return env.rows("select event_type, user_id, item_id, interaction_type, event_at, "
                    "event_value, fields from raw.events order by event_at")


def test_interactions_csv_loads_with_fields_and_quarantines_bad_rows(env):
    path = env.landing / "interactions.csv"
    path.write_text(INTERACTIONS_CSV)
    report = env.run()
    result = _by_path(report)["interactions.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (3, 2)

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    good = frame[frame.TIMESTAMP.str.isdigit() & (frame.USER_ID != "")]
    expected = [
        ("interaction", r.USER_ID, r.ITEM_ID, r.EVENT_TYPE,
         datetime.fromtimestamp(int(r.TIMESTAMP), tz=UTC).replace(tzinfo=None),
         float(r.EVENT_VALUE) if r.EVENT_VALUE else None, json.dumps({"device": r.DEVICE},
                                                                      separators=(",", ":")))
        for r in good.itertuples()
    ]
    assert _interaction_rows(env) == sorted(expected, key=lambda r: r[4])

    quarantined = env.rows("select line_number, record, reason from raw.quarantine "
                           "order by line_number")
    assert [q[0] for q in quarantined] == [3, 4]  # CSV lines, header is line 1
    assert quarantined[0][2].startswith("TIMESTAMP")
    assert "soon" in quarantined[0][2]
    assert quarantined[1][2].startswith("USER_ID")
    assert json.loads(quarantined[0][1])["TIMESTAMP"] == "soon"
    assert json.loads(quarantined[1][1])["ITEM_ID"] == "i3"


def test_interactions_csv_event_ids_are_stable(env):
    (env.landing / "interactions.csv").write_text(INTERACTIONS_CSV)
    env.run()
    (env.landing / "interactions-copy.csv").write_text(INTERACTIONS_CSV)
    result = _by_path(env.run())["interactions-copy.csv"]
    assert (result.rows_loaded, result.duplicates_skipped) == (0, 3)


def test_interactions_csv_optional_columns(env):
    (env.landing / "x.csv").write_text(
        "user_id,item_id,timestamp,event_type,event_id,session_id,recommendation_id,tenant\n"
        "u1,i1,1700000000,click,ev-1,s1,rec-1,shop\n"
        "u2,i2,1700000100,click,,,,\n")
    env.run()
    rows = env.rows("select event_id, tenant, session_id, ranking_id from raw.events "
                    "order by user_id")
    assert rows[0] == ("ev-1", "shop", "s1", "rec-1")
    assert rows[1][0].startswith("interaction-")
    assert rows[1][1:] == ("default", None, None)


def test_items_csv_loads_with_list_fields(env):
    (env.landing / "items.csv").write_text(
        "ITEM_ID,GENRES,Brand Name,CREATION_TIMESTAMP\n"
        "i1,comedy|drama,acme,1690000000\n"
        "i2,drama,,\n"
        ",x,y,\n")
    report = env.run()
    result = _by_path(report)["items.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    rows = {r[0]: r[1:] for r in env.rows(
        "select item_id, event_type, event_at, fields from raw.events")}
    assert rows["i1"][0] == "item"
    assert rows["i1"][1] == datetime.fromtimestamp(1690000000, tz=UTC).replace(tzinfo=None)
    fields = json.loads(rows["i1"][2])
    assert fields["genres"] == ["comedy", "drama"]
    assert fields["brand_name"] == "acme"
    undated = datetime.fromtimestamp(tabular.CATALOG_EPOCH_MS / 1000, tz=UTC)
    assert rows["i2"][1] == undated.replace(tzinfo=None)
    assert json.loads(rows["i2"][2]) == {"genres": "drama"}
    assert env.rows("select reason from raw.quarantine")[0][0].startswith("ITEM_ID")


def test_csv_numbers_become_numbers_but_codes_stay_strings(env):
    (env.landing / "items.csv").write_text(
        "ITEM_ID,PRICE,STOCK,ZIP,SKU\n"
        "i1,9.99,12,02134,12-34\n")
    env.run()
    (fields,) = env.rows("select fields from raw.events where item_id = 'i1'")[0]
    assert json.loads(fields) == {"price": 9.99, "stock": 12, "zip": "02134", "sku": "12-34"}


def test_users_csv_loads(env):
    (env.landing / "users.csv").write_text("USER_ID,AGE_GROUP\nu1,18-25\nu2,\n")
    env.run()
    rows = dict(env.rows("select user_id, fields from raw.events where event_type = 'user'"))
    assert json.loads(rows["u1"]) == {"age_group": "18-25"}
    assert rows["u2"] is None


def test_parquet_interactions_load_like_csv(tmp_path):
    csv_env, parquet_env = Env(tmp_path / "csv"), Env(tmp_path / "parquet")
    (csv_env.landing / "interactions.csv").write_text(INTERACTIONS_CSV)
    csv_env.run()
    frame = pd.read_csv(csv_env.landing / "interactions.csv", dtype=str, keep_default_na=False)
    good = frame[frame.TIMESTAMP.str.isdigit() & (frame.USER_ID != "")].copy()
    good["TIMESTAMP"] = good.TIMESTAMP.astype("int64")
    good["EVENT_VALUE"] = pd.to_numeric(good.EVENT_VALUE)
    good.reset_index(drop=True).to_parquet(parquet_env.landing / "interactions.parquet")
    report = parquet_env.run()
    result = _by_path(report)["interactions.parquet"]
    assert (result.status, result.rows_loaded, result.rows_quarantined) == ("loaded", 3, 0)
    assert _interaction_rows(parquet_env) == _interaction_rows(csv_env)
    assert parquet_env.ids() == csv_env.ids()


def test_parquet_bad_rows_quarantined(env):
    frame = pd.DataFrame({"USER_ID": ["u1", None], "ITEM_ID": ["i1", "i2"],
                          "TIMESTAMP": [1700000000, 1700000001],
                          "EVENT_TYPE": ["click", "click"]})
    frame.to_parquet(env.landing / "x.parquet")
    result = _by_path(env.run())["x.parquet"]
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert env.rows("select line_number, reason from raw.quarantine")[0][1].startswith("USER_ID")


@pytest.mark.parametrize("content", ["a,b,c\n1,2,3\n", "TIMESTAMP,EVENT_TYPE\n1700000000,x\n"])
def test_unrecognised_csv_header_quarantined_whole(env, content):
    path = env.landing / "mystery.csv"
    path.write_text(content)
    report = env.run()
    result = _by_path(report)["mystery.csv"]
    assert result.status == "unreadable"
    assert "unrecognised columns" in result.message
    assert report.summary()["unreadable_files"] == [str(path.resolve())]
    assert env.count() == 0
    assert env.rows("select line_number, reason from raw.quarantine") == [(None, result.message)]


def test_unreadable_parquet_quarantined_whole(env):
    (env.landing / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    _write_jsonl(env.landing / "ok.jsonl", [_ev(1)])
    report = env.run()
    assert _by_path(report)["broken.parquet"].status == "unreadable"
    assert env.ids() == ["e1"]


# --- discovery ----------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True])
def test_symlinks_in_landing_are_refused_each_run_until_the_file_itself_is_there(
        env, tmp_path, as_url):
    """A link is never followed: retargeted, it would load other data under a name already
    loaded (or pass as unchanged); it could point outside the landing folder. It is reported
    and warned about, each run, with what to do; the file put in its place loads as new."""
    outside = tmp_path / "outside"
    _write_jsonl(outside / "secret.jsonl", [_ev(1)])
    _write_jsonl(outside / "other.jsonl", [_ev(3)])
    os.symlink(outside / "secret.jsonl", env.landing / "link.jsonl")
    os.symlink(outside, env.landing / "linked-dir")
    os.symlink(env.landing / "real.jsonl", env.landing / "again.jsonl")  # to a landing file
    _write_jsonl(env.landing / "real.jsonl", [_ev(2)])
    ingestor = Ingestor(env.warehouse, env.raw,
                        f"file://{env.landing}" if as_url else env.landing,
                        warn=(warned := []).append)

    def statuses() -> dict[str, str]:
        return {Path(f.path).name: f.status for f in ingestor.run().files}

    assert statuses() == {"real.jsonl": "loaded", "again.jsonl": "refused",
                          "link.jsonl": "refused", "linked-dir": "refused"}
    assert env.ids() == ["e2"]  # nothing through a link, the linked file not twice
    assert len(warned) == 3 and all(sources.LINK in w for w in warned)
    assert all("\n" not in w and "put the file itself in the landing folder" in w
               for w in warned)
    (env.landing / "link.jsonl").unlink()  # retargeted: still refused, nothing loaded
    os.symlink(outside / "other.jsonl", env.landing / "link.jsonl")
    assert statuses()["link.jsonl"] == "refused" and env.ids() == ["e2"]
    (env.landing / "link.jsonl").unlink()  # the file itself in its place: loaded, once
    shutil.copy(outside / "other.jsonl", env.landing / "link.jsonl")
    assert statuses()["link.jsonl"] == "loaded" and env.ids() == ["e2", "e3"]
    assert statuses()["link.jsonl"] == "unchanged"
    assert env.count("raw.quarantine") == 0


def test_tmp_hidden_and_other_files_ignored(env):
    """Uploads in progress (hidden, .tmp, .partial) are skipped in silence; any other name no
    reader takes is reported as ignored (never loaded)."""
    (env.landing / ".staging").mkdir()
    for name in (".hidden.jsonl", "part.jsonl.tmp", "part.tmp", "notes.txt", "data.json",
                 "x.jsonl.partial", ".staging/upload.jsonl"):
        _write_jsonl(env.landing / name, [_ev(len(name))])
    _write_jsonl(env.landing / "real.jsonl", [_ev(1)])
    report = env.run()
    assert [(Path(f.path).name, f.status) for f in report.files] == [
        ("real.jsonl", "loaded"), ("data.json", "ignored"), ("notes.txt", "ignored")]
    assert env.ids() == ["e1"]


def test_no_folders_yet(tmp_path):
    report = Ingestor(tmp_path / "w.duckdb", tmp_path / "none", tmp_path / "nothing").run()
    assert report.files == [] and report.rows_loaded == 0
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall()}
    assert tables == {"events", "quarantine", "manifest", "sluice_meta"}


def test_default_tenant_applies_to_landing(env):
    _write_jsonl(env.landing / "a.jsonl", [_ev(1), _ev(2, tenant="eu")])
    (env.landing / "b.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu,i,1700000000,x\n")
    env.run(default_tenant="acme")
    assert env.rows("select tenant, count(*) from raw.events group by 1 order by 1") == [
        ("acme", 2), ("eu", 1)]


def test_items_csv_empty_creation_timestamp_falls_back_to_timestamp(env):
    (env.landing / "items.csv").write_text(
        "ITEM_ID,CREATION_TIMESTAMP,TIMESTAMP,TENANT\n"
        "i1,,1690000000,\n"
        "i2,1680000000,1690000000,eu\n")
    env.run()
    rows = {r[0]: r[1:] for r in env.rows("select item_id, event_at, tenant from raw.events")}
    assert rows["i1"] == (datetime.fromtimestamp(1690000000, tz=UTC).replace(tzinfo=None),
                          "default")
    assert rows["i2"] == (datetime.fromtimestamp(1680000000, tz=UTC).replace(tzinfo=None), "eu")


# --- summary table ------------------------------------------------------------------------


def test_summary_table_lists_files_then_totals(env, monkeypatch):
    _write_jsonl(env.landing / "a.jsonl", [_ev(1), _ev(2), _ev(2)], raw_lines={1: "{oops"})
    (env.landing / "b.parquet").write_bytes(b"not parquet")
    env.run()
    _write_jsonl(env.landing / "c.jsonl", [_ev(3), _ev(1)])
    report = env.run()
    rows = report.table_rows(env.root)
    assert [(r["file"], r["status"], r["rows_loaded"], r["quarantined"],
             r["duplicates_skipped"]) for r in rows] == [
        ("landing/c.jsonl", "loaded", 1, 0, 1),
        ("total: 1 files (2 unchanged)", "", 1, 0, 1)]
    text = ingest.format_table(env.ingestor().run().table_rows(env.root))
    assert text.splitlines()[0].split() == ingest.SUMMARY_COLUMNS
    assert text.splitlines()[-1].split()[:5] == ["total:", "0", "files", "(3", "unchanged)"]

    import flows.pipeline  # noqa: F401  (imported now, it keeps the real flows it imports)
    from cli import main as cli
    from flows.ingest import IngestOutcome

    summary = {**report.summary(), "table": rows}
    monkeypatch.setattr("flows.ingest.ingest", lambda: IngestOutcome(**summary))
    printed: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *args, **kw: printed.append(" ".join(args)))
    cli.cmd_flow("ingest")
    # the flow logs the table once; the CLI prints the result without a second copy of it
    (result,) = printed
    assert json.loads(result)["rows_loaded"] == 1 and "table" not in json.loads(result)
