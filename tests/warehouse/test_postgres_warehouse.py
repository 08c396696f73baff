"""The PostgreSQL warehouse (`warehouse.engine: postgres`) against a real throwaway server.

Ingest loads the same rows, quarantine and manifest into PostgreSQL as into DuckDB, once;
the advisory lock keeps a second transform out until the holder ends (even by kill -9); the
settings select the engine and keep the DSN's password out of everything shown. The crash
test (`test_ingest_crash.py`) and the whole pipeline's parity
(`tests/e2e/test_postgres_pipeline.py`) run on this server too.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.intake.eventlog import EventLog
from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.settings import ConfigError, Settings
from sluice.warehouse.engine import (
    DuckDBOnlyError,
    DuckDBWarehouse,
    duckdb_path,
    from_settings,
)
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.locks import LockTimeoutError
from sluice.warehouse.positions import trained_positions
from sluice.warehouse.postgres import PostgresWarehouse
from sluice.warehouse.transform import dbt_build
from tests.utils.factories import write_config
from tests.warehouse.test_dbt import dbt_vars

T0 = 1_767_225_600_000
_names = itertools.count()


@pytest.fixture
def pg(postgres_server) -> PostgresWarehouse:
    """An empty database of its own on the session's server."""
    return PostgresWarehouse(postgres_server.database(f"wh_{os.getpid()}_{next(_names)}").dsn())


def _inputs(root: Path) -> int:
    """A synthetic history, a raw log segment, a file with refused lines (one holding a NUL
    byte, which PostgreSQL text cannot store), an unreadable file, and a duplicate; returns
    how many distinct events they hold."""
    history = generate(root / "landing",
                       SyntheticSpec(users=60, items=30, events=1500, files=2, seed=3))
    log = EventLog(root / "raw")
    log.append([{"event": "interaction", "id": f"r{n}", "timestamp": T0 + n, "user": f"u{n}",
                 "item": "i1", "type": "click"} for n in range(20)])
    log.close()
    (root / "landing" / "refused.jsonl").write_bytes(
        b'{"event": "interaction", "timestamp": 1767225600000}\n'
        b'not json \x00 at all\n'
        + json.dumps({"event": "interaction", "id": "r3", "timestamp": T0, "user": "u3",
                      "item": "i1", "type": "click"}).encode() + b"\n")  # r3 is in the log
    (root / "landing" / "broken.parquet").write_bytes(b"not parquet")
    return history.events + 20


RAW_QUERIES = {
    "events": "select event_id, tenant, event_type, event_at, user_id, session_id, item_id, "
              "interaction_type, ranking_id, event_value, fields, items, source_file "
              "from raw.events",
    "quarantine": "select source_file, line_number, reason from raw.quarantine",
    "manifest": "select path, size_bytes, checksum, rows_loaded, rows_quarantined, "
                "duplicates_skipped from raw.manifest",
}


def _raw(warehouse) -> dict[str, list[tuple]]:
    return {name: sorted((tuple(row) for row in warehouse.rows(sql)), key=repr)
            for name, sql in RAW_QUERIES.items()}


def test_ingest_loads_into_postgres_what_it_loads_into_duckdb_and_only_once(tmp_path, pg):
    events = _inputs(tmp_path)
    duck = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    on_duckdb = Ingestor(duck, tmp_path / "raw", tmp_path / "landing").run()
    on_postgres = Ingestor(pg, tmp_path / "raw", tmp_path / "landing").run()

    assert on_postgres.summary() == on_duckdb.summary()
    assert on_postgres.rows_loaded == events and on_postgres.duplicates_skipped == 1
    assert on_postgres.summary()["unreadable_files"] == [str(tmp_path / "landing" /
                                                             "broken.parquet")]
    assert _raw(pg) == _raw(duck)
    quarantined = pg.rows("select line_number, reason, record from raw.quarantine "
                          "where source_file like '%refused.jsonl' order by 1")
    assert [(n, reason.split(":")[0]) for n, reason, _ in quarantined] == [
        (1, "id"), (2, "line is not JSON")]
    assert quarantined[1][2] == "not json \ufffd at all"  # the NUL replaced, the line kept

    again = Ingestor(pg, tmp_path / "raw", tmp_path / "landing").run()
    assert {f.status for f in again.files} == {"unchanged"} and again.rows_loaded == 0

    log = EventLog(tmp_path / "raw")  # the segment grows: only its new lines load
    log.append([{"event": "interaction", "id": "late", "timestamp": T0, "user": "u1",
                 "item": "i2", "type": "click"}])
    log.close()
    grown = Ingestor(pg, tmp_path / "raw", tmp_path / "landing").run()
    assert grown.rows_loaded == 1 and [f.status for f in grown.files].count("loaded") == 1
    assert pg.rows("select count(*) from raw.events") == [(events + 1,)]


