"""The report of one tenant counts that tenant's events, slots and clicks, not every tenant's:
its numbers against the marts they come from, in a real DuckDB file."""

from __future__ import annotations

from sluice.analytics.report import click_through, events_per_day, slot_sources, write_report
from sluice.warehouse.db import connect


def _warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    for n, (tenant, kind) in enumerate([("shop", "click")] * 3 + [("news", "click")] * 50):
        con.execute("insert into raw.events (event_id, tenant, event_type, event_at, "
                    "interaction_type, source_file, loaded_at) values (?, ?, 'interaction', "
                    "timestamp '2026-11-01 10:00:00', ?, 'f', now())", [f"e{n}", tenant, kind])
    con.execute("create schema marts")
    con.execute("create table marts.recommendation_performance (tenant varchar, served_date "
                "date, recommendation_source varchar, slots_served bigint, clicks bigint)")
    con.execute("insert into marts.recommendation_performance values "
                "('shop', date '2026-11-01', 'model_personalized', 40, 4), "
                "('news', date '2026-11-01', 'model_personalized', 1000, 500)")
    con.execute("create table marts.ranking_outcomes (tenant varchar, position integer, "
                "is_clicked boolean)")
    con.execute("insert into marts.ranking_outcomes values ('shop', 1, false), "
                "('news', 1, true), ('news', 1, true)")
    con.close()
    return path


def test_one_tenants_report_counts_only_its_own_slots_and_clicks(tmp_path):
    warehouse = _warehouse(tmp_path)
    assert slot_sources(warehouse, "shop").note.startswith("40 slots served")
    assert slot_sources(warehouse).note.startswith("1,040 slots served")
    shop = click_through(warehouse, "shop").svg or ""
    assert "4/40" in shop and "500/1000" not in shop
    events = events_per_day(warehouse, "shop").svg or ""
    assert events and events != (events_per_day(warehouse).svg or "")
    page = write_report(warehouse, f"sqlite:///{tmp_path / 'mlflow.db'}", "sluice-shop",
                        tmp_path / "index.html", tenant="shop").read_text()
    assert "40 slots served" in page and "1,040 slots served" not in page
