"""The reload generation the serving processes of a home share (`sluice.reloads`), with
real processes standing for the other workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from sluice.experiments import Arm, Experiment, Experiments
from sluice.reloads import FOLDER, Reloads, WorkersBehindError
from sluice.serve.service import Service
from sluice.settings import get_settings
from sluice.vocabulary import TEMPLATES
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle

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


def test_an_experiment_changed_while_a_worker_lags_is_saved_and_the_worker_named(tmp_path):
    """The admin routes' creation and stop (`RegistryPolls.create_experiment`,
    `stop_experiment`): saved and served here at once; another serving process that does not
    reload within `serving.reload_wait_seconds` is named, the change kept all the same."""
    env = environment(tmp_path, serving={"reload_wait_seconds": 0.3})
    uri = env["MLFLOW_TRACKING_URI"]
    version = register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
    service = Service(get_settings(home=tmp_path, config=env["SLUICE_CONFIG"],
                                   MLFLOW_TRACKING_URI=uri))
    service.start(background=False)
    (tmp_path / FOLDER).mkdir()
    lagging = _worker(tmp_path / FOLDER, 0, 0)  # serving, and never reloading
    exp = Experiment("split", "default", (Arm("control", "champion", 0.5),
                                          Arm("treatment", version, 0.5)))
    try:
        with pytest.raises(WorkersBehindError) as info:
            service.polls.create_experiment(exp, lambda ref: True, TEMPLATES)
        assert info.value.pids == [lagging.pid]
        assert str(info.value) == (
            f"serving processes {lagging.pid} had not loaded experiment 'split' (it is saved: "
            "do not create it again) within 0.3 s (serving.reload_wait_seconds; this one has); "
            "they move when they get to it, or at their next poll: see their log")
        assert Experiments(tmp_path).get("split").stopped_ms is None  # saved
        assert service.arms.get("default", version) is not None  # and served here
        assert service.experiments.running("default", "personalized") == exp
        with pytest.raises(WorkersBehindError, match=f"^serving processes {lagging.pid} had "
                           "not loaded the stop of experiment 'split' \\(it is saved\\)"):
            service.polls.stop_experiment("split")
        assert Experiments(tmp_path).get("split").stopped_ms is not None
        assert service.experiments.running("default", "personalized") is None
    finally:
        lagging.kill()
        lagging.wait()
        service.stop()