def _hand_mart(warehouse) -> None:
    """marts.interactions as far as the positions read it: each row's raw load time."""
    sql = "create table marts.interactions as select loaded_at from raw.events"
    if isinstance(warehouse, PostgresWarehouse):
        con = warehouse.connect()
        with con, con.cursor() as cursor:
            cursor.execute("create schema marts")
            cursor.execute(sql)
        con.close()
    else:
        with warehouse.writer() as writer:
            writer.con.execute("create schema marts")
            writer.con.execute(sql)


def test_the_raw_logs_positions_read_the_same_on_postgres_as_on_duckdb(tmp_path, pg):
    _inputs(tmp_path)
    duck = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    found = {}
    for warehouse in (duck, pg):
        Ingestor(warehouse, tmp_path / "raw", tmp_path / "landing").run()
        _hand_mart(warehouse)
        found[warehouse.engine] = trained_positions(warehouse, tmp_path / "raw")
    ((segment, size),) = [(p.name, p.stat().st_size) for p in (tmp_path / "raw").iterdir()
                          if p.name.startswith("segment-")]
    # the writer may still append to its segment: named with its bytes
    assert found["postgres"] == found["duckdb"] == {"whole_through": {}, "unloaded": [],
                                                    "covered": {segment: size}, "unknown": []}
    log = EventLog(tmp_path / "raw")  # loaded after the marts were built: not known how far
    log.append([{"event": "interaction", "id": "late", "timestamp": T0, "user": "u1",
                 "item": "i2", "type": "click"}])
    log.close()
    (new,) = {p.name for p in (tmp_path / "raw").glob("segment-*")} - {segment}
    for warehouse in (duck, pg):
        Ingestor(warehouse, tmp_path / "raw", tmp_path / "landing").run()
        found[warehouse.engine] = trained_positions(warehouse, tmp_path / "raw")
    assert found["postgres"] == found["duckdb"] == {"whole_through": {}, "unloaded": [],
                                                    "covered": {segment: size},
                                                    "unknown": [new]}


HOLDER = """
import sys
from sluice.warehouse.postgres import PostgresWarehouse
with PostgresWarehouse(sys.argv[1]).lock():
    print("held", flush=True)
    sys.stdin.readline()
"""


class Impatient(PostgresWarehouse):
    """Waits a second for the lock instead of an hour."""

    def lock(self, timeout: float = 1.0, say=None):  # type: ignore[no-untyped-def]
        return super().lock(timeout=timeout, say=say)


def test_the_advisory_lock_keeps_a_second_transform_out_until_its_holder_dies(tmp_path, pg):
    generate(tmp_path / "landing", SyntheticSpec(users=30, items=20, events=300, files=1))
    Ingestor(pg, tmp_path / "raw", tmp_path / "landing").run()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, pg.dsn], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        impatient = Impatient(pg.dsn)
        with pytest.raises(LockTimeoutError, match="advisory lock on postgresql://"):
            dbt_build(impatient, tmp_path / "dbt", dbt_vars(), select="stg_sluice__events")
        assert not (tmp_path / "dbt" / "target" / "run_results.json").exists()
        with pytest.raises(LockTimeoutError):  # ingest waits for it as well
            Ingestor(impatient, tmp_path / "raw", tmp_path / "landing").run()
        holder.send_signal(signal.SIGKILL)  # a crashed holder: its session ends, so its lock
        holder.wait(timeout=30)
        built = dbt_build(impatient, tmp_path / "dbt", dbt_vars(), select="stg_sluice__events")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stdin.close()
    assert built.ok and {n["node"] for n in built.nodes} >= {
        "model.sluice.stg_sluice__events"}
    assert pg.rows("select count(*) from staging.stg_sluice__events")[0][0] == 300


