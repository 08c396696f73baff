"""The dbt project built for real (`transform.dbt_build`) on a small hand-made raw.events."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import duckdb
import pytest
import yaml

from sluice.warehouse import docs_site
from sluice.warehouse.db import connect
from sluice.warehouse.transform import DBT_PROJECT_DIR, TransformError, dbt_build
from tests.utils.browser import browser, visit

DAY = "2026-03-02"
WEIGHTS = {"click": 1.5, "purchase": 5.0}  # add_to_cart and view are not trained on
ITEM_FIELDS = {"category": "varchar", "brand": "varchar", "color": "varchar", "price": "double"}


def dbt_vars(threshold: float | None = None, min_interactions: int = 2,
             min_users: int = 1) -> dict:
    return {
        "events": {"weights": WEIGHTS, "event_value_threshold": threshold,
                   "anonymous_user_prefix": "anon:", "item_fields": ITEM_FIELDS},
        "sufficiency": {"min_interactions": min_interactions,
                        "min_users_with_two_interactions": min_users},
    }


def _raw(event_id: str, event_type: str, at: str, tenant: str = "shop", user=None,
         session=None, item=None, kind=None, ranking=None, value=None, fields=None,
         items=None) -> tuple:
    return (event_id, tenant, event_type, f"{DAY} {at}", user, session, item, kind, ranking,
            value, None if fields is None else json.dumps(fields),
            None if items is None else json.dumps(items), "hand-made", f"{DAY} 23:00:00")


def _slots(*sources: str) -> list[dict]:
    return [{"id": f"i{n}", "score": 1 - n / 10, "position": n, "source": source}
            for n, source in enumerate(sources, 1)]


def _counts(personalized: int, non_personalized: int, fallback_tier: int, random: int) -> dict:
    return {"template": "personalized", "model_version": "3",
            "personalized_count": personalized, "model_personalized_count": personalized,
            "non_personalized_count": non_personalized + fallback_tier,
            "model_non_personalized_count": non_personalized,
            "model_fallback_count": fallback_tier, "fallback_count": random,
            "total": personalized + non_personalized + fallback_tier + random}


RAW = [
    # the catalog; i1's price is updated later
    _raw("it1", "item", "08:00:00", item="i1", fields={"category": "books", "price": 12.5}),
    _raw("it1b", "item", "09:00:00", item="i1", fields={"price": 9.0}),
    _raw("it2", "item", "08:00:00", item="i2", fields={"category": "games", "color": "red"}),
    _raw("it3", "item", "08:00:00", item="i3", fields={"brand": "acme"}),
    _raw("us1", "user", "08:00:00", user="u1", fields={"country": "de"}),
    # session s1 browses anonymously, logs in as u1, then goes on without the user id
    _raw("r1", "ranking", "09:59:00", session="s1",
         items=[{"id": "i1"}, {"id": "i2", "label": 1}, {"id": "i3"}]),
    _raw("e1", "interaction", "10:00:00", session="s1", item="i1", kind="click"),
    _raw("e2", "interaction", "10:05:00", user="u1", session="s1", item="i2", kind="click",
         ranking="r1"),
    _raw("e3", "interaction", "10:10:00", session="s1", item="i3", kind="purchase",
         value=30.0),
    # an anonymous visitor who never logs in
    _raw("e4", "interaction", "11:00:00", session="s9", item="i1", kind="click", value=3.0),
    # u2: a low value, a type without weight, an unknown type
    _raw("e5", "interaction", "12:00:00", user="u2", item="i1", kind="click", value=1.0),
    _raw("e6", "interaction", "12:01:00", user="u2", item="i2", kind="add_to_cart",
         value=5.0),
    _raw("e7", "interaction", "12:02:00", user="u2", item="i3", kind="zoom", value=5.0),
    _raw("e8", "interaction", "12:03:00", user="u2", item="i2", kind="purchase", value=2.0),
    # served answers: q1 to u1, q2 to the anonymous s9, q3 to s1 (stitched to u1)
    _raw("q1", "recommendation", "13:00:00", user="u1",
         items=_slots("model_personalized", "model_personalized", "model_fallback",
                      "fallback"), fields=_counts(2, 0, 1, 1)),
    _raw("q2", "recommendation", "13:00:00", session="s9",
         items=_slots("model_non_personalized", "model_non_personalized"),
         fields=_counts(0, 2, 0, 0)),
    _raw("q3", "recommendation", "13:30:00", session="s1",
         items=_slots("model_personalized"), fields=_counts(1, 0, 0, 0)),
    _raw("e9", "interaction", "13:01:00", user="u1", item="i1", kind="click", ranking="q1"),
    _raw("e10", "interaction", "13:02:00", user="u1", item="i4", kind="purchase",
         ranking="q1", value=20.0),
    _raw("e11", "interaction", "13:03:00", session="s9", item="i2", kind="click",
         ranking="q2", value=4.0),
    # the same event ids and session id in another tenant: nothing is shared
    _raw("e1", "interaction", "10:00:00", tenant="other", session="s1", item="i1",
         kind="click", value=2.5),
    _raw("e2", "interaction", "10:01:00", tenant="other", session="s1", item="i2",
         kind="click", value=2.5),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dbt")
    warehouse = root / "warehouse.duckdb"
    con = connect(warehouse)
    con.executemany(f"insert into raw.events values ({', '.join('?' * 14)})", RAW)
    con.close()
    result = dbt_build(warehouse, root / "dbt", dbt_vars())
    return {"root": root, "warehouse": warehouse, "result": result}


def query(built: dict, sql: str) -> list[tuple]:
    with duckdb.connect(str(built["warehouse"]), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_build_passes_every_model_unit_test_and_data_test(built):
    nodes = built["result"].nodes
    assert built["result"].ok and not built["result"].failures
    kinds = {n["node"].split(".")[0] for n in nodes}
    assert kinds == {"model", "test", "unit_test", "operation"}  # operation: on-run-start
    assert all(n["status"] in ("success", "pass") for n in nodes)


def test_session_events_before_and_after_login_belong_to_the_user(built):
    rows = query(built, "select event_id, user_id, is_stitched, is_anonymous "
                        "from intermediate.int_interactions_stitched "
                        "where tenant = 'shop' and session_id in ('s1', 's9') order by 1")
    assert rows == [("e1", "u1", True, False), ("e11", "anon:s9", False, True),
                    ("e2", "u1", False, False), ("e3", "u1", True, False),
                    ("e4", "anon:s9", False, True)]
    assert query(built, "select user_id from marts.recommendation_events "
                        "where tenant = 'shop' order by recommendation_id") == [
        ("u1",), ("anon:s9",), ("u1",)]
    assert query(built, "select position, user_id, is_clicked from marts.ranking_outcomes "
                        "order by position") == [(1, "u1", False), (2, "u1", True),
                                                 (3, "u1", False)]


def test_tenants_keep_their_own_ids_and_sessions(built):
    rows = query(built, "select tenant, event_id, user_id, weight from marts.interactions "
                        "where event_id in ('e1', 'e2') order by 1, 2")
    assert rows == [("other", "e1", "anon:s1", 1.5), ("other", "e2", "anon:s1", 1.5),
                    ("shop", "e1", "u1", 1.5), ("shop", "e2", "u1", 1.5)]
    assert query(built, "select tenant, count(*) from marts.users group by 1 order by 1") == [
        ("other", 1), ("shop", 3)]  # u1, u2 and the anonymous s9


def test_only_weighted_types_are_trained_on_with_their_weight(built):
    rows = query(built, "select event_id, interaction_type, weight from marts.interactions "
                        "where tenant = 'shop' and user_id = 'u2' order by 1")
    assert rows == [("e5", "click", 1.5), ("e8", "purchase", 5.0)]  # add_to_cart, zoom: out
    assert query(built, "select count(*) from marts.interactions where tenant = 'shop'") == [
        (9,)]


def test_items_merge_partial_updates_into_typed_columns(built):
    rows = query(built, "select item_id, category, color, price, fields from marts.items "
                        "where tenant = 'shop' order by 1")
    assert rows[0] == ("i1", "books", None, 9.0, '{"category":"books","price":9.0}')
    assert rows[1][:3] == ("i2", "games", "red")


def test_recommendation_events_and_performance(built):
    assert query(built, "select recommendation_id, total, personalized_count, "
                        "non_personalized_count, fallback_count "
                        "from marts.recommendation_events order by 1") == [
        ("q1", 4, 2, 1, 1), ("q2", 2, 0, 2, 0), ("q3", 1, 1, 0, 0)]
    rows = query(built, "select recommendation_source, cast(served_date as varchar), "
                        "slots_served, clicks, purchases, click_through_rate "
                        "from marts.recommendation_performance order by 1")
    assert rows == [
        ("fallback", DAY, 1, 0, 1, 0.0),  # q1 slot 4 (i4) bought
        ("model_fallback", DAY, 1, 0, 0, 0.0),
        ("model_non_personalized", DAY, 2, 1, 0, 0.5),  # q2 slot 2 (i2) clicked
        ("model_personalized", DAY, 3, 1, 0, pytest.approx(1 / 3)),  # q1 slot 1 clicked
    ]


def test_data_sufficiency_counts_per_tenant(built):
    assert query(built, "select tenant, interactions, users_with_two_interactions, "
                        "is_sufficient from marts.data_sufficiency order by 1") == [
        ("other", 2, 1, True), ("shop", 9, 3, True)]


def test_data_sufficiency_counts_interactions_no_weight_trains_on(built):
    assert query(built, "select tenant, unweighted_interactions, unweighted_types "
                        "from marts.data_sufficiency order by 1") == [
        ("other", 0, None), ("shop", 2, "add_to_cart: 1, zoom: 1")]


def test_event_value_threshold_var_drops_low_and_missing_values(built, tmp_path):
    copy = {"warehouse": tmp_path / "warehouse.duckdb"}  # the other tests keep no threshold
    shutil.copy(built["warehouse"], copy["warehouse"])
    dbt_build(copy["warehouse"], built["root"] / "dbt", dbt_vars(threshold=2.5),
              select="interactions")
    rows = query(copy, "select tenant, event_id, event_value from marts.interactions "
                       "order by 1, 2")
    # e5 (1.0) and e8 (2.0) are below it; e1, e2 and e9 (shop) have no value at all
    assert rows == [("other", "e1", 2.5), ("other", "e2", 2.5), ("shop", "e10", 20.0),
                    ("shop", "e11", 4.0), ("shop", "e3", 30.0), ("shop", "e4", 3.0)]


def test_unit_tests_pass_whatever_types_the_config_weighs(built, tmp_path):
    # a deployment weighing only its own types (MovieLens: `rating`) must still build
    copy = {"warehouse": tmp_path / "warehouse.duckdb"}
    shutil.copy(built["warehouse"], copy["warehouse"])
    found = dbt_vars()
    found["events"]["weights"] = {"zoom": 1.0}
    result = dbt_build(copy["warehouse"], tmp_path / "dbt", found, select="data_sufficiency")
    assert result.ok and any(n["node"].startswith("unit_test.") for n in result.nodes)
    assert query(copy, "select tenant, unweighted_types from marts.data_sufficiency "
                       "order by 1") == [("other", "click: 2"),
                                         ("shop", "add_to_cart: 1, click: 6, purchase: 3")]


def test_insufficient_data_warns_saying_how_much_is_missing_and_builds_on(built, tmp_path):
    copy = {"warehouse": tmp_path / "warehouse.duckdb"}  # the other tests keep the minimums low
    shutil.copy(built["warehouse"], copy["warehouse"])
    result = dbt_build(copy["warehouse"], tmp_path / "dbt",
                       dbt_vars(min_interactions=50, min_users=4), select="data_sufficiency+")
    assert result.ok
    assert result.shortfalls == [
        "tenant other needs 48 more interactions (has 2 of 50) and 3 more users with two "
        "interactions (has 1 of 4)",
        "tenant shop needs 41 more interactions (has 9 of 50) and 1 more users with two "
        "interactions (has 3 of 4)"]
    (test,) = [n for n in result.nodes if "assert_tenants_have_sufficient_data" in n["node"]]
    assert test["status"] == "warn"
    assert query(copy, "select tenant, missing_interactions from marts.data_sufficiency "
                       "order by 1") == [("other", 48), ("shop", 41)]


def test_an_unknown_recommendation_source_fails_its_accepted_values_test(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    con = connect(warehouse)
    con.execute(f"insert into raw.events values ({', '.join('?' * 14)})",
                _raw("q9", "recommendation", "13:00:00", user="u1",
                     items=_slots("model_personalized", "hunch"), fields=_counts(1, 0, 0, 1)))
    con.close()
    with pytest.raises(TransformError, match="accepted_values_stg_sluice__recommendation_items"
                       ) as failure:
        dbt_build(warehouse, tmp_path / "dbt", dbt_vars(),
                  select="stg_sluice__recommendations stg_sluice__recommendation_items")
    # one line: the test, its model, the commands that show its rows and rebuild the model
    message = str(failure.value)
    assert "\n" not in message and " | " not in message
    assert "test accepted_values_stg_sluice__recommendation_items_recommendation_" in message
    assert "(on stg_sluice__recommendation_items): Got 1 result" in message
    assert "`sluice dbt -- show --select accepted_values_stg_sluice__recommendation" in message
    assert "`sluice dbt -- build --select stg_sluice__recommendation_items` re-runs it" in message


def test_docs_generate_works_offline(built):
    dbt_build(built["warehouse"], built["root"] / "dbt", dbt_vars(), command="docs generate")
    target = built["root"] / "dbt" / "target"
    catalog = json.loads((target / "catalog.json").read_text())
    assert "model.sluice.interactions" in catalog["nodes"]
    assert (target / "index.html").stat().st_size > 10_000
    assert "${require(" not in (target / "index.html").read_text()  # fixed by the flow's run
    if browser() is None:
        return
    # the docs site as `sluice dbt -- docs serve` serves it: it reads manifest and catalog
    # from its folder, asks nothing of another host, and every request it makes is answered
    # (dbt-docs' own page asks for templated icon URLs and a favicon that 404: fixed here)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(target))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as site:
        threading.Thread(target=site.serve_forever, daemon=True).start()
        try:
            seen = visit(f"http://127.0.0.1:{site.server_address[1]}/index.html")
        finally:
            site.shutdown()
    assert seen.outside() == [], seen.outside()
    assert seen.failed == [], seen.failed
    assert seen.errors == [], seen.errors
    assert any(url.split("?")[0].endswith("/catalog.json") for url in seen.requests)
    assert "interactions" in seen.dom
    assert 'href="#icn-' in seen.dom  # the menu's icons, drawn from the page's own sprite


# DuckDB spellings with no equivalent elsewhere: they belong in macros/cross_db/ (dispatched)
DUCKDB_ONLY = re.compile(
    r"json_\w+\s*\(|\bunnest\b|\blist_\w+|\bstrftime\b|\bepoch_ms\b|\btry_cast\b|::|"
    r"\bstruct_\w+|\bstring_agg\b|\bregexp_\w+|\bqualify\b|\bexclude\s*\(|\bilike\b|"
    r"\bas\s+(varchar|double|text)\b|\bconcat_ws\b|\barg_(max|min)\b|\bcount_if\b|->",
    re.IGNORECASE)
# dbt renders a contract's data_type without the project's macros (only var, env_var, target),
# so each must be spelled one way for every target: these mean the same on DuckDB and
# PostgreSQL (`double` is not a PostgreSQL type)
PORTABLE_TYPES = {"bigint", "boolean", "date", "double precision", "integer", "timestamp",
                  "varchar"}


def test_models_use_no_duckdb_only_sql_outside_dispatching_macros():
    files = [p for p in DBT_PROJECT_DIR.glob("**/*.sql")
             if not p.is_relative_to(DBT_PROJECT_DIR / "macros" / "cross_db")
             and "target" not in p.parts]
    assert len(files) > 20
    found = {str(p.relative_to(DBT_PROJECT_DIR)): DUCKDB_ONLY.findall(_sql_only(p))
             for p in files}
    assert {path: hits for path, hits in found.items() if hits} == {}
    for path in (DBT_PROJECT_DIR / "macros" / "cross_db").glob("*.sql"):
        text = path.read_text()
        assert "adapter.dispatch(" in text and "default__" in text, path


def test_contract_data_types_are_spelled_the_same_on_every_target():
    types = {}
    for path in (DBT_PROJECT_DIR / "models").glob("**/*.yml"):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            for column in model.get("columns", []):
                if "data_type" in column:
                    types[f"{model['name']}.{column['name']}"] = column["data_type"]
    assert len(types) > 50
    assert {name: kind for name, kind in types.items() if kind not in PORTABLE_TYPES} == {}


def _sql_only(path: Path) -> str:
    """The file without comments, where prose may name anything, and without Jinja tags and
    expressions, where the dispatching macros are called."""
    text = re.sub(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", "", path.read_text(), flags=re.DOTALL)
    return re.sub(r"--[^\n]*", "", text)


def _explored_answer(explored_propensity: float) -> tuple:
    items = [{"id": "i1", "score": 0.9, "position": 1, "source": "model_personalized",
              "propensity": 0.8},
             {"id": "i7", "score": 0.4, "position": 2, "source": "model_personalized",
              "propensity": explored_propensity, "explored": True},
             {"id": "i3", "score": 0.1, "position": 3, "source": "model_fallback",
              "propensity": 1.0}]
    fields = {**_counts(2, 0, 1, 0), "exploration_share": 0.2, "exploration_pool": 4}
    return _raw("q7", "recommendation", "13:00:00", user="u1", items=items, fields=fields)


def _build_propensities(tmp_path: Path, raw: list[tuple]):
    # the mart, what it reads and only the tests of those (not of marts off this path)
    os.environ["DBT_INDIRECT_SELECTION"] = "cautious"
    warehouse = tmp_path / "warehouse.duckdb"
    con = connect(warehouse)
    con.executemany(f"insert into raw.events values ({', '.join('?' * 14)})", raw)
    con.close()
    try:
        dbt_build(warehouse, tmp_path / "dbt", dbt_vars(), select="+slot_propensities")
    finally:
        del os.environ["DBT_INDIRECT_SELECTION"]
    return warehouse


def test_propensities_reach_the_slot_propensities_mart(tmp_path):
    click = _raw("c7", "interaction", "13:01:00", user="u1", item="i7", kind="click",
                 ranking="q7")
    warehouse = _build_propensities(tmp_path, [_explored_answer(0.05), click])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select position, propensity, explored, exploration_pool, is_clicked "
                           "from marts.slot_propensities order by position").fetchall()
    assert rows == [(1, 0.8, False, 4, False), (2, 0.05, True, 4, True),
                    (3, 1.0, False, 4, False)]


def test_propensities_that_do_not_sum_to_one_per_position_fail_the_build(tmp_path):
    # share 0.2 over a pool of 4: an explored slot has 0.05; 0.1 would make 1.2 at position 2
    with pytest.raises(TransformError, match="slot_propensities"):
        _build_propensities(tmp_path, [_explored_answer(0.1)])


@pytest.mark.parametrize("made_by", [None, "dbt"])
def test_a_warehouse_ingest_never_wrote_says_to_ingest_first(tmp_path, made_by):
    """No file yet, or one dbt made without raw.*: one line naming the command, not a
    catalog error per source test."""
    warehouse = tmp_path / "warehouse.duckdb"
    if made_by:
        duckdb.connect(str(warehouse)).close()
    with pytest.raises(TransformError) as failure:
        dbt_build(warehouse, tmp_path / "dbt", dbt_vars())
    message = str(failure.value)
    assert "has no raw.events yet; run `sluice ingest` first" in message
    assert "\n" not in message and "Catalog Error" not in message


def test_the_docs_page_references_no_asset_a_browser_cannot_load(tmp_path):
    """Without a browser too: dbt-docs' page, as `docs generate` copies it, has its templated
    icon links and its unsubstituted favicon put right (what the browser test saw 404)."""
    from dbt.task.docs import DOCS_INDEX_FILE_PATH

    shutil.copyfile(DOCS_INDEX_FILE_PATH, tmp_path / "index.html")
    assert docs_site.fix_pages(tmp_path) == [tmp_path / "index.html"]
    html = (tmp_path / "index.html").read_text()
    assert re.findall(r'(?<![\w-])(?:xlink:)?href="\{\{', html) == []  # not ng-href
    assert "${require(" not in html
    assert html.count('ng-attr-href="{{ getIcon(') == 4


def test_docs_serve_without_generated_docs_or_with_an_unknown_option_says_what_to_do(tmp_path):
    from sluice.errors import OperatorError

    with pytest.raises(OperatorError, match=r"no docs in .* yet: run `sluice dbt -- docs "
                                            r"generate` first"):
        docs_site.serve(tmp_path, ["--no-browser"], say=print)
    with pytest.raises(OperatorError, match="--profile x not understood: it takes --host"):
        docs_site.serve(tmp_path, ["--profile", "x"], say=print)
