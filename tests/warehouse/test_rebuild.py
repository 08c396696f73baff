"""`rebuild`: a real ingest and a real dbt build, then the warehouse rebuilt from the raw log
and the landing folder; the marts must come back row for row, and a failure half-way must
leave the old warehouse as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sluice.intake.eventlog import EventLog
from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.settings import PROJECT_ROOT
from sluice.warehouse import rebuild as rb
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.factories import environment, interaction
from tests.warehouse.test_dbt import dbt_vars

pytestmark = pytest.mark.slow


def marts(warehouse: Path) -> dict[str, list[tuple]]:
    """Every mart's rows, sorted, as plain tuples; without `loaded_at` and `row_loaded_at`,
    which say when ingest loaded a row and its session's login (a rebuild loads everything
    again, so only those may differ)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        names = sorted(rb.mart_counts(warehouse))
        found = {}
        for n in names:
            columns = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = "
                "'marts' and table_name = ? and column_name not in ('loaded_at', 'row_loaded_at') "
                "order by ordinal_position", [n]).fetchall()]
            listed = ", ".join(f'"{c}"' for c in columns)
            found[n] = sorted(con.execute(f'select {listed} from marts."{n}"').fetchall(),
                              key=repr)
        return found
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A warehouse loaded from landing files and two raw log ingests, transformed by dbt."""
    home = tmp_path_factory.mktemp("rebuild")
    generate(home / "landing", SyntheticSpec(users=80, items=40, events=3_000, files=2, seed=3))
    log = EventLog(home / "raw")
    log.append([interaction(f"u{i % 7}", f"i{i % 11}") for i in range(50)])
    Ingestor(home / "warehouse.duckdb", home / "raw", home / "landing").run()
    log.append([interaction(f"u{i % 5}", f"i{i % 13}", "purchase") for i in range(30)])
    log.close()
    Ingestor(home / "warehouse.duckdb", home / "raw", home / "landing").run()
    dbt_build(home / "warehouse.duckdb", home / "dbt", dbt_vars())
    return home


def _rebuild(home: Path, **kwargs) -> rb.RebuildReport:
    lines: list[str] = []
    report = rb.rebuild(home / "warehouse.duckdb", home / "raw", home / "landing",
                        home / "dbt", dbt_vars(), say=lines.append, **kwargs)
    assert any("rebuild 1/3" in line for line in lines) and lines[-1].startswith("rebuild done")
    return report


def test_a_failure_before_the_swap_leaves_the_old_warehouse(home):
    before = marts(home / "warehouse.duckdb")
    inode = (home / "warehouse.duckdb").stat().st_ino
    assert len(before) >= 5 and sum(map(len, before.values())) > 1000

    def crash(new: Path) -> None:
        assert rb.mart_counts(new) == {k: len(v) for k, v in before.items()}
        raise KeyboardInterrupt("killed half-way")

    with pytest.raises(KeyboardInterrupt):
        rb.rebuild(home / "warehouse.duckdb", home / "raw", home / "landing", home / "dbt",
                   dbt_vars(), say=lambda _: None, before_swap=crash)
    assert (home / "warehouse.duckdb").stat().st_ino == inode
    assert marts(home / "warehouse.duckdb") == before
    assert not rb.staging_path(home / "warehouse.duckdb").exists()


def test_a_rebuild_killed_during_dbt_leaves_the_old_warehouse(home):
    """`sluice rebuild` in its own process group, killed -9 (dbt too) while dbt builds."""
    before = marts(home / "warehouse.duckdb")
    env = {**os.environ, **environment(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "rebuild"], env=env,
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("rebuild 2/3: dbt build"):
                break
        else:
            pytest.fail(f"the rebuild ended before dbt ran (exit {proc.wait()})")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert rb.staging_path(home / "warehouse.duckdb").exists()  # the half-built file
    assert marts(home / "warehouse.duckdb") == before


def test_the_rebuilt_marts_equal_the_old_ones_row_for_row(home):
    warehouse = home / "warehouse.duckdb"
    before = marts(warehouse)
    assert sum(map(len, before.values())) > 1000
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (events,) = con.execute("select count(*) from raw.events").fetchone()
    report = _rebuild(home)  # after the killed one: its half-built file is cleared first
    assert report.rows_loaded == events > 3_000
    assert marts(warehouse) == before
    assert report.previous is not None and marts(report.previous) == before
    # the rebuilt manifest knows every file: a following ingest loads nothing again
    again = Ingestor(warehouse, home / "raw", home / "landing").run()
    assert again.rows_loaded == 0 and again.rows_quarantined == 0


def test_a_loaded_landing_file_that_is_gone_stops_the_rebuild(home):
    landing = sorted((home / "landing").glob("*.jsonl*"))[0]
    moved = landing.with_name(".moved")
    landing.rename(moved)
    try:
        with pytest.raises(rb.RebuildError, match="gone"):
            _rebuild(home)
    finally:
        moved.rename(landing)


def test_a_corrupt_warehouse_is_rebuilt(home):
    warehouse = home / "warehouse.duckdb"
    before = marts(warehouse)
    warehouse.write_bytes(b"not a warehouse any more" * 1000)
    _rebuild(home)
    assert marts(warehouse) == before


def test_a_lost_warehouse_whose_wal_was_left_is_rebuilt_and_opens(home):
    """The file is gone (deleted, a disk fault) but its WAL is not: DuckDB would replay that
    WAL onto the rebuilt file and refuse to open it. The rebuild sets it aside."""
    warehouse = home / "warehouse.duckdb"
    before = marts(warehouse)
    writer = ("import duckdb, os, sys\n"
              "con = duckdb.connect(sys.argv[1])\n"
              "con.execute(\"set wal_autocheckpoint = '1TB'\")\n"
              "con.execute('create table raw.scratch as select 1 as x')\n"
              "os.kill(os.getpid(), 9)\n")  # killed with the change only in the WAL
    subprocess.run([sys.executable, "-c", writer, str(warehouse)])
    wal = Path(f"{warehouse}.wal")
    assert wal.stat().st_size > 0
    warehouse.unlink()
    report = _rebuild(home)
    assert report.previous is None and not wal.exists()
    assert [p.name.split("-")[0] for p in home.glob("warehouse.duckdb.wal.orphaned-*")] == [
        "warehouse.duckdb.wal.orphaned"]
    assert marts(warehouse) == before  # opens, and every event is there once
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (events,) = con.execute("select count(*) from raw.events").fetchone()
        (distinct,) = con.execute(
            "select count(*) from (select distinct tenant, event_id from raw.events)").fetchone()
    assert events == distinct == report.rows_loaded
