"""A flow command whose earlier steps have not run fails at once, in one line naming what is
missing and the command to run next, before Prefect starts: no temporary Prefect server, whose
SQLite database would otherwise appear in the home's Prefect folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sluice.experiments import Arm, Experiment, Experiments
from sluice.intake.eventlog import EventLog
from sluice.settings import PROJECT_ROOT
from sluice.warehouse.ingest import Ingestor
from tests.utils.cli import SLUICE
from tests.utils.factories import environment, interaction


def _refused(env: dict[str, str], *args: str) -> str:
    """The command's one stderr line, once it failed without starting Prefect. As an
    operator runs it: no PREFECT_API_URL and no `sluice up` server (its port closed), so a
    flow would start a temporary Prefect server."""
    run_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    run_env.update(env, PYTHONPATH=str(PROJECT_ROOT), SLUICE_PREFECT_PORT="9")
    done = subprocess.run([*SLUICE, *args], cwd=PROJECT_ROOT, env=run_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    started = sorted(p.name for p in (Path(env["SLUICE_HOME"]) / "prefect").rglob("*.db"))
    assert started == [], f"Prefect started a server first ({started}): {done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["transform", "train", "tune"])
def test_a_fresh_home_says_to_ingest_first(tmp_path, command):
    line = _refused(environment(tmp_path), command)
    assert line == (f"sluice {command}: NotReadyError: no warehouse at "
                    f"{tmp_path / 'warehouse.duckdb'} yet: run `sluice ingest` first (or "
                    "`sluice pipeline` for ingest, transform and train)")


def test_an_ingested_home_without_marts_says_to_transform_first(tmp_path):
    env = environment(tmp_path)
    log = EventLog(tmp_path / "raw")
    log.append([interaction("u1", "i1")])
    log.close()
    (tmp_path / "landing").mkdir()
    Ingestor(tmp_path / "warehouse.duckdb", tmp_path / "raw", tmp_path / "landing").run()
    for command in ("train", "tune"):
        line = _refused(env, command)
        assert line.startswith(f"sluice {command}: NotReadyError: "), line
        assert line.endswith("has no marts.interactions yet: run `sluice transform` first "
                             "(or `sluice pipeline`)"), line


def test_deciding_a_running_experiment_without_a_warehouse_says_to_ingest_first(tmp_path):
    env = environment(tmp_path)
    Experiments(tmp_path).create(Experiment(
        id="exp1", tenant="default", arms=(Arm("a", "champion", 0.5), Arm("b", "1", 0.5))))
    line = _refused(env, "experiments", "decide")
    assert line.startswith("sluice experiments: NotReadyError: no warehouse at "), line
    assert "run `sluice ingest` first" in line


def test_a_batch_with_no_champion_and_no_events_says_so(tmp_path):
    line = _refused(environment(tmp_path), "batch")
    assert line == ("sluice batch: NotReadyError: tenant 'default' has no champion model and "
                    "the raw log has no events yet: send events (POST /v1/events), or load "
                    "files and train with `sluice pipeline`")


def test_segments_without_a_champion_say_so_before_prefect_starts(tmp_path):
    env = environment(tmp_path)
    log = EventLog(tmp_path / "raw")
    log.append([{**interaction("u1", "i1"), "tenant": "shop"}])
    log.close()
    line = _refused(env, "batch", "--segments", "--tenant", "shop")
    assert line.startswith("sluice batch: NotReadyError: tenant 'shop' has no champion model "
                           "(models:/sluice-shop@champion)"), line
    assert "run `sluice train` once it has enough data" in line


def test_an_unknown_tenant_is_refused_naming_the_known_ones_before_prefect_starts(tmp_path):
    """A tenant with no model and no interaction in the raw log (an item event is not one)
    would be refused inside the flow: it is refused first, alone or among several."""
    env = environment(tmp_path)
    log = EventLog(tmp_path / "raw")
    log.append([interaction("u1", "i1"), {**interaction("u2", "i2"), "tenant": "shop"},
                {"event": "item", "id": "c1", "timestamp": 1, "tenant": "catalog",
                 "item": "i1"}])
    log.close()
    said = ("sluice batch: NotFoundError: --tenant: {!r} has no model and no interaction in "
            "the raw log: known tenants are default, shop")
    assert _refused(env, "batch", "--tenant", "shpo") == said.format("shpo")
    assert _refused(env, "batch", "--tenant", "shop", "--tenant", "catalog") == said.format(
        "catalog")


def test_similar_items_without_an_input_is_refused_before_prefect_starts(tmp_path):
    """The one batch input the flow used to refuse only once it ran: similar_items answers
    items and has no default input (a configured template on it neither); segments, which
    default to every item, are not refused."""
    env = environment(tmp_path, templates={"related": {"base": "similar_items"}})
    log = EventLog(tmp_path / "raw")
    log.append([interaction("u1", "i1")])
    log.close()
    said = ("sluice batch: InputError: --input: the similar_items template needs an input file "
            "of itemId")
    assert _refused(env, "batch", "--template", "similar_items") == said
    assert _refused(env, "batch", "--template", "related") == said
    assert _refused(env, "batch", "--template", "similar_items", "--segments").startswith(
        "sluice batch: NotReadyError: tenant 'default' has no champion model")


def test_refusing_an_unknown_tenant_reads_the_raw_log_once(tmp_path, monkeypatch):
    """The tenants asked for and the known ones a refusal names come from one reading of
    each segment (the check used to read the whole log again for the list)."""
    from flows.preconditions import check_batch
    from sluice.errors import NotFoundError
    from sluice.intake import log_tenants
    from sluice.settings import get_settings

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    log = EventLog(tmp_path / "raw", segment_bytes=1)  # every append starts a new segment
    for tenant in ("default", "shop", "outlet"):
        log.append([{**interaction("u1", "i1"), "tenant": tenant}])
    log.close()
    reads: list[str] = []
    real = log_tenants.read_complete

    def counted(path, *args, **kwargs):
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(log_tenants, "read_complete", counted)
    with pytest.raises(NotFoundError, match="known tenants are default, outlet, shop$"):
        check_batch(get_settings(), ["shop", "shpo"], segments=False)
    assert len(reads) == 3 and len(set(reads)) == 3, reads


def test_unreadable_input_a_misplaced_output_and_a_missing_version_are_refused_first(tmp_path):
    env = environment(tmp_path)
    log = EventLog(tmp_path / "raw")
    log.append([interaction("u1", "i1")])
    log.close()
    (tmp_path / "landing" / "users").mkdir(parents=True)
    (tmp_path / "afile").write_text("")
    assert _refused(env, "batch", "--input", "users") == (
        f"sluice batch: InputError: --input: {tmp_path / 'landing' / 'users'} cannot be read "
        "(Is a directory): give a JSON Lines file in the landing folder, a path or an fsspec URL")
    assert _refused(env, "batch", "--input", "nope://users.jsonl").startswith(
        "sluice batch: InputError: --input: nope://users.jsonl cannot be read (Protocol not "
        "known: nope)")
    assert _refused(env, "batch", "--output", str(tmp_path / "afile" / "out")) == (
        f"sluice batch: InputError: --output: {tmp_path / 'afile'} is a file, not a folder: "
        "give a folder (made when missing) or an fsspec URL")
    assert _refused(env, "batch", "--model-version", "7") == (
        "sluice batch: NotFoundError: --model-version: sluice-default has no version '7': "
        "`sluice models --tenant default` lists them, or leave it out for the champion")
