"""The raw event log and landing folder on fsspec URLs (memory:// and file://)."""

from __future__ import annotations

import gzip
import json
import threading

import duckdb
import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from sluice.intake.eventlog import EventLog, read_complete, segments
from sluice.intake.follower import LogFollower
from sluice.settings import Settings
from sluice.warehouse.ingest import Ingestor

T0 = 1_750_000_000_000

CSV = """USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE
u1,i1,1700000000,click
u2,i2,soon,click
u3,i3,1700000002,purchase
"""


def _ev(n: int) -> dict:
    return {"id": f"e{n}", "timestamp": T0 + n * 1000, "event": "interaction",
            "user": f"u{n % 5}", "item": f"i{n % 7}", "type": "click"}


def _lines(events: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


@pytest.fixture(autouse=True)
def clean_memory():
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")
    yield
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")


def _count(warehouse, sql: str = "select count(*) from raw.events") -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_settings_urls_default_to_local_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("SLUICE_RAW_URL", raising=False)
    monkeypatch.delenv("SLUICE_LANDING_URL", raising=False)
    s = Settings(home=tmp_path)
    assert s.raw_location == s.raw_dir and s.landing_location == s.landing_dir
    monkeypatch.setenv("SLUICE_RAW_URL", "memory://raw")
    monkeypatch.setenv("SLUICE_LANDING_URL", "s3://bucket/landing")
    s = Settings(home=tmp_path)
    assert (s.raw_location, s.landing_location) == ("memory://raw", "s3://bucket/landing")


def test_eventlog_appends_and_follower_polls_over_memory():
    log = EventLog("memory://raw")
    assert log.append_mode is True
    follower = LogFollower("memory://raw")
    assert follower.poll() == []
    log.append([_ev(1), _ev(2)])
    assert [e["id"] for e in follower.poll()] == ["e1", "e2"]
    assert follower.poll() == []
    log.append([_ev(3)])
    assert [e["id"] for e in follower.poll()] == ["e3"]
    found = segments("memory://raw")
    assert len(found) == 1 and found[0].startswith("memory://")
    data, end = read_complete(found[0], 0)
    assert data.count(b"\n") == 3 and end == len(data)


def test_eventlog_rotates_and_group_commits_over_memory():
    log = EventLog("memory://raw", segment_bytes=200)
    threads = [threading.Thread(target=log.append, args=([_ev(n)],)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(segments("memory://raw")) > 1
    ids = sorted(e["id"] for e in LogFollower("memory://raw").poll())
    assert ids == sorted(f"e{n}" for n in range(20))


def test_follower_reads_complete_lines_only_over_memory():
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/raw/segment-0000000000001-w.jsonl", _lines([_ev(1)]) + b'{"id": "e2"')
    follower = LogFollower("memory://raw")
    assert [e["id"] for e in follower.poll()] == ["e1"]
    with fs.open("/raw/segment-0000000000001-w.jsonl", "ab") as handle:
        handle.write(b', "x": 1}\n')
    assert [e["id"] for e in follower.poll()] == ["e2"]


def test_segment_per_commit_without_append():
    log = EventLog("memory://raw", append_mode=False)
    for n in range(5):
        log.append([_ev(n)])
    found = segments("memory://raw")
    assert len(found) == 5  # one immutable object per group commit, listed in commit order
    ids = [e["id"] for e in LogFollower("memory://raw").poll()]
    assert ids == [f"e{n}" for n in range(5)]


def test_ingest_memory_landing_and_raw_exactly_once(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/landing/a.jsonl", _lines([_ev(1), _ev(2)]) + b"not json\n")
    fs.pipe_file("/landing/sub/b.jsonl.gz", gzip.compress(_lines([_ev(3)])))
    fs.pipe_file("/landing/c.csv", CSV.encode())
    fs.pipe_file("/landing/.hidden/d.jsonl", _lines([_ev(4)]))
    fs.pipe_file("/landing/notes.txt", b"ignored")
    EventLog("memory://raw").append([_ev(10), _ev(11)])
    warehouse = tmp_path / "w.duckdb"

    report = Ingestor(warehouse, "memory://raw", "memory://landing").run()
    by_path = {f.path: f for f in report.files}
    assert set(by_path) == {"memory:///landing/a.jsonl", "memory:///landing/sub/b.jsonl.gz",
                            "memory:///landing/c.csv", "memory:///landing/notes.txt",
                            *segments("memory://raw")}
    assert report.summary()["ignored_files"] == ["memory:///landing/notes.txt"]
    assert by_path["memory:///landing/a.jsonl"].rows_loaded == 2
    assert by_path["memory:///landing/a.jsonl"].rows_quarantined == 1
    assert by_path["memory:///landing/c.csv"].rows_loaded == 2
    assert by_path["memory:///landing/c.csv"].rows_quarantined == 1
    assert report.rows_loaded == 2 + 1 + 2 + 2
    assert _count(warehouse) == 7
    assert _count(warehouse, "select count(*) from raw.manifest "
                             "where path like 'memory:///%'") == 4

    again = Ingestor(warehouse, "memory://raw", "memory://landing").run()
    assert again.rows_loaded == 0
    assert {f.status for f in again.files} == {"unchanged", "ignored"}  # notes.txt, each run

    # the log grows: only the new lines load; a rewritten landing file is reported
    EventLog("memory://raw").append([_ev(12)])
    fs.pipe_file("/landing/a.jsonl", _lines([_ev(1), _ev(99)]))
    third = Ingestor(warehouse, "memory://raw", "memory://landing").run()
    assert third.rows_loaded == 1
    assert third.summary()["changed_files"] == ["memory:///landing/a.jsonl"]
    assert _count(warehouse) == 8


def test_ingest_reports_a_rewritten_raw_segment(tmp_path):
    EventLog("memory://raw").append([_ev(1), _ev(2)])
    warehouse = tmp_path / "w.duckdb"
    Ingestor(warehouse, "memory://raw", "memory://landing").run()
    (segment,) = segments("memory://raw")
    fs = fsspec.filesystem("memory")
    inner = segment.removeprefix("memory://")
    fs.pipe_file(inner, _lines([_ev(5), _ev(6), _ev(7)]))
    report = Ingestor(warehouse, "memory://raw", "memory://landing").run()
    assert report.summary()["changed_files"] == [segment]
    assert report.rows_loaded == 0


def test_unreadable_landing_file_over_memory_is_quarantined_whole(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/landing/broken.jsonl.gz", b"not gzip at all")
    report = Ingestor(tmp_path / "w.duckdb", "memory://raw", "memory://landing").run()
    assert report.summary()["unreadable_files"] == ["memory:///landing/broken.jsonl.gz"]
    again = Ingestor(tmp_path / "w.duckdb", "memory://raw", "memory://landing").run()
    assert [f.status for f in again.files] == ["unchanged"]


def test_file_url_log_and_landing(tmp_path):
    raw_url, landing_url = f"file://{tmp_path}/raw", f"file://{tmp_path}/landing"
    log = EventLog(raw_url)
    log.append([_ev(1)])
    log.append([_ev(2)])
    follower = LogFollower(raw_url)
    assert [e["id"] for e in follower.poll()] == ["e1", "e2"]
    # the same bytes as a plain-path log: the file is an ordinary segment on disk
    (on_disk,) = sorted((tmp_path / "raw").glob("segment-*.jsonl"))
    assert on_disk.read_bytes().count(b"\n") == 2
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "x.csv").write_text(CSV)
    warehouse = tmp_path / "w.duckdb"
    report = Ingestor(warehouse, raw_url, landing_url).run()
    assert report.rows_loaded == 2 + 2
    assert all(f.path.startswith("file://") for f in report.files)
    assert Ingestor(warehouse, raw_url, landing_url).run().rows_loaded == 0


def test_missing_url_roots_are_empty(tmp_path):
    assert segments("memory://nothing") == []
    assert LogFollower("memory://nothing").poll() == []
    report = Ingestor(tmp_path / "w.duckdb", "memory://none", "memory://nothing").run()
    assert report.files == []
