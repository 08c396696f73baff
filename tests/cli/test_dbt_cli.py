"""`sluice dbt -- <args>`: the project's dbt as the transform flow runs it (warehouse, vars,
lock), and the vars of dbt_project.yml equal to the embedded config's."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import duckdb
import yaml

from sluice.settings import DEFAULT_CONFIG, PROJECT_ROOT, get_settings
from sluice.warehouse.db import connect
from sluice.warehouse.locks import warehouse_lock
from sluice.warehouse.transform import DBT_PROJECT_DIR, dbt_build
from tests.utils.browser import browser, visit
from tests.utils.cli import SLUICE, cli_env, sluice
from tests.utils.factories import environment

ROWS = [  # tenant, event id, type, user, item, interaction type
    ("default", "e1", "u1", "i1", "click"), ("default", "e2", "u1", "i2", "purchase"),
    ("default", "e3", "u2", "i1", "add_to_cart"), ("shop", "e1", "s1", "i9", "purchase"),
]
MARTS = ("select tenant, event_id, interaction_type, weight from marts.interactions "
         "order by 1, 2")


def _warehouse(path) -> None:
    con = connect(path)
    con.executemany(
        "insert into raw.events (event_id, tenant, event_type, event_at, user_id, item_id, "
        "interaction_type, source_file, loaded_at) values (?, ?, 'interaction', "
        "timestamp '2026-03-02 10:00:00', ?, ?, ?, 'hand-made', now())",
        [(e, t, u, i, k) for t, e, u, i, k in ROWS])
    con.close()


def _marts(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(MARTS).fetchall()


def test_sluice_dbt_builds_the_flows_marts_after_a_config_change(tmp_path):
    env = environment(tmp_path, events={"weights": {"purchase": 10.0}})
    _warehouse(tmp_path / "warehouse.duckdb")
    by_hand = sluice(env, "dbt", "--", "build", timeout=600)  # as README writes it
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    hand_marts = _marts(tmp_path / "warehouse.duckdb")

    settings = get_settings(home=tmp_path, config=env["SLUICE_CONFIG"])
    dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars(),
              )  # what the transform flow's task runs
    assert _marts(tmp_path / "warehouse.duckdb") == hand_marts
    assert ("default", "e2", "purchase", 10.0) in hand_marts  # the config's weight, not 4
    assert ("shop", "e1", "purchase", 10.0) in hand_marts


def test_sluice_dbt_waits_for_the_warehouse_lock_and_says_so(tmp_path):
    env = environment(tmp_path)
    _warehouse(tmp_path / "warehouse.duckdb")
    with warehouse_lock(tmp_path / "warehouse.duckdb"):
        proc = subprocess.Popen(
            [*SLUICE, "dbt", "--", "ls", "--select", "interactions"], cwd=PROJECT_ROOT,
            env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = proc.stdout.readline()
        assert "waiting for another job to release" in first
        assert proc.poll() is None  # still waiting while the lock is held
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "sluice.marts.interactions" in out


def test_sluice_dbt_without_a_command_says_how_to_call_it(tmp_path):
    proc = sluice(environment(tmp_path), "dbt", timeout=600)
    assert proc.returncode == 1
    assert "sluice dbt -- build" in proc.stderr and "Traceback" not in proc.stderr


def test_dbt_project_vars_equal_the_embedded_config():
    """A bare `dbt` (without `sluice dbt`) falls back to these: they must not drift."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["vars"] == get_settings(config=DEFAULT_CONFIG).dbt_vars()


def _loaded_hours_ago(path, hours: float) -> None:
    """raw.events' one row, loaded `hours` ago (naive UTC, as ingest stamps loads)."""
    con = connect(path)
    con.execute("insert into raw.events (event_id, tenant, event_type, event_at, user_id, "
                "item_id, interaction_type, source_file, loaded_at) values ('e1', 'default', "
                "'interaction', timestamp '2026-03-02 10:00:00', 'u1', 'i1', 'click', "
                "'hand-made', cast(timezone('UTC', now()) as timestamp) - to_microseconds(?))",
                [int(hours * 3600 * 1e6)])
    con.close()


