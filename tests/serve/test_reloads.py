"""The reload generation the serving processes of a home share (`sluice.serve.reloads`), with
real processes standing for the other workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from sluice.serve.reloads import FOLDER, Reloads


def _worker_record(home, pid: int, generation: int) -> None:
    """What serving process `pid` of this host writes once it reloaded at `generation`."""
    (home / FOLDER).mkdir(parents=True, exist_ok=True)
    (home / FOLDER / f"worker-{socket.gethostname()}-{pid}").write_text(str(generation))


def test_a_reload_waits_for_each_live_process_and_names_the_one_that_did_not_reload(tmp_path):
    here = Reloads(tmp_path)
    assert here.asked() == 0
    other = Reloads(tmp_path)  # another process's view of the same folder
    assert here.ask() == 1 and other.asked() == 1 and here.ask() == 2 and other.asked() == 2
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        _worker_record(tmp_path, live.pid, 1)  # a worker that has not reloaded at 2
        _worker_record(tmp_path, gone.pid, 0)  # one killed without removing its record
        started = time.monotonic()
        assert here.wait(2, timeout=0.5) == [live.pid]
        assert time.monotonic() - started >= 0.5
        assert not any(p.name.endswith(f"-{gone.pid}") for p in (tmp_path / FOLDER).iterdir())
        _worker_record(tmp_path, live.pid, 2)  # it reloaded
        assert here.wait(2, timeout=30) == []
        assert here.wait(1, timeout=30) == []  # a later generation counts for an earlier one
    finally:
        live.kill()
        live.wait()


def test_a_process_that_stops_serving_removes_its_record(tmp_path):
    worker = Reloads(tmp_path)
    worker.done(3)
    records = list((tmp_path / FOLDER).glob("worker-*"))
    assert [p.read_text() for p in records] == ["3"]
    worker.leave()
    assert not records[0].exists()
