"""The raw event log: durable JSON Lines segments, rotation, readers of complete lines."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from sluice.intake import eventlog
from sluice.intake.eventlog import EventLog, LogWriteError, read_complete, segments
from sluice.intake.follower import LogFollower
from tests.utils.waits import wait_until


def _event(n: int, **extra) -> dict:
    return {"event": "interaction", "id": f"e{n}", "timestamp": 1_700_000_000_000 + n,
            "user": f"u{n % 7}", "item": f"i{n % 11}", "type": "click", **extra}


def _lines(root: Path) -> list[bytes]:
    out = []
    for path in segments(root):
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends in a partial line"
        out.extend(data.splitlines())
    return out


def _read_all(root: Path) -> list[dict]:
    return [orjson.loads(line) for line in _lines(root)]


@pytest.fixture
def fail_fsync_once(monkeypatch):
    """os.fsync raises once, the way a full or failing disk does; later calls are real."""
    real = eventlog.os.fsync
    calls = {"failed": 0}

    def flaky(fd):
        if calls["failed"] == 0:
            calls["failed"] += 1
            raise OSError(errno.EIO, "simulated I/O error")
        return real(fd)

    monkeypatch.setattr(eventlog.os, "fsync", flaky)
    return calls


def test_append_writes_json_lines_readable_back(tmp_path):
    log = EventLog(tmp_path / "raw")
    batch = [_event(1, fields={"color": "red", "tags": ["a", "b"]}), _event(2), _event(3)]
    log.append(batch)
    log.append([_event(4)])
    log.close()
    assert _read_all(tmp_path / "raw") == [*batch, _event(4)]
    assert len(segments(tmp_path / "raw")) == 1
    name = segments(tmp_path / "raw")[0].name
    assert name.startswith("segment-") and name.endswith(f"-{log.writer_id}.jsonl")


def test_empty_append_writes_nothing(tmp_path):
    log = EventLog(tmp_path / "raw")
    log.append([])
    log.append(iter(()))
    assert segments(tmp_path / "raw") == []


def test_unicode_survives(tmp_path):
    log = EventLog(tmp_path)
    event = _event(1, fields={"title": "Café ☕ \u2028 line\nbreak"})
    log.append([event])
    assert _read_all(tmp_path) == [event]


@pytest.mark.parametrize("segment_bytes", [eventlog.DEFAULT_SEGMENT_BYTES, 4096])
def test_concurrent_appends_lose_and_duplicate_nothing(tmp_path, segment_bytes):
    log = EventLog(tmp_path / "raw", segment_bytes=segment_bytes)
    threads, per_thread = 8, 200
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                log.append([_event(t * 10_000 + n, thread=t, seq=n)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert errors == []
    log.close()

    events = _read_all(tmp_path / "raw")  # every line whole and valid JSON
    ids = [e["id"] for e in events]
    assert len(ids) == threads * per_thread
    assert len(set(ids)) == len(ids)
    assert set(ids) == {f"e{t * 10_000 + n}" for t in range(threads) for n in range(per_thread)}
    # an acknowledged append precedes the thread's next one in the log
    for t in range(threads):
        seqs = [e["seq"] for e in events if e["thread"] == t]
        assert seqs == list(range(per_thread))
    if segment_bytes < eventlog.DEFAULT_SEGMENT_BYTES:
        assert len(segments(tmp_path / "raw")) > 1


def test_concurrent_batches_stay_contiguous(tmp_path):
    log = EventLog(tmp_path)

    def writer(t: int) -> None:
        for b in range(20):
            log.append([_event(t * 1000 + b * 10 + k, thread=t, batch=b) for k in range(5)])

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    events = _read_all(tmp_path)
    assert len(events) == 6 * 20 * 5
    # one append's events are written together, never interleaved with another's
    for start in range(0, len(events), 5):
        chunk = events[start:start + 5]
        assert len({(e["thread"], e["batch"]) for e in chunk}) == 1


def test_segments_rotate_when_small(tmp_path):
    segment_bytes = 300
    log = EventLog(tmp_path, segment_bytes=segment_bytes)
    written = [_event(n, pad="x" * 40) for n in range(40)]
    line = max(len(orjson.dumps(e)) + 1 for e in written)
    for event in written:
        log.append([event])
    log.close()
    paths = segments(tmp_path)
    assert len(paths) >= len(written) * line // (segment_bytes + line)
    assert len(paths) > 1
    for path in paths:
        # a segment takes appends until it reaches segment_bytes, so one line at most beyond
        assert 0 < path.stat().st_size < segment_bytes + line
    assert _read_all(tmp_path) == written  # order across segments is append order


def _rotating_within_one_millisecond(tmp_path, monkeypatch) -> EventLog:
    """A log whose clock stands still and whose segments fill up after one padded event."""
    monkeypatch.setattr(eventlog, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    return EventLog(tmp_path, segment_bytes=100)


def test_rotation_inside_one_millisecond_keeps_segments_apart(tmp_path, monkeypatch):
    log = _rotating_within_one_millisecond(tmp_path, monkeypatch)
    written = [_event(n, pad="y" * 40) for n in range(6)]
    for event in written:
        log.append([event])
    paths = segments(tmp_path)
    assert len(paths) == len(written)  # every rotation starts a new file
    assert _read_all(tmp_path) == written


def test_failed_write_after_rotation_keeps_acknowledged_events(tmp_path, monkeypatch):
    log = _rotating_within_one_millisecond(tmp_path, monkeypatch)
    acknowledged = [_event(n, pad="z" * 40) for n in range(3)]
    for event in acknowledged:
        log.append([event])
    monkeypatch.setattr(eventlog.os, "fsync", _fails_on_file(eventlog.os.fsync))
    with pytest.raises(LogWriteError):
        log.append([_event(99)])
    assert _read_all(tmp_path) == acknowledged


def _fails_on_file(real):
    """fsync that fails for the first regular file it sees (not the directory)."""
    import os
    import stat
    state = {"done": False}

    def fsync(fd):
        if not state["done"] and stat.S_ISREG(os.fstat(fd).st_mode):
            state["done"] = True
            raise OSError(errno.ENOSPC, "simulated disk full")
        return real(fd)

    return fsync


def test_read_complete_ignores_trailing_partial_line(tmp_path):
    path = tmp_path / "segment-0000000000001-w.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"b"}\n{"id":"c"')
    data, offset = read_complete(path, 0)
    assert data == b'{"id":"a"}\n{"id":"b"}\n'
    assert offset == len(data)
    assert read_complete(path, offset) == (b"", offset)
    with open(path, "ab") as handle:
        handle.write(b'}\n{"id":"d"}')
    data, offset2 = read_complete(path, offset)
    assert data == b'{"id":"c"}\n'
    assert offset2 == offset + len(data)


def test_read_complete_with_max_bytes(tmp_path):
    path = tmp_path / "segment-1.jsonl"
    content = b"".join(orjson.dumps(_event(n)) + b"\n" for n in range(5))
    path.write_bytes(content)
    first_line = content.index(b"\n") + 1
    assert read_complete(path, 0, max_bytes=first_line - 1) == (b"", 0)
    assert read_complete(path, 0, max_bytes=first_line) == (content[:first_line], first_line)
    data, offset = read_complete(path, 0, max_bytes=first_line + 10)
    assert (data, offset) == (content[:first_line], first_line)
    assert read_complete(path, 0) == (content, len(content))


def test_follower_returns_only_new_events(tmp_path):
    root = tmp_path / "raw"
    follower = LogFollower(root)
    assert follower.poll() == []  # no folder yet
    log = EventLog(root)
    first = [_event(n) for n in range(3)]
    log.append(first)
    assert follower.poll() == first
    assert follower.poll() == []
    second = [_event(n) for n in range(3, 5)]
    log.append(second)
    assert follower.poll() == second
    assert follower.poll() == []
    # a second follower starts from the beginning
    assert LogFollower(root).poll() == first + second


def test_follower_across_several_segments_and_writers(tmp_path):
    root = tmp_path / "raw"
    follower = LogFollower(root)
    a = EventLog(root, segment_bytes=150, writer_id="a")
    b = EventLog(root, segment_bytes=150, writer_id="b")
    batch1 = [_event(n) for n in range(6)]
    for event in batch1:
        a.append([event])
    got = follower.poll()
    assert got == batch1
    assert len(segments(root)) > 1
    batch2 = [_event(n) for n in range(6, 12)]
    for event in batch2:
        (a if event["timestamp"] % 2 else b).append([event])
    got = follower.poll()
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in batch2)
    assert follower.poll() == []
    assert len(follower.offsets) == len(segments(root))


def test_follower_waits_for_partial_line_and_skips_torn_lines(tmp_path):
    root = tmp_path
    path = root / "segment-0000000000001-x.jsonl"
    path.write_bytes(b'{"id":"a"}\nnot json\n{"id":"b"')
    follower = LogFollower(root)
    assert follower.poll() == [{"id": "a"}]
    with open(path, "ab") as handle:
        handle.write(b"}\n")
    assert follower.poll() == [{"id": "b"}]
    assert follower.poll() == []


def test_write_failure_raises_and_leaves_no_partial_line(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    log = EventLog(root)
    log.append([_event(1)])
    monkeypatch.setattr(eventlog.os, "fsync", _fails_on_file(eventlog.os.fsync))
    with pytest.raises(LogWriteError) as info:
        log.append([_event(2), _event(3)])
    assert isinstance(info.value, OSError)
    assert "simulated disk full" in str(info.value)
    assert _read_all(root) == [_event(1)]  # the refused events are not there, not even half
    log.append([_event(4)])  # the next append works
    assert _read_all(root) == [_event(1), _event(4)]
    follower = LogFollower(root)
    assert follower.poll() == [_event(1), _event(4)]


def test_write_failure_on_first_append(tmp_path, fail_fsync_once):
    root = tmp_path / "raw"
    log = EventLog(root)
    with pytest.raises(LogWriteError):
        log.append([_event(1)])
    assert fail_fsync_once["failed"] == 1
    assert _read_all(root) == []
    log.append([_event(2)])
    assert _read_all(root) == [_event(2)]


def test_failure_reaches_every_waiter_of_the_group(tmp_path, monkeypatch):
    root = tmp_path
    log = EventLog(root)
    log.append([_event(0)])
    gate = threading.Event()
    real = eventlog.os.fsync
    calls = {"n": 0}

    def slow_then_fail(fd):
        calls["n"] += 1
        if calls["n"] == 1:
            gate.wait(30)  # the leader holds the write while others queue up
            return real(fd)
        if calls["n"] == 2:
            raise OSError(errno.EIO, "simulated")
        return real(fd)

    monkeypatch.setattr(eventlog.os, "fsync", slow_then_fail)
    results: dict[int, str] = {}

    def writer(n: int) -> None:
        try:
            log.append([_event(n)])
            results[n] = "ok"
        except LogWriteError:
            results[n] = "error"

    leader = threading.Thread(target=writer, args=(1,))
    leader.start()
    wait_until(lambda: calls["n"], "the leader's fsync", interval=0.001)
    followers = [threading.Thread(target=writer, args=(n,)) for n in range(2, 6)]
    for f in followers:
        f.start()
    wait_until(lambda: len(log._pending), "the 4 followers queued behind the leader",
               until=lambda queued: queued == 4, interval=0.01)
    gate.set()
    for t in [leader, *followers]:
        t.join(timeout=10)
    # the leader's write succeeds; the followers' one group write fails for all of them
    assert results == {1: "ok", 2: "error", 3: "error", 4: "error", 5: "error"}
    stored = {e["id"] for e in _read_all(root)}
    for n, outcome in results.items():
        assert (f"e{n}" in stored) == (outcome == "ok")  # acknowledged exactly when stored


class _ShortWrites:
    """A file whose write() takes only part of the bytes, as write(2) may near a full disk."""

    def __init__(self, handle, fail_after: int | None = None):
        self._handle = handle
        self._fail_after = fail_after
        self._calls = 0

    def write(self, data) -> int:
        self._calls += 1
        if self._fail_after is not None and self._calls > self._fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        data = bytes(data)
        return self._handle.write(data[: max(1, len(data) // 2)])

    def __getattr__(self, name):
        return getattr(self._handle, name)


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_open = open
    monkeypatch.setattr(eventlog, "open", lambda *a, **k: _ShortWrites(real_open(*a, **k)),
                        raising=False)
    log = EventLog(tmp_path)
    written = [_event(n) for n in range(4)]
    log.append(written[:2])
    log.append(written[2:])
    assert _read_all(tmp_path) == written


def test_disk_full_mid_write_leaves_no_partial_line(tmp_path, monkeypatch):
    log = EventLog(tmp_path)
    log.append([_event(1)])
    log.close()
    real_open = open
    monkeypatch.setattr(eventlog, "open",
                        lambda *a, **k: _ShortWrites(real_open(*a, **k), fail_after=1),
                        raising=False)
    with pytest.raises(LogWriteError):
        log.append([_event(2), _event(3)])
    assert _read_all(tmp_path) == [_event(1)]


def test_the_writer_and_a_follower_give_each_line_the_same_position(tmp_path):
    """Where each line ends in its segment, as written and as read back (concurrent appends
    share one write): what serving tells trained events from new ones by."""
    from sluice.intake.log_positions import unpack

    log = EventLog(tmp_path / "raw")
    written: list[list[int]] = [[] for _ in range(6)]

    def append(n: int) -> None:
        written[n] = log.append([{"id": f"e{n}", "pad": "x" * n}, {"id": f"f{n}"}])

    threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    positions: list[int] = []
    events = LogFollower(tmp_path / "raw").poll(positions=positions)
    by_id = dict(zip((e["id"] for e in events), positions, strict=True))
    assert all(by_id[f"e{n}"] == first and by_id[f"f{n}"] == second
               for n, (first, second) in enumerate(written))
    (path,) = (tmp_path / "raw").glob("segment-*.jsonl")
    ends = sorted(unpack(p) for p in positions)
    assert {name for name, _ in ends} == {path.name}
    assert ends[-1][1] == path.stat().st_size
    assert [end for _, end in ends] == [
        i + 1 for i, byte in enumerate(path.read_bytes()) if byte == ord("\n")]