def test_source_freshness_says_how_long_ago_ingest_loaded_an_event(tmp_path):
    statuses = {}
    for hours, expected_rc in ((1, 0), (30, 0), (100, 1)):  # pass, warn, error
        home = tmp_path / f"h{hours}"
        env = environment(home)
        _loaded_hours_ago(home / "warehouse.duckdb", hours)
        proc = sluice(env, "dbt", "--", "source", "freshness", timeout=600)
        assert proc.returncode == expected_rc, proc.stdout + proc.stderr
        (result,) = json.loads((home / "dbt" / "target" / "sources.json").read_text())["results"]
        assert result["unique_id"] == "source.sluice.sluice.events"
        assert abs(result["max_loaded_at_time_ago_in_s"] - hours * 3600) < 600
        statuses[hours] = result["status"]
    assert statuses == {1: "pass", 30: "warn", 100: "error"}


def test_sluice_dbt_build_after_a_config_change_rebuilds_kept_rows_as_the_flow_would(tmp_path):
    """Incremental marts keep their rows: after the weights change, a plain incremental build
    would leave e2 at the old weight. `sluice dbt -- build` takes --full-refresh as the flow
    does, says so, and records the build so the flow need not rebuild again."""
    env = environment(tmp_path)
    _warehouse(tmp_path / "warehouse.duckdb")
    first = sluice(env, "dbt", "--", "build", timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert ("default", "e2", "purchase", 4.0) in _marts(tmp_path / "warehouse.duckdb")
    again = sluice(env, "dbt", "--", "build", "--select", "interactions", timeout=600)
    assert again.returncode == 0 and "--full-refresh" not in again.stdout  # nothing changed

    env = environment(tmp_path, events={"weights": {"purchase": 10.0}})  # the config changes
    changed = sluice(env, "dbt", "--", "build", timeout=600)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert ("default", "e2", "purchase", 10.0) in _marts(tmp_path / "warehouse.duckdb")
    assert "rebuilt from the whole history (--full-refresh)" in changed.stdout
    settings = get_settings(home=tmp_path, config=env["SLUICE_CONFIG"])
    result = dbt_build(settings.warehouse_path, settings.home / "dbt", settings.dbt_vars())
    assert not [n for n in result.nodes if n["status"] not in ("success", "pass", "warn")]
    ran = json.loads((tmp_path / "dbt" / "target" / "run_results.json").read_text())
    assert "--full-refresh" not in ran["args"]["invocation_command"]  # not a second rebuild


def test_sluice_dbt_docs_serve_neither_waits_for_nor_holds_the_warehouse_lock(tmp_path):
    """`docs serve` runs until stopped and never opens the warehouse: it used to take the
    lock, waiting for a running flow and then keeping every flow waiting while it served.
    The page it serves loads in a browser with every request answered (dbt's server would
    put back dbt-docs' page, whose icons and favicon 404)."""
    import socket

    import httpx

    from tests.utils.waits import wait_until

    env = environment(tmp_path)
    _warehouse(tmp_path / "warehouse.duckdb")
    generated = sluice(env, "dbt", "--", "docs", "generate", timeout=600)  # what it serves
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # fixed by the run that generated it (the flow's `run_dbt`), before anything serves it
    assert "${require(" not in (tmp_path / "dbt" / "target" / "index.html").read_text()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with warehouse_lock(tmp_path / "warehouse.duckdb", timeout=5):  # a flow is running
        proc = subprocess.Popen(
            [*SLUICE, "dbt", "--", "docs", "serve", "--port", str(port), "--no-browser"],
            cwd=PROJECT_ROOT, env=cli_env(env), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            def page() -> int:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/index.html").status_code
                except httpx.TransportError:
                    return 0

            assert wait_until(page, "dbt's docs site", timeout=60, interval=0.5,
                              until=lambda status: status == 200) == 200
            if browser() is not None:
                seen = visit(f"http://127.0.0.1:{port}/")
                assert seen.failed == [] and seen.errors == [], (seen.failed, seen.errors)
                assert seen.outside() == [], seen.outside()
                assert "interactions" in seen.dom
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