def test_one_setting_selects_the_engine_and_the_dsn_password_is_never_shown(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("SLUICE_WAREHOUSE_DSN", raising=False)
    default = Settings(home=tmp_path, config=write_config(tmp_path / "duck.yaml"))
    assert default.app.warehouse.engine == "duckdb"
    chosen = from_settings(default)
    assert isinstance(chosen, DuckDBWarehouse) and chosen.path == tmp_path / "warehouse.duckdb"
    assert duckdb_path(default, "sluice rebuild") == tmp_path / "warehouse.duckdb"

    config = write_config(tmp_path / "pg.yaml", warehouse={"engine": "postgres"})
    without = Settings(home=tmp_path, config=config)
    with pytest.raises(ConfigError, match="SLUICE_WAREHOUSE_DSN is not set: set it"):
        from_settings(without)

    dsn = "postgresql://sluice:s3cret-pw@db.example:6543/shop"
    monkeypatch.setenv("SLUICE_WAREHOUSE_DSN", dsn)
    settings = Settings(home=tmp_path, config=config)
    warehouse = from_settings(settings)
    assert isinstance(warehouse, PostgresWarehouse)
    assert warehouse.uri() == str(warehouse) == "postgresql://sluice@db.example:6543/shop"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())
    assert warehouse.dbt_env() == {  # dbt gets it through its environment only
        "SLUICE_DBT_TARGET": "postgres", "SLUICE_PG_HOST": "db.example",
        "SLUICE_PG_PORT": "6543", "SLUICE_PG_USER": "sluice", "SLUICE_PG_PASSWORD": "s3cret-pw",
        "SLUICE_PG_DBNAME": "shop"}
    monkeypatch.setenv("SLUICE_WAREHOUSE_DSN", "host=db password=s3cret-pw 'unclosed")
    with pytest.raises(ValueError, match="is not a PostgreSQL DSN") as refused:
        from_settings(Settings(home=tmp_path, config=config))
    assert "s3cret-pw" not in str(refused.value) and refused.value.__cause__ is None
    with pytest.raises(DuckDBOnlyError, match="sluice rebuild works on the DuckDB warehouse "
                                              "only, and warehouse.engine is postgres"):
        duckdb_path(settings, "sluice rebuild")


def test_doctor_checks_the_postgres_warehouse_it_is_configured_with(tmp_path, monkeypatch, pg):
    from sluice.operate.doctor import _warehouse

    config = write_config(tmp_path / "pg.yaml", warehouse={"engine": "postgres"})
    monkeypatch.setenv("SLUICE_WAREHOUSE_DSN", pg.dsn)
    settings = Settings(home=tmp_path, config=config)
    (empty,) = _warehouse(settings)
    assert empty.ok and empty.note == f"{pg.uri()}: none yet (`sluice ingest` creates it)"
    generate(tmp_path / "landing", SyntheticSpec(users=20, items=10, events=100, files=1))
    loaded = Ingestor(pg, tmp_path / "raw", tmp_path / "landing").run().rows_loaded
    (found,) = _warehouse(settings)
    assert found.ok and found.note == f"{pg.uri()}: {loaded:,} raw events"
    monkeypatch.setenv("SLUICE_WAREHOUSE_DSN",  # nothing listens on port 1
                       f"postgresql://postgres@127.0.0.1:1/{pg.parts['dbname']}")
    (down,) = _warehouse(Settings(home=tmp_path, config=config))
    assert not down.ok and "cannot be reached" in down.problem and "SLUICE_WAREHOUSE_DSN" in \
        down.fix
    assert not (tmp_path / "warehouse.duckdb").exists()
