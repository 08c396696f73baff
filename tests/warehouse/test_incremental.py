"""Incremental dbt: a history built in two halves equals a full refresh of it, row for row.

A real ingest of the first half of a synthetic history (and hand-made events), a real
`dbt build`; then the second half, with late events (loaded now, happened before what the
marts hold), an anonymous session that logs in (its earlier rows change user), a session whose
login turns out earlier than the one known, clicks on lists shown in the first half and a
catalog update, and an incremental build. A copy of that warehouse is then rebuilt with
`--full-refresh`, and every staging, intermediate and mart relation of both must hold the same
rows (EXCEPT ALL, both ways).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import UNIT_TESTED_WITH, TransformError, dbt_build
from tests.warehouse.test_dbt import _counts, _raw, _slots, dbt_vars

SCHEMAS = ("staging", "intermediate", "marts")


def _experiment_answer(event_id: str, user: str, arm: str) -> tuple:
    fields = {**_counts(2, 0, 0, 0), "experiment": "exp1", "arm": arm, "arm_share": 0.5}
    return _raw(event_id, "recommendation", "14:00:00", user=user,
                items=_slots("model_personalized", "model_personalized"), fields=fields)


def _on(event_at: str, row: tuple) -> tuple:
    """A hand-made row that happened at event_at, another day than test_dbt.DAY."""
    return (*row[:3], event_at, *row[4:])


FIRST = [
    _raw("it1", "item", "08:00:00", item="i1", fields={"category": "books", "price": 12.5}),
    _raw("us1", "user", "08:00:00", user="u1", fields={"country": "de"}),
    # hs1 browses anonymously; it logs in only in the second half
    _raw("r1", "ranking", "09:59:00", session="hs1",
         items=[{"id": "i1"}, {"id": "i2", "label": 1}, {"id": "i3"}]),
    _raw("a1", "interaction", "10:00:00", session="hs1", item="i1", kind="click", ranking="r1"),
    # hs2 is known as u2 from 10:00 on; a late event will show it was u9 from 09:00
    _raw("a2", "interaction", "10:00:00", user="u2", session="hs2", item="i2", kind="click"),
    _raw("a3", "interaction", "10:30:00", session="hs2", item="i3", kind="purchase", value=9.0),
    # anonymous lists nothing will name: only their session's identity changes them
    _raw("r2", "ranking", "09:58:00", session="hs1", items=[{"id": "i2"}]),
    _raw("r3", "ranking", "10:20:00", session="hs2", items=[{"id": "i1"}]),
    # an answer served to the anonymous hs3, and two experiment answers
    _raw("q1", "recommendation", "13:00:00", session="hs3",
         items=_slots("model_personalized", "fallback"), fields=_counts(1, 0, 0, 1)),
    _experiment_answer("x1", "u5", "a"),
    _experiment_answer("x2", "u6", "b"),
    # PutEvents' impressions of lists named by a recommendationId: one of answer x9, whose
    # logged answer is loaded only in the second half (a click may beat the queued answer to
    # the log), and one of a list from elsewhere (ext9), recorded again in the second half
    _raw("x9-imp", "ranking", "15:00:10", user="u7", ranking="x9",
         items=[{"id": "i1"}, {"id": "i2"}]),
    _raw("a10", "interaction", "15:00:10", user="u7", item="i2", kind="click", ranking="x9"),
    _raw("ext9-imp1", "ranking", "15:10:00", user="u8", ranking="ext9",
         items=[{"id": "i1"}, {"id": "i3"}]),
]

SECOND = [
    # hs1 logs in: r1 and a1 (first half) now belong to u1
    _raw("a4", "interaction", "10:05:00", user="u1", session="hs1", item="i2", kind="click"),
    # late: happened before a2, so hs2 (and a3) belong to u9 now
    _raw("a5", "interaction", "09:00:00", user="u9", session="hs2", item="i1", kind="click"),
    # late clicks and purchases on lists shown in the first half
    _raw("a6", "interaction", "10:01:00", session="hs1", item="i3", kind="click", ranking="r1"),
    _raw("a7", "interaction", "13:05:00", user="u3", session="hs3", item="i1", kind="purchase",
         ranking="q1", value=20.0),
    _raw("a8", "interaction", "14:01:00", user="u5", item="i2", kind="click", ranking="x1"),
    # the answer x9 the first half's impression named; a second click on ext9, with its
    # impression recorded again
    _raw("x9", "recommendation", "15:00:00", user="u7",
         items=_slots("model_personalized", "model_personalized"), fields=_counts(2, 0, 0, 0)),
    _raw("ext9-imp2", "ranking", "15:11:00", user="u8", ranking="ext9",
         items=[{"id": "i1"}, {"id": "i3"}]),
    _raw("a11", "interaction", "15:11:00", user="u8", item="i3", kind="click", ranking="ext9"),
    # a catalog update, and an event from the day before everything else
    _raw("it2", "item", "09:00:00", item="i1", fields={"price": 9.0}),
    _on("2026-03-01 07:00:00",
        _raw("a9", "interaction", "00:00:00", user="u2", item="i3", kind="click")),
]


def _insert(warehouse: Path, rows: list[tuple]) -> None:
    """Hand-made rows loaded now, after the ingest before them (as the next load would be)."""
    loaded_at = datetime.now(UTC).replace(tzinfo=None)
    con = connect(warehouse)
    try:
        con.executemany(f"insert into raw.events values ({', '.join('?' * 14)})",
                        [(*row[:13], loaded_at) for row in rows])
    finally:
        con.close()


def _ingest(root: Path, warehouse: Path) -> int:
    return Ingestor(warehouse, root / "raw", root / "landing").run().rows_loaded


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("incremental")
    warehouse = root / "warehouse.duckdb"
    history = generate(root / "later", SyntheticSpec(users=200, items=80, events=6000, files=4,
                                                     seed=11))
    (root / "landing").mkdir()
    for path in history.paths[:2]:  # the files are in event time order: the earlier half
        path.rename(root / "landing" / path.name)
    first_loaded = _ingest(root, warehouse)
    _insert(warehouse, FIRST)
    first = dbt_build(warehouse, root / "dbt", dbt_vars())
    after_first = {
        "hs1": query(warehouse, "select distinct user_id from marts.interactions "
                                "where tenant = 'shop' and event_id = 'a1'"),
        "users": query(warehouse, "select user_id from marts.users where tenant = 'shop' "
                                  "order by 1"),
        "x9": query(warehouse, "select item_id, is_clicked from marts.ranking_outcomes "
                               "where tenant = 'shop' and ranking_id = 'x9' order by 1"),
    }
    for path in history.paths[2:]:
        path.rename(root / "landing" / path.name)
    second_loaded = _ingest(root, warehouse)
    _insert(warehouse, SECOND)
    second = dbt_build(warehouse, root / "dbt", dbt_vars())
    compiled, tested = _compiled(root), _tests(root)  # the refresh below writes its own
    incremental = root / "incremental.duckdb"
    shutil.copy(warehouse, incremental)
    full = dbt_build(warehouse, root / "dbt", dbt_vars(), full_refresh=True)
    return {"root": root, "full": warehouse, "incremental": incremental, "first": first,
            "second": second, "refresh": full, "after_first": after_first, "compiled": compiled,
            "tested": {"second": tested, "refresh": _tests(root)},
            "loaded": (first_loaded, second_loaded)}


def _compiled(root: Path) -> dict[str, str]:
    """The SQL each model of the last build ran, by model name."""
    results = json.loads((root / "dbt" / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[2]: r.get("compiled_code") or ""
            for r in results["results"] if r["unique_id"].startswith("model.")}


def _tests(root: Path) -> dict[str, tuple[str, str]]:
    """Each data test of the last build: (what it tests: "incremental", "table" or "view" and
    its schema, or "source"), and the SQL it ran."""
    target = root / "dbt" / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())["results"]
    tested = {}
    for result in results:
        test = manifest["nodes"].get(result["unique_id"], {})
        if not test.get("test_metadata"):  # a model, or a singular test
            continue
        node = manifest["nodes"].get(test.get("attached_node") or "")
        kind = "source" if node is None else (
            f"{node['config']['materialized']} {node['schema']}")
        tested[result["unique_id"]] = (kind, result.get("compiled_code") or "")
    return tested


def test_both_halves_were_ingested_and_every_build_passed(halves):
    assert all(n > 2000 for n in halves["loaded"])
    for build in ("first", "second", "refresh"):
        assert halves[build].ok and not halves[build].failures, build


def test_the_first_half_shows_the_session_still_anonymous(halves):
    assert halves["after_first"]["hs1"] == [("anon:hs1",)]
    assert ("anon:hs1",) in halves["after_first"]["users"]


def relations(warehouse: Path) -> list[tuple[str, str]]:
    return query(warehouse, "select table_schema, table_name from information_schema.tables "
                            f"where table_schema in {SCHEMAS} order by 1, 2")


def test_every_relation_equals_a_full_refresh_row_for_row(halves):
    found = relations(halves["full"])
    assert len(found) >= 28 and found == relations(halves["incremental"])
    differing, sizes = {}, {}
    with duckdb.connect(str(halves["full"]), read_only=True) as con:
        con.execute(f"attach '{halves['incremental']}' as incremental (read_only)")
        for schema, table in found:
            name = f"{schema}.{table}"
            only_full = con.execute(f"select count(*) from (select * from {name} except all "
                                    f"select * from incremental.{name})").fetchall()[0][0]
            only_incremental = con.execute(
                f"select count(*) from (select * from incremental.{name} except all "
                f"select * from {name})").fetchall()[0][0]
            sizes[name] = con.execute(f"select count(*) from {name}").fetchall()[0][0]
            if only_full or only_incremental:
                differing[name] = (only_full, only_incremental)
    assert differing == {}
    # the comparison is about real rows: every mart the history reaches has some
    assert sizes["marts.interactions"] > 2000 and sizes["intermediate.int_impressions"] > 10000
    assert sizes["marts.experiment_results"] > 0 and sizes["marts.slot_propensities"] > 0


def test_the_second_build_was_incremental(halves):
    # each incremental model ran its incremental branch: it reads what changed since its
    # watermark, not the whole history
    compiled = halves["compiled"]
    assert "changed_lists as" in compiled["int_impressions"]
    # the marts copied from it take the lists it updated since their own watermark
    for model in ("ranking_outcomes", "slot_propensities"):
        assert "shown_list_updated_at > cast('20" in compiled[model], model
        assert "changed_lists" not in compiled[model], model
    for model in ("int_interactions_stitched", "interactions", "recommendation_events"):
        assert "identified_sessions as" in compiled[model], model
    for model in ("int_session_identities", "stg_sluice__ranking_items",
                  "stg_sluice__recommendation_items"):
        assert "loaded_at > cast('20" in compiled[model], model


def test_a_session_that_logs_in_later_moves_its_earlier_rows_to_the_user(halves):
    warehouse = halves["incremental"]
    assert query(warehouse, "select event_id, user_id from marts.interactions "
                            "where tenant = 'shop' and event_id in ('a1', 'a4', 'a6') "
                            "order by 1") == [("a1", "u1"), ("a4", "u1"), ("a6", "u1")]
    assert query(warehouse, "select position, user_id, is_clicked from marts.ranking_outcomes "
                            "where tenant = 'shop' and ranking_id = 'r1' order by 1") == [
        (1, "u1", True), (2, "u1", False), (3, "u1", True)]
    users = [u for (u,) in query(warehouse, "select user_id from marts.users "
                                            "where tenant = 'shop'")]
    assert "anon:hs1" not in users and "u1" in users
    # a list no interaction names moves with its session (shown_list_updated_at: the login's load)
    assert query(warehouse, "select user_id from marts.ranking_outcomes "
                            "where tenant = 'shop' and ranking_id = 'r2'") == [("u1",)]


def test_a_late_earlier_login_takes_the_session_over(halves):
    warehouse = halves["incremental"]
    assert query(warehouse, "select user_id, identified_by from "
                            "intermediate.int_session_identities "
                            "where tenant = 'shop' and session_id = 'hs2'") == [("u9", "a5")]
    assert query(warehouse, "select event_id, user_id from marts.interactions where "
                            "tenant = 'shop' and event_id in ('a2', 'a3', 'a5') order by 1") == [
        ("a2", "u2"), ("a3", "u9"), ("a5", "u9")]
    assert query(warehouse, "select user_id from marts.ranking_outcomes "
                            "where tenant = 'shop' and ranking_id = 'r3'") == [("u9",)]


def test_late_outcomes_reach_answers_shown_before(halves):
    warehouse = halves["incremental"]
    assert query(warehouse, "select position, user_id, is_clicked from marts.slot_propensities "
                            "where tenant = 'shop' and recommendation_id = 'q1' order by 1") == [
        (1, "u3", False), (2, "u3", False)]
    assert query(warehouse, "select user_id from marts.recommendation_events "
                            "where tenant = 'shop' and recommendation_id = 'q1'") == [("u3",)]
    assert query(warehouse, "select arm, sum(clicks) from marts.experiment_daily "
                            "where tenant = 'shop' group by 1 order by 1") == [
        ("a", 1), ("b", 0)]
    assert query(warehouse, "select price from marts.items "
                            "where tenant = 'shop' and item_id = 'i1'") == [(9.0,)]
    assert query(warehouse, "select cast(first_seen_at as varchar) from marts.users "
                            "where tenant = 'shop' and user_id = 'u2'") == [
        ("2026-03-01 07:00:00",)]


def _unit_tests(result) -> list[str]:
    return sorted(n["node"] for n in result.nodes if n["node"].startswith("unit_test."))


def test_unit_tests_run_when_the_project_or_the_engines_change_not_on_a_refresh(halves):
    # the first build and the full refresh run them; the incremental build, with the project,
    # vars and engines they passed with, leaves them out
    assert len(_unit_tests(halves["first"])) >= 7
    assert _unit_tests(halves["refresh"]) == _unit_tests(halves["first"])
    assert _unit_tests(halves["second"]) == []
    # another dbt or DuckDB than the one they passed with: they run again
    marker = halves["root"] / "dbt" / UNIT_TESTED_WITH
    passed_with = marker.read_text()
    assert "dbt-core==" in passed_with and "duckdb==" in passed_with
    marker.write_text(passed_with.replace("dbt-core==", "dbt-core==0.0.0+"))
    again = dbt_build(halves["full"], halves["root"] / "dbt", dbt_vars())
    assert _unit_tests(again) == _unit_tests(halves["first"])
    assert marker.read_text() == passed_with


# what macros/incremental.sql's get_where_subquery makes of a test's model
NEW_ROWS = re.compile(r"\(select \* from \S+ where loaded_at > cast\('2\d{3}-[^']+' "
                      r"as timestamp\)\)")


def test_an_incremental_build_tests_only_the_rows_it_loaded(halves):
    second, refresh = halves["tested"]["second"], halves["tested"]["refresh"]
    # rows that never change once written (the raw events, the staging views over them) and
    # the incremental models: their tests read what this build loaded
    loaded = [sql for kind, sql in second.values()
              if kind.startswith("incremental") or kind in ("source", "view staging")]
    assert len(loaded) >= 60 and all(NEW_ROWS.search(sql) for sql in loaded)
    # tables are rebuilt whole, so they are tested whole; a full refresh tests every row
    whole = [sql for kind, sql in second.values() if kind.startswith("table")]
    assert len(whole) >= 30 and not any("loaded_at >" in sql for sql in whole)
    assert len(refresh) == len(second)
    assert not any("loaded_at >" in sql for _, sql in refresh.values())


def test_a_bad_new_row_still_fails_an_incremental_build(halves):
    warehouse, work_dir = halves["full"], halves["root"] / "dbt"
    kept = halves["root"] / "kept.duckdb"
    shutil.copy(warehouse, kept)
    bad = _slots("model_personalized", "model_personalized")
    bad[1]["propensity"] = 1.5  # outside (0, 1]: the staging and mart expressions refuse it
    _insert(warehouse, [_raw("bad1", "recommendation", "15:00:00", user="u5", items=bad,
                             fields=_counts(2, 0, 0, 0))])
    try:
        with pytest.raises(TransformError) as failed:
            dbt_build(warehouse, work_dir, dbt_vars())
    finally:
        shutil.copy(kept, warehouse)
    assert "expression_is_true_stg_sluice__recommendation_items" in str(failed.value)
    results = json.loads((work_dir / "target" / "run_results.json").read_text())["results"]
    caught = [r for r in results if r["status"] == "fail"]
    # caught by the tests of the incremental build, filtered to the new rows
    assert caught and all(NEW_ROWS.search(r["compiled_code"]) for r in caught)


def test_an_impression_is_its_named_list_and_gives_way_to_the_answer_loaded_later(halves):
    """Before its answer was loaded, the impression of x9 was the list x9 (a ranking, with its
    click); once the answer is loaded, x9 is that answer alone: no ranking of it is left in
    ranking_outcomes, its click is on the answer's slot. ext9 stays one list, the impression
    recorded first, with both clicks."""
    assert halves["after_first"]["x9"] == [("i1", False), ("i2", True)]
    for warehouse in (halves["incremental"], halves["full"]):
        assert query(warehouse, "select ranking_id from marts.ranking_outcomes where "
                                "tenant = 'shop' and ranking_id like 'x9%'") == []
        assert query(warehouse, "select shown_in, item_id, is_clicked from "
                                "intermediate.int_impressions where tenant = 'shop' and "
                                "ranking_id like 'x9%' order by position") == [
            ("recommendation", "i1", False), ("recommendation", "i2", True)]
        assert query(warehouse, "select ranking_id, item_id, is_clicked, "
                                "cast(shown_at as varchar) from marts.ranking_outcomes where "
                                "tenant = 'shop' and ranking_id like 'ext9%' order by 2") == [
            ("ext9", "i1", False, "2026-03-02 15:10:00"),
            ("ext9", "i3", True, "2026-03-02 15:10:00")]
