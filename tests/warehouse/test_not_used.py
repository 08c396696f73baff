"""Ingest says what it loaded but will not use: quarantined rows by reason with the query that
shows them, and interactions whose type has no weight (never trained on), per tenant and type."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.unused import not_used
from tests.utils.factories import environ, environment

CSV = """USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,TENANT
u1,i1,1700000000,click,default
u1,i2,1700000001,view,default
u2,i2,1700000002,view,shop
u2,i3,-5,click,default
u3,i3,yesterday,click,default
"""


def _landing(home):
    landing = home / "landing"
    landing.mkdir(parents=True)
    (landing / "mixed.csv").write_text(CSV)
    return landing


def test_quarantined_rows_by_reason_and_unweighted_types_per_tenant(tmp_path):
    landing = _landing(tmp_path)
    started = datetime.now(UTC)
    report = Ingestor(tmp_path / "w.duckdb", tmp_path / "raw", landing).run()
    assert (report.rows_loaded, report.rows_quarantined) == (3, 2)
    unused = not_used(tmp_path / "w.duckdb", started, {"click": 1.0, "purchase": 4.0})
    [group] = unused["quarantined"]
    assert (group["field"], group["rows"]) == ("TIMESTAMP", 2)
    assert group["source_file"].endswith("mixed.csv") and "TIMESTAMP" in group["example"]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        shown = con.execute(group["read_with"]).fetchall()
    assert sorted(line for line, *_ in shown) == [5, 6]  # CSV lines, header is line 1
    assert [(r["tenant"], r["interaction_type"], r["interactions"])
            for r in unused["unweighted"]] == [("default", "view", 1), ("shop", "view", 1)]
    later = not_used(tmp_path / "w.duckdb", datetime.now(UTC), {"click": 1.0})
    assert later == {"quarantined": [], "unweighted": []}  # only what a run loaded


def test_the_ingest_flow_returns_and_logs_what_was_not_used(tmp_path, prefect_harness):
    env = environment(tmp_path)
    _landing(tmp_path)
    with environ(env):
        from flows.ingest import ingest

        summary = ingest()
    unused = summary.not_used
    assert [(g["field"], g["rows"]) for g in unused["quarantined"]] == [("TIMESTAMP", 2)]
    assert {(r["tenant"], r["interaction_type"]) for r in unused["unweighted"]} == {
        ("default", "view"), ("shop", "view")}
