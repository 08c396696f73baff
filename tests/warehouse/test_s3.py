"""The raw event log and landing folder on a real S3 API (moto's server on loopback).

The same code paths as on AWS S3 or MinIO: s3fs, credentials and `AWS_ENDPOINT_URL` from the
environment, one immutable object per group commit, range reads, listings in commit order.
"""

from __future__ import annotations

import gzip
import io
import json
import threading

import duckdb
import pandas as pd
import pytest

from sluice.intake.eventlog import (
    EventLog,
    LogWriteError,
    read_complete,
    segment_sizes,
    segments,
)
from sluice.intake.follower import LogFollower
from sluice.intake.log_coverage import writer_and_start
from sluice.intake.log_positions import unpack
from sluice.serve.model import TrainedLog
from sluice.warehouse.engine import DuckDBWarehouse
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.positions import trained_positions

T0 = 1_750_000_000_000

CSV = """USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE
u1,i1,1700000000,click
u2,i2,soon,click
"""


def _ev(n: int) -> dict:
    return {"id": f"e{n}", "timestamp": T0 + n * 1000, "event": "interaction",
            "user": f"u{n % 5}", "item": f"i{n % 7}", "type": "click"}


def _lines(events: list[dict]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _count(warehouse, sql: str = "select count(*) from raw.events") -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


@pytest.fixture
def bucket(s3, s3_env) -> str:
    return s3.new_bucket()


def test_each_group_commit_is_one_object_listed_in_commit_order(s3, bucket):
    raw = f"s3://{bucket}/raw"
    log = EventLog(raw)
    assert log.append_mode is False  # S3 has no append: never rewrite an acknowledged object
    for n in range(4):
        log.append([_ev(2 * n), _ev(2 * n + 1)])
    keys = s3.keys(bucket, "raw/")
    assert len(keys) == 4 and all(k.startswith("raw/segment-") for k in keys)
    listed = segment_sizes(raw)
    assert [p for p, _ in listed] == segments(raw) == [f"s3://{bucket}/{k}" for k in sorted(keys)]
    body = s3.client().get_object(Bucket=bucket, Key=sorted(keys)[0])["Body"].read()
    assert listed[0][1] == len(body)
    assert [json.loads(line) for line in body.splitlines()] == [_ev(0), _ev(1)]
    ids = [e["id"] for e in LogFollower(raw).poll()]
    assert ids == [f"e{n}" for n in range(8)]  # every event once, in commit order


def test_range_reads_return_complete_lines_only(s3, bucket):
    key = "raw/segment-0000000000001-w.jsonl"
    s3.client().put_object(Bucket=bucket, Key=key, Body=_lines([_ev(1), _ev(2)]) + b'{"id": "e')
    url = f"s3://{bucket}/{key}"
    first = len(_lines([_ev(1)]))
    data, end = read_complete(url, 0, max_bytes=first + 5)
    assert data == _lines([_ev(1)]) and end == first
    data, end = read_complete(url, end)  # a ranged GET from the offset
    assert data == _lines([_ev(2)]) and end == len(_lines([_ev(1), _ev(2)]))
    follower = LogFollower(f"s3://{bucket}/raw")
    assert [e["id"] for e in follower.poll()] == ["e1", "e2"]
    assert follower.poll() == []


def test_concurrent_appends_share_commits_and_none_is_lost(bucket):
    raw = f"s3://{bucket}/raw"
    log, follower = EventLog(raw), LogFollower(raw)
    threads = [threading.Thread(target=log.append, args=([_ev(n)],)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(segments(raw)) <= 24
    assert sorted(e["id"] for e in follower.poll()) == sorted(f"e{n}" for n in range(24))
    log.append([_ev(99)])  # a new object after the follower's last listing is seen
    assert [e["id"] for e in follower.poll()] == ["e99"]


def test_two_writers_on_one_prefix_never_share_an_object(bucket):
    raw = f"s3://{bucket}/raw"
    first, second = EventLog(raw), EventLog(raw)
    first.append([_ev(1)])
    second.append([_ev(2)])
    first.append([_ev(3)])
    names = [p.rsplit("/", 1)[-1] for p in segments(raw)]
    assert len(names) == 3
    assert sum(first.writer_id in n for n in names) == 2
    assert sum(second.writer_id in n for n in names) == 1
    assert sorted(e["id"] for e in LogFollower(raw).poll()) == ["e1", "e2", "e3"]


def test_a_missing_bucket_refuses_the_write(s3, s3_env):
    log = EventLog("s3://sluice-no-such-bucket/raw")
    with pytest.raises(LogWriteError, match="sluice-no-such-bucket"):
        log.append([_ev(1)])
    assert "sluice-no-such-bucket" not in [b["Name"] for b in
                                           s3.client().list_buckets()["Buckets"]]
    with pytest.raises(FileNotFoundError, match="s3://sluice-no-such-bucket/raw"):
        segments("s3://sluice-no-such-bucket/raw")
    assert segments(f"s3://{s3.new_bucket()}/raw") == []  # a fresh prefix: an empty log


def test_no_credentials_refuse_the_write_instead_of_hanging(bucket, monkeypatch):
    from tests.utils.s3 import forget_s3fs_clients

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask for
    forget_s3fs_clients()
    log = EventLog(f"s3://{bucket}/raw")
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            log.append([_ev(n)])
        except LogWriteError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a waiter was left hanging"
    assert len(errors) == 4
    assert all("refused the write: Unable to locate credentials" in str(e) for e in errors)


def _put_landing(s3, bucket: str) -> None:
    client = s3.client()
    frame = pd.DataFrame({"USER_ID": ["u7"], "ITEM_ID": ["i7"], "TIMESTAMP": ["1700000007"],
                          "EVENT_TYPE": ["purchase"]})
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    files = {"landing/a.jsonl": _lines([_ev(1), _ev(2)]) + b"not json\n",
             "landing/2026/b.jsonl.gz": gzip.compress(_lines([_ev(3)])),
             "landing/c.csv": CSV.encode(), "landing/d.parquet": parquet.getvalue(),
             "landing/.partial/e.jsonl": _lines([_ev(4)]), "landing/notes.txt": b"ignored"}
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def test_ingest_from_s3_loads_exactly_once(s3, bucket, tmp_path):
    _put_landing(s3, bucket)
    raw, landing = f"s3://{bucket}/raw", f"s3://{bucket}/landing"
    EventLog(raw).append([_ev(10), _ev(11)])
    EventLog(raw).append([_ev(12)])
    warehouse = tmp_path / "w.duckdb"

    report = Ingestor(warehouse, raw, landing).run()
    by_path = {f.path: f for f in report.files}
    url = f"s3://{bucket}/landing"
    assert set(by_path) == {f"{url}/a.jsonl", f"{url}/2026/b.jsonl.gz", f"{url}/c.csv",
                            f"{url}/d.parquet", f"{url}/notes.txt", *segments(raw)}
    assert report.summary()["ignored_files"] == [f"{url}/notes.txt"]
    assert by_path[f"{url}/a.jsonl"].rows_quarantined == 1
    assert by_path[f"{url}/c.csv"].rows_quarantined == 1
    assert report.rows_loaded == 2 + 1 + 1 + 1 + 3
    assert _count(warehouse) == 8
    assert _count(warehouse, f"select count(*) from raw.manifest where path like "
                             f"'s3://{bucket}/%'") == 6

    again = Ingestor(warehouse, raw, landing).run()
    assert again.rows_loaded == 0
    assert {f.status for f in again.files} == {"unchanged", "ignored"}  # notes.txt, each run

    # new commits load alone; a landing file rewritten in place is reported, not reloaded
    EventLog(raw).append([_ev(13), _ev(14)])
    s3.client().put_object(Bucket=bucket, Key="landing/a.jsonl", Body=_lines([_ev(1), _ev(98)]))
    third = Ingestor(warehouse, raw, landing).run()
    assert third.rows_loaded == 2
    assert third.summary()["changed_files"] == [f"{url}/a.jsonl"]
    assert _count(warehouse) == 10
    assert _count(warehouse, "select count(*) from raw.events where event_id = 'e98'") == 0


def test_a_bundles_positions_name_the_objects_as_the_writer_and_a_follower_do(s3, bucket,
                                                                           tmp_path):
    """The manifest keys a bucket's objects by full URL; the positions training records, by
    the object's name in the log, which the writer and a follower give each event."""
    _put_landing(s3, bucket)
    raw, landing = f"s3://{bucket}/raw", f"s3://{bucket}/landing"
    written = EventLog(raw).append([_ev(10), _ev(11)]) + EventLog(raw).append([_ev(12)])
    warehouse = tmp_path / "w.duckdb"
    Ingestor(warehouse, raw, landing).run()
    with duckdb.connect(str(warehouse)) as con:  # the mart's load times, as dbt keeps them
        con.execute("create schema marts")
        con.execute("create table marts.interactions as select loaded_at from raw.events")
    found = trained_positions(DuckDBWarehouse(warehouse), raw)
    positions: list[int] = []
    LogFollower(raw).poll(positions=positions)
    assert positions == written
    ends: dict[str, int] = {}
    for name, end in map(unpack, positions):
        ends[name] = max(ends.get(name, 0), end)
    assert len(ends) == 2
    # both objects whole (no landing file among them): one entry per writer, none per object
    assert found == {"whole_through": dict(map(writer_and_start, ends)), "covered": {},
                     "unknown": [], "unloaded": []}
    trained = TrainedLog.of({"raw_coverage": found}, cutoff_ms=T0)
    assert not any(trained.after(T0 + 99_000, p) for p in positions)  # trained, whatever time
    assert trained.after(T0 - 99_000, EventLog(raw).append([_ev(13)])[0])  # new, however old
    explicit = TrainedLog.of({"raw_log": {"covered": ends, "unknown": []}}, cutoff_ms=T0)
    assert not any(explicit.after(T0 + 99_000, p) for p in positions)  # an older bundle's


def test_an_object_ingest_did_not_list_before_later_ones_stays_new(s3, bucket, tmp_path):
    """A listing that missed an object while it listed later ones of the same writer (pages
    of a busy bucket): the compact record names it; its events were never trained on."""
    raw, client = f"s3://{bucket}/raw", s3.client()
    writer = EventLog(raw)
    written = [writer.append([_ev(n)])[0] for n in range(4)]
    names = [unpack(p)[0] for p in written]
    hidden = f"raw/{names[1]}"
    body = client.get_object(Bucket=bucket, Key=hidden)["Body"].read()
    client.delete_object(Bucket=bucket, Key=hidden)
    warehouse = tmp_path / "w.duckdb"
    assert Ingestor(warehouse, raw, f"s3://{bucket}/landing").run().rows_loaded == 3
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.interactions as select loaded_at from raw.events")
    client.put_object(Bucket=bucket, Key=hidden, Body=body)  # listed now, not loaded
    found = trained_positions(DuckDBWarehouse(warehouse), raw)
    assert found == {"whole_through": dict([writer_and_start(names[3])]), "covered": {},
                     "unknown": [], "unloaded": [names[1]]}
    trained = TrainedLog.of({"raw_coverage": found}, cutoff_ms=T0 + 99_000)
    assert [trained.after(T0, p) for p in written] == [False, True, False, False]


def test_a_log_that_cannot_be_listed_gets_every_object_named(s3, bucket, tmp_path,
                                                             monkeypatch, caplog):
    """Telling "whole" takes a listing (a key without s3:ListBucket, a store that is down)."""
    raw = f"s3://{bucket}/raw"
    written = [EventLog(raw).append([_ev(n)])[0] for n in range(3)]
    warehouse = tmp_path / "w.duckdb"
    Ingestor(warehouse, raw, f"s3://{bucket}/landing").run()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.interactions as select loaded_at from raw.events")

    def denied(root):
        raise PermissionError("Access Denied")

    monkeypatch.setattr("sluice.intake.eventlog.segment_listing", denied)
    found = trained_positions(DuckDBWarehouse(warehouse), raw)
    assert found == {"covered": {unpack(p)[0]: unpack(p)[1] for p in written}, "unknown": []}
    assert "could not be listed (Access Denied)" in caplog.text


def test_a_second_ingest_reads_no_object_loaded_before(s3, bucket, tmp_path, monkeypatch):
    """Objects older than their load (S3's LastModified has whole seconds) are not fetched
    again: a run lists the bucket and reads what is new, not the history."""
    import time

    from tests.utils.reads import file_reads

    _put_landing(s3, bucket)
    raw, landing = f"s3://{bucket}/raw", f"s3://{bucket}/landing"
    EventLog(raw).append([_ev(10), _ev(11)])
    time.sleep(2.1)  # past the second of LastModified's resolution
    warehouse = tmp_path / "w.duckdb"
    assert Ingestor(warehouse, raw, landing).run().rows_loaded == 7
    opened = file_reads(monkeypatch)
    EventLog(raw).append([_ev(12)])
    again = Ingestor(warehouse, raw, landing).run()
    assert again.rows_loaded == 1
    assert len(set(opened)) == 1 and opened[0] == segments(raw)[-1]
    assert sum(f.status == "unchanged" for f in again.files) == 5


def test_ingest_names_a_missing_bucket(bucket, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with pytest.raises(FileNotFoundError, match="s3://sluice-no-such-bucket/landing"):
        Ingestor(warehouse, f"s3://{bucket}/raw", "s3://sluice-no-such-bucket/landing").run()
    assert Ingestor(warehouse, f"s3://{bucket}/raw", f"s3://{bucket}/landing").run().files == []


def test_ingest_reports_a_raw_object_rewritten_after_loading(s3, bucket, tmp_path):
    raw = f"s3://{bucket}/raw"
    EventLog(raw).append([_ev(1), _ev(2)])
    warehouse = tmp_path / "w.duckdb"
    assert Ingestor(warehouse, raw, f"s3://{bucket}/landing").run().rows_loaded == 2
    (segment,) = segments(raw)
    key = segment.removeprefix(f"s3://{bucket}/")
    s3.client().put_object(Bucket=bucket, Key=key, Body=_lines([_ev(5), _ev(6), _ev(7)]))
    report = Ingestor(warehouse, raw, f"s3://{bucket}/landing").run()
    assert report.summary()["changed_files"] == [segment]
    assert report.rows_loaded == 0 and _count(warehouse) == 2
