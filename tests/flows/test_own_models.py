"""A data engineer's own model, in a folder of its own downstream of a mart: the transform flow
(real Prefect, real dbt) builds it and keeps it right through incremental refreshes, the
project's sqlfluff config lints it, and a failing test of theirs fails the flow run in one line
that names the test, its model and the next step."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from sluice.settings import PROJECT_ROOT
from sluice.warehouse.db import connect
from sluice.warehouse.transform import DBT_PROJECT_DIR
from tests.utils.factories import environment

# it writes into the repository's dbt project, which every other test's dbt build reads:
# `make test` runs it alone, after the others (they run in parallel)
pytestmark = pytest.mark.serial

FOLDER = DBT_PROJECT_DIR / "models" / "zz_own_test_models"  # removed after the module
MODEL = """{{ config(materialized='table') }}

with

interactions as (

    select * from {{ ref('interactions') }}

),

per_item as (

    select
        tenant,
        item_id,
        count(*) as interactions,
        sum(weight) as weight
    from interactions
    group by tenant, item_id

)

select * from per_item
"""
# an incremental model of one's own downstream of a mart: it reads what changed since its
# last build by `row_loaded_at`, which a restitched row carries (by `loaded_at` it would not)
INCREMENTAL = """{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key=['tenant', 'event_id'],
) }}

with

interactions as (

    select * from {{ ref('interactions') }} as interactions
    {% if is_incremental() -%}
        where interactions.row_loaded_at > (
            select max(kept.row_loaded_at) from {{ this }} as kept
        )
    {%- endif %}

)

select
    tenant,
    event_id,
    user_id,
    item_id,
    row_loaded_at
from interactions
"""
TESTS = """version: 2

models:
  - name: own_item_totals
    description: Interactions and weight per item (a data engineer's model).
    data_tests:
      - expression_is_true:
          arguments:
            expression: weight < {limit}
"""


@pytest.fixture(scope="module")
def own_model() -> Iterator[Path]:
    assert not FOLDER.exists(), f"{FOLDER} is left from an earlier run: remove it"
    FOLDER.mkdir()
    try:
        (FOLDER / "own_item_totals.sql").write_text(MODEL)
        (FOLDER / "own_item_totals.yml").write_text(TESTS.format(limit=100))
        (FOLDER / "own_user_items.sql").write_text(INCREMENTAL)
        yield FOLDER
    finally:
        shutil.rmtree(FOLDER)


def _load(warehouse: Path, rows: list[tuple[str, str | None, str, str]],
          session: str | None = None) -> None:
    """(event id, user, item, interaction type) into raw.events, loaded now."""
    con = connect(warehouse)
    con.executemany(
        "insert into raw.events (event_id, tenant, event_type, event_at, user_id, session_id, "
        "item_id, interaction_type, source_file, loaded_at) values (?, 'default', "
        "'interaction', timestamp '2026-03-02 10:00:00', ?, ?, ?, ?, 'hand-made', now())",
        [(event, user, session, item, kind) for event, user, item, kind in rows])
    con.close()


def _rows(warehouse: Path, relation: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(f"select event_id, user_id, item_id, row_loaded_at from {relation} "
                           "order by 1").fetchall()


def _totals(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select item_id, interactions, weight from main.own_item_totals "
                           "order by 1").fetchall()


def test_the_project_sqlfluff_config_lints_an_own_model(own_model):
    sqlfluff = Path(PROJECT_ROOT / ".venv" / "bin" / "sqlfluff")
    exe = str(sqlfluff) if sqlfluff.exists() else "sqlfluff"
    clean = subprocess.run([exe, "lint", str(own_model / "own_item_totals.sql")],
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    shouting = own_model / "own_shouting.sql"
    shouting.write_text(MODEL.replace("select * from per_item", "SELECT * from per_item"))
    try:
        found = subprocess.run([exe, "lint", str(shouting)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=300)
    finally:
        shouting.unlink()
    assert found.returncode == 1 and "CP01" in found.stdout  # the project's lower-case rule


def test_the_transform_flow_builds_it_and_refreshes_keep_it_right(
        own_model, tmp_path, monkeypatch, prefect_harness):
    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    _load(warehouse, [("e1", "u1", "i1", "click"), ("e2", "u2", "i1", "purchase")])
    from flows.transform import transform

    transform()
    assert _totals(warehouse) == [("i1", 2, 5.0)]  # click 1 + purchase 4
    _load(warehouse, [("e3", "u3", "i1", "add_to_cart"), ("e4", "u1", "i2", "click")])
    transform()  # incremental: marts.interactions takes the new rows, the table follows
    assert _totals(warehouse) == [("i1", 3, 7.0), ("i2", 1, 1.0)]
    transform(full_refresh=True)
    assert _totals(warehouse) == [("i1", 3, 7.0), ("i2", 1, 1.0)]


def test_an_own_incremental_model_follows_a_restitched_session_by_row_loaded_at(
        own_model, tmp_path, monkeypatch, prefect_harness):
    """An anonymous session's clicks, then a login in it: the mart moves the clicks to the
    user in place (their `loaded_at` stays), and the data engineer's incremental model, reading
    by `row_loaded_at`, moves them too, as a full refresh does."""
    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    _load(warehouse, [("e1", None, "i1", "click"), ("e2", None, "i2", "click")], session="s1")
    from flows.transform import transform

    transform()
    first = _rows(warehouse, "main.own_user_items")
    assert [(e, u) for e, u, _, _ in first] == [("e1", "session:s1"), ("e2", "session:s1")]
    _load(warehouse, [("e3", "u7", "i3", "click")], session="s1")  # the session logs in
    transform()  # incremental
    mart = _rows(warehouse, "marts.interactions")
    assert [(e, u) for e, u, _, _ in mart] == [("e1", "u7"), ("e2", "u7"), ("e3", "u7")]
    assert _rows(warehouse, "main.own_user_items") == mart
    with duckdb.connect(str(warehouse), read_only=True) as con:
        loaded = dict(con.execute("select event_id, loaded_at from marts.interactions")
                      .fetchall())
    # by loaded_at, the restitched rows were not new: a model filtering on it kept them anonymous
    assert max(loaded["e1"], loaded["e2"]) <= max(r[3] for r in first) < loaded["e3"]
    transform(full_refresh=True)
    assert _rows(warehouse, "main.own_user_items") == mart == _rows(
        warehouse, "marts.interactions")


def test_a_failing_own_test_fails_the_run_in_one_line_naming_it_and_what_next(
        own_model, tmp_path, monkeypatch, prefect_harness):
    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    _load(warehouse, [("e1", "u1", "i1", "click"), ("e2", "u2", "i1", "purchase")])
    (own_model / "own_item_totals.yml").write_text(TESTS.format(limit=3))  # i1 weighs 5
    from flows.transform import transform

    try:
        state = transform(return_state=True)
    finally:
        (own_model / "own_item_totals.yml").write_text(TESTS.format(limit=100))
    assert state.is_failed()
    message = state.message
    assert "\n" not in message, message
    test = "expression_is_true_own_item_totals_weight_3"
    assert f"test {test} (on own_item_totals): Got 1 result" in message, message
    assert f"`sluice dbt -- show --select {test}` shows" in message  # its failing rows
    assert "`sluice dbt -- build --select own_item_totals` re-runs it" in message
    assert str(tmp_path / "dbt" / "logs" / "dbt.log") in message
