"""The same dbt project on PostgreSQL, chosen by profiles.yml alone (SLUICE_DBT_TARGET=postgres).

A real ingest of a synthetic history, plus the hand-made events of test_dbt.py and some
malformed ones, goes into DuckDB; its raw.* tables are copied into a throwaway PostgreSQL 15+
cluster; `dbt build` (`transform.dbt_build`, as the transform flow runs it) then runs on
both, and every staging view, intermediate table and mart must hold the same rows on both.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.postgres import Postgres, copy_raw_tables, server_bin_dir
from tests.warehouse.test_dbt import RAW, _raw, dbt_vars

BIN_DIR = server_bin_dir()
pytestmark = pytest.mark.skipif(
    BIN_DIR is None, reason="no PostgreSQL server binaries (initdb, pg_ctl) found under "
    "/usr/lib/postgresql/*/bin or on PATH; install them with `apt-get install postgresql`")

SCHEMAS = ("staging", "intermediate", "marts")


def _compact(row: tuple) -> tuple:
    """A hand-made row with its JSON written the way ingest writes it (no spaces)."""
    return tuple(json.dumps(json.loads(value), separators=(",", ":")) if i in (10, 11)
                 and value is not None else value for i, value in enumerate(row))


MESSY = [_compact(row) for row in [
    # values that do not cast, text that is not JSON, lists that hold non-objects
    _raw("m1", "item", "08:00:00", tenant="messy", item="i1",
         fields={"price": "cheap", "category": 7, "tags": ["a", "b"]}),
    _raw("m2", "item", "08:00:00", tenant="messy", item="i2", fields={"in_stock": False}),
    _raw("m3", "ranking", "09:00:00", tenant="messy", user="u1",
         items=[{"id": "i1", "label": "high"}, "oops", {"no_id": 1}, {"id": "i2", "label": 2}]),
    _raw("m4", "interaction", "09:01:00", tenant="messy", user="u1", item="i1", kind="click",
         ranking="m3"),
    _raw("m5", "interaction", "09:02:00", tenant="messy", user="u1", item="i2", kind="click"),
]]
BROKEN_JSON = [("m6", "{not json"), ("m7", "[1, 2")]  # (event_id, fields) of user events


@pytest.fixture(scope="module")
def postgres(postgres_server):
    return postgres_server.database("dbt_parity")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbt-postgres")
    path = root / "warehouse.duckdb"
    history = generate(root / "landing",
                       SyntheticSpec(users=200, items=80, events=4000, files=2, seed=5))
    report = Ingestor(path, root / "raw", root / "landing").run()
    assert report.rows_loaded == history.events and not report.rows_quarantined
    con = connect(path)
    con.executemany(f"insert into raw.events values ({', '.join('?' * 14)})", RAW + MESSY)
    for event_id, fields in BROKEN_JSON:
        row = list(_raw(event_id, "user", "08:00:00", tenant="messy", user="u9"))
        row[10] = fields
        con.execute(f"insert into raw.events values ({', '.join('?' * 14)})", row)
    con.close()
    return {"root": root, "path": path}


@pytest.fixture(scope="module")
def builds(warehouse, postgres):
    """dbt build on DuckDB; on PostgreSQL, a build from a copy of the same raw tables without
    the last ingested file, then that file and an incremental build."""
    root = warehouse["root"]
    duck = dbt_build(warehouse["path"], root / "dbt-duckdb", dbt_vars())
    copied = copy_raw_tables(warehouse["path"], postgres)
    held_back = _hold_back_last_file(warehouse, postgres)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in postgres.env().items():
            mp.setenv(key, value)
        first = dbt_build(warehouse["path"], root / "dbt-postgres", dbt_vars())
        _insert_pg(postgres, held_back)
        pg = dbt_build(warehouse["path"], root / "dbt-postgres", dbt_vars())
    results = json.loads((root / "dbt-postgres" / "target" / "run_results.json").read_text())
    compiled = {r["unique_id"]: r.get("compiled_code") or "" for r in results["results"]}
    return {"duckdb": duck, "postgres": pg, "copied": copied, "first": first,
            "held_back": len(held_back), "compiled": compiled}


def _hold_back_last_file(warehouse: dict, server: Postgres) -> list[tuple]:
    """Deletes from PostgreSQL's raw.events the rows of the file ingest loaded last; returns
    them."""
    rows = duck_rows(warehouse, "select * from raw.events where source_file = (select "
                                "source_file from raw.events order by loaded_at desc limit 1)")
    con = server.connect()
    try:
        with con:
            con.cursor().execute("delete from raw.events where source_file = %s", [rows[0][12]])
    finally:
        con.close()
    return rows


def _insert_pg(server: Postgres, rows: list[tuple]) -> None:
    from psycopg2.extras import execute_values

    con = server.connect()
    try:
        with con:
            execute_values(con.cursor(), "insert into raw.events values %s", rows)
    finally:
        con.close()


def duck_rows(warehouse: dict, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse["path"]), read_only=True) as con:
        return con.execute(sql).fetchall()


def pg_rows(server: Postgres, sql: str) -> list[tuple]:
    con = server.connect()
    try:
        cursor = con.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        con.close()


def both(warehouse: dict, server: Postgres, sql: str) -> tuple[list, list]:
    """The rows of one query on each engine, sorted the same way."""
    return (sorted(duck_rows(warehouse, sql), key=repr),
            sorted(pg_rows(server, sql), key=repr))


def test_the_build_passes_on_postgres_with_every_node_of_the_duckdb_build(builds, warehouse):
    duck, first, pg = builds["duckdb"], builds["first"], builds["postgres"]
    assert first.ok and pg.ok and not pg.failures
    assert all(n["status"] in ("success", "pass") for n in first.nodes + pg.nodes)
    assert {n["node"] for n in first.nodes} == {n["node"] for n in duck.nodes}
    kinds = {n["node"].split(".")[0] for n in first.nodes}
    assert kinds == {"model", "test", "unit_test", "operation"}  # operation: on-run-start
    # item fields of every type the config may name (stg_sluice__items.yml)
    assert "unit_test.sluice.stg_sluice__items." \
           "test_item_fields_of_every_type_become_typed_columns_or_null" in {
               n["node"] for n in first.nodes}
    # the incremental build runs every node but the unit tests, passed with the same project
    assert {n["node"] for n in pg.nodes} == {n["node"] for n in duck.nodes
                                             if not n["node"].startswith("unit_test.")}
    assert builds["copied"]["events"] == duck_rows(
        warehouse, "select count(*) from raw.events")[0][0]


def test_the_second_postgres_build_was_incremental(builds):
    # rows of the file held back reached the marts through the incremental branches (the
    # relations below equal DuckDB's full build)
    assert builds["held_back"] > 1000
    assert "changed_lists as" in builds["compiled"]["model.sluice.int_impressions"]
    assert "identified_sessions as" in builds["compiled"]["model.sluice.interactions"]
    # and its tests on the incremental models take the new-rows filter, valid SQL on
    # PostgreSQL too (the bound is read from the DuckDB file this test redirects to the server,
    # which already holds the held-back file: here the filter keeps no row)
    filtered = [uid for uid, sql in builds["compiled"].items()
                if uid.startswith("test.") and "where loaded_at > cast('20" in sql]
    assert any("int_impressions" in uid for uid in filtered), filtered


def relations(warehouse: dict) -> list[tuple[str, str]]:
    return duck_rows(warehouse, "select table_schema, table_name from information_schema.tables "
                                f"where table_schema in {SCHEMAS} order by 1, 2")


def test_every_staging_intermediate_and_mart_relation_holds_the_same_rows(builds, warehouse,
                                                                          postgres):
    found = relations(warehouse)
    # 20 relations, 8 of experiments and exploration's slot_propensities
    assert len(found) == 29 and {("marts", "experiment_results"),
                                 ("marts", "slot_propensities")} <= set(found)
    differing = {}
    for schema, table in found:
        columns = [name for (name,) in duck_rows(
            warehouse, "select column_name from information_schema.columns where "
                       f"table_schema = '{schema}' and table_name = '{table}' "
                       "order by ordinal_position")]
        in_duckdb, in_postgres = both(
            warehouse, postgres, f"select {', '.join(columns)} from {schema}.{table}")
        if in_duckdb != in_postgres:
            differing[f"{schema}.{table}"] = (len(in_duckdb), len(in_postgres))
    assert differing == {}


def test_marts_row_counts_and_contents_agree(builds, warehouse, postgres):
    for mart in ("interactions", "items", "users", "data_sufficiency", "recommendation_events",
                 "recommendation_performance", "ranking_outcomes"):
        counted = both(warehouse, postgres,
                       f"select tenant, count(*) from marts.{mart} group by tenant")
        assert counted[0] == counted[1], mart
    assert {t for t, _ in counted[0]} >= {"default", "shop"}

    weights = both(warehouse, postgres,
                   "select tenant, user_id, item_id, weight from marts.interactions")
    assert weights[0] == weights[1] and len(weights[0]) > 2000
    assert ("shop", "anon:s9", "i1", 1.5) in weights[1]

    items = both(warehouse, postgres, "select tenant, item_id, category, brand, color, price, "
                                      "fields from marts.items")
    assert items[0] == items[1]
    shop_i1 = next(row for row in items[1] if row[:2] == ("shop", "i1"))
    assert shop_i1[2:] == ("books", None, None, 9.0, '{"category":"books","price":9.0}')
    synthetic = [row for row in items[1] if row[0] == "default"]
    assert len(synthetic) == 80 and all(row[2] and row[3] and row[5] > 0 for row in synthetic)
    assert all(json.loads(row[6])["category"] == row[2] for row in synthetic)

    counts = both(warehouse, postgres, "select tenant, recommendation_id, template, "
                                       "personalized_count, model_personalized_count, "
                                       "non_personalized_count, model_non_personalized_count, "
                                       "model_fallback_count, fallback_count, total "
                                       "from marts.recommendation_events")
    assert counts[0] == counts[1]
    assert [row[1:4] + row[9:] for row in counts[1]] == [
        ("q1", "personalized", 2, 4), ("q2", "personalized", 0, 2), ("q3", "personalized", 1, 1)]

    sufficiency = both(warehouse, postgres, "select tenant, interactions, "
                                            "users_with_two_interactions, missing_interactions, "
                                            "is_sufficient from marts.data_sufficiency")
    assert sufficiency[0] == sufficiency[1]
    assert sufficiency[1][0][0] == "default" and sufficiency[1][0][1] > 2000
    assert sufficiency[1][1:] == [("messy", 2, 1, 0, True), ("other", 2, 1, 0, True),
                                  ("shop", 9, 3, 0, True)]


def test_malformed_values_are_null_on_both_not_a_failed_build(builds, warehouse, postgres):
    rows = both(warehouse, postgres, "select item_id, category, price, fields from marts.items "
                                     "where tenant = 'messy'")
    assert rows[0] == rows[1] == [
        ("i1", "7", None, '{"category":7,"price":"cheap","tags":["a","b"]}'),
        ("i2", None, None, '{"in_stock":false}')]
    shown = both(warehouse, postgres, "select position, item_id, label "
                                      "from staging.stg_sluice__ranking_items "
                                      "where tenant = 'messy'")
    assert shown[0] == shown[1] == [(1, "i1", None), (4, "i2", 2.0)]
    profiles = both(warehouse, postgres, "select event_id, fields from staging.stg_sluice__users "
                                         "where tenant = 'messy'")
    assert profiles[0] == profiles[1] == [("m6", None), ("m7", None)]
