"""The JSON stores under SLUICE_HOME (trackers, named filters, experiments): writers in other
processes keep each other's entries, and a file that does not parse is named, never a bare
JSONDecodeError; a reader that read it before (serving) keeps its last good mapping."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from sluice.experiments import Arm, Experiment, Experiments
from sluice.store import JsonStore, StoreError

WRITERS, KEYS = 4, 15


def _write_keys(path: str, writer: int) -> None:
    store = JsonStore(path)
    for n in range(KEYS):
        store.put(f"w{writer}-{n}", "x")


def test_writers_in_other_processes_keep_each_others_entries(tmp_path):
    path = tmp_path / "trackers.json"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_keys, args=(str(path), w)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    assert sorted(JsonStore(path).read()) == sorted(
        f"w{w}-{n}" for w in range(WRITERS) for n in range(KEYS))


def test_a_store_that_does_not_parse_is_named_and_a_reader_keeps_its_last_good_one(tmp_path):
    path = tmp_path / "filters.json"
    serving = JsonStore(path)
    serving.put("genre", "EXCLUDE ItemID WHERE Items.GENRE IN ($G)")
    path.write_text('{"genre": "EXCL')  # a hand edit cut short
    os.utime(path, (1, 1))  # a new mtime, whatever the clock's resolution
    with pytest.raises(StoreError) as failure:
        JsonStore(path).read()
    assert str(failure.value).startswith(f"{path} is not valid JSON (")
    assert "restore it from a backup" in str(failure.value)
    assert serving.read() == {"genre": "EXCLUDE ItemID WHERE Items.GENRE IN ($G)"}
    with pytest.raises(StoreError):  # a write never replaces what it could not read
        serving.put("other", "x")
    path.write_text('["a list"]')
    with pytest.raises(StoreError, match="must hold a JSON object of strings"):
        JsonStore(path).read()


def test_answers_go_on_outside_experiments_when_the_experiments_file_is_broken(tmp_path):
    (tmp_path / "experiments.json").write_text('{"e1": {"id": "e1", "tena')
    serving = Experiments(tmp_path)
    assert serving.running("shop", "personalized") is None  # not an error on every answer
    with pytest.raises(StoreError, match="experiments.json is not valid JSON"):
        serving.all(fresh=True)  # the CLI and admin routes say what is wrong
    (tmp_path / "experiments.json").unlink()
    exp = Experiment("e1", "shop", (Arm("a", "champion", 0.5), Arm("b", "1", 0.5)))
    Experiments(tmp_path).create(exp)
    assert serving.all(fresh=True)["e1"].tenant == "shop"
