"""The reload generation the serving processes of a home share (`sluice.serve.reloads`), with
real processes standing for the other workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from sluice.serve.reloads import FOLDER, Reloads

# a serving process of this host as Reloads.done leaves it: its record, and its lock held
# while it lives; it has reloaded at generation argv[2], and at argv[3] once told to on stdin
WORKER = """import fcntl, os, socket, sys
folder = sys.argv[1]
record = os.path.join(folder, f"worker-{socket.gethostname()}-{os.getpid()}")
lock = open(record + ".lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
open(record, "w").write(sys.argv[2])
print("serving", flush=True)
sys.stdin.readline()
open(record + ".tmp", "w").write(sys.argv[3])
os.replace(record + ".tmp", record)
print("reloaded", flush=True)
sys.stdin.readline()
"""


def _worker(folder, at: int, then: int) -> subprocess.Popen:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(folder), str(at), str(then)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline() == "serving\n"
    return worker


def test_a_reload_waits_for_each_live_process_and_names_the_one_that_did_not_reload(tmp_path):
    here = Reloads(tmp_path)
    assert here.asked() == 0
    other = Reloads(tmp_path)  # another process's view of the same folder
    assert here.ask() == 1 and other.asked() == 1 and here.ask() == 2 and other.asked() == 2
    folder = tmp_path / FOLDER
    live = _worker(folder, 1, 2)  # serving, not reloaded at 2 yet
    killed = _worker(folder, 0, 0)
    killed.kill()  # its record stays, its lock is gone with it
    killed.wait()
    try:
        started = time.monotonic()
        assert here.wait(2, timeout=0.5) == [live.pid]
        assert time.monotonic() - started >= 0.5
        assert sorted(p.name for p in folder.glob("worker-*")) == [
            f"worker-{socket.gethostname()}-{live.pid}",
            f"worker-{socket.gethostname()}-{live.pid}.lock"]  # the killed one's removed
        assert live.stdin is not None and live.stdout is not None
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.stdout.readline() == "reloaded\n"
        assert here.wait(2, timeout=30) == []
        assert here.wait(1, timeout=30) == []  # a later generation counts for an earlier one
    finally:
        live.kill()
        live.wait()
    assert here.wait(3, timeout=0) == []  # gone: not waited for


def test_a_process_that_stops_serving_removes_its_record(tmp_path):
    worker = Reloads(tmp_path)
    worker.done(3)
    worker.done(2)  # a poll that began before the reload at 3 finished after it
    records = sorted((tmp_path / FOLDER).glob("worker-*"))
    assert [p.suffix for p in records] == ["", ".lock"] and records[0].read_text() == "3"
    assert worker.done_at == 3
    worker.leave()
    assert not any(p.exists() for p in records)
