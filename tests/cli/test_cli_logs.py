"""Quiet, exact operator output: a config error is one line, the API logs the port it binds."""

from __future__ import annotations

import os
import subprocess
import sys

from sluice.settings import PROJECT_ROOT
from tests.utils.cli import sluice
from tests.utils.factories import environment
from tests.utils.server import running_server


def test_a_config_error_is_one_line_before_any_flow_starts(tmp_path):
    env = environment(tmp_path, model={"algorithm": "item_item"})
    proc = sluice(env, "train")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sluice train: config file ")
    assert "model.algorithm" in lines[0] and "Traceback" not in proc.stderr


def test_a_config_error_shows_its_traceback_with_sluice_debug(tmp_path):
    env = environment(tmp_path, model={"algorithm": "item_item"})
    proc = sluice({**env, "SLUICE_DEBUG": "1"}, "train")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_the_api_logs_the_port_it_is_bound_to(tmp_path):
    env = environment(tmp_path)
    log = tmp_path / "server.log"
    with open(log, "w") as output, running_server(env, output=output) as base:
        port = base.rsplit(":", 1)[1]
    text = log.read_text()
    assert f"serving on 127.0.0.1:{port}," in text
    assert text.count("serving on ") == 1


def test_a_flow_failing_on_the_operators_input_prints_no_traceback(tmp_path, prefect_harness):
    """`sluice batch --filters` on an item field the tenant's items do not carry: the check
    before Prefect knows only the config, the flow knows the tenant's fields (its items in
    the raw log and its model) and refuses it after Prefect started. Prefect's engine logs the
    failure, but the terminal shows its lines without the engine's traceback, and the reason
    once as ours."""
    from prefect.settings import PREFECT_API_URL

    from sluice.intake.eventlog import EventLog
    from tests.utils.factories import interaction

    log = EventLog(tmp_path / "raw")  # the tenant's events: the flow starts, then fails
    log.append([interaction("u1", "i1")])
    log.close()
    env = {**os.environ, **environment(tmp_path), "PYTHONPATH": str(PROJECT_ROOT),
           "PREFECT_API_URL": PREFECT_API_URL.value()}
    run = [sys.executable, "-m", "cli.main", "batch", "--filters",
           '[{"field": "colour", "op": "eq", "value": "red"}]']  # the config's is `color`
    proc = subprocess.run(run, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert ("sluice batch: FilterError: filters[0].field: unknown item field 'colour'"
            ) in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("unknown item field 'colour'") == 1, proc.stderr
    debug = subprocess.run(run, cwd=PROJECT_ROOT, env={**env, "SLUICE_DEBUG": "1"},
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    # the traceback it showed: raised by the flow's run, inside Prefect's engine
    assert "Flow run 'batch-default-" in debug.stderr, debug.stderr[-3000:]
    assert f"{os.sep}prefect{os.sep}flow_engine.py" in debug.stderr
    assert f"flows{os.sep}batch.py" in debug.stderr


def test_an_input_error_is_one_line_that_names_the_field_and_what_to_do(tmp_path):
    env = environment(tmp_path)
    proc = sluice(env, "experiments", "show", "nope")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "sluice experiments: NotFoundError: experiment: no experiment 'nope': "
        "`sluice experiments list` shows them"]
    (tmp_path / "trackers.json").write_text("garbage")
    proc = sluice(env, "trackers", "list")
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "trackers.json is not valid JSON" in proc.stderr


def test_a_report_over_a_warehouse_that_cannot_be_read_fails_instead_of_saying_no_data(
        tmp_path):
    from sluice.warehouse.db import connect

    env = environment(tmp_path)
    proc = sluice(env, "report")  # not built yet: each section says what fills it
    assert proc.returncode == 0, proc.stderr
    warehouse = tmp_path / "warehouse.duckdb"
    con = connect(warehouse)
    con.execute("create table raw.padding as select range as n from range(100000)")
    con.close()
    with open(warehouse, "r+b") as handle:  # a disk that lost the file's tail
        handle.truncate(4096)
    (tmp_path / "report" / "index.html").unlink()
    proc = sluice(env, "report")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"sluice report: ReportError: the warehouse file://{warehouse} "
                                  "cannot be read ("), proc.stderr
    assert "`sluice doctor` says how to fix it" in proc.stderr
    assert not (tmp_path / "report" / "index.html").exists()


def test_an_unreadable_landing_file_is_logged_once_with_its_reason_and_what_to_do(
        tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "landing").mkdir()
    bad = tmp_path / "landing" / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip")
    env = {**os.environ, **environment(tmp_path), "PYTHONPATH": str(PROJECT_ROOT),
           "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, "-m", "cli.main", "ingest"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "WARNING" in line.upper() and str(bad) in line]
    assert len(said) == 1, said
    assert "Not a gzipped file" in said[0] and "under a new name" in said[0]


def test_batch_options_are_checked_before_prefect_starts(tmp_path):
    """Prefect's API points at a closed port (tests/utils/cli.py): a check made in the flow
    would fail on the connection instead; each typo is one line naming its option."""
    env = environment(tmp_path)
    (tmp_path / "filters.json").write_text("{}")
    missing = f"{tmp_path}/landing/missing.jsonl not found"
    for args, said in (
            (["--template", "nope"], "RecommendationError: --template: must be one of "),
            (["--input", "missing.jsonl"], f"InputError: --input: {missing}"),
            (["--filters", '[{"field": 1}]'], "FilterError: --filters[0].field: "),
            (["--filter-name", "nope"],
             "NotFoundError: --filter-name: no filter named 'nope': `sluice filters list`"),
            (["--segments", "--num-results", "100001"],
             "RecommendationError: --num-results: an integer from 1 to 100000"),
            (["--tenant", "a", "--tenant", "b", "--model-version", "2"],
             "InputError: --model-version: a version is one tenant's")):
        proc = sluice(env, "batch", *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.splitlines() == [proc.stderr.strip()], (args, proc.stderr)
        assert proc.stderr.startswith(f"sluice batch: {said}"), (args, proc.stderr)
    proc = sluice(env, "batch", "--num-results", "0")
    assert proc.returncode == 2 and "argument --num-results: 0 is below 1" in proc.stderr
