"""Boolean item fields from a Personalize items CSV filter as JSON-loaded ones do.

Personalize's item schemas declare boolean fields; a CSV cell has no type. A CSV column whose
every value is true or false (in any case) loads as a boolean field, so the shipped template
`personalized_in_stock` (`in_stock is true`) keeps the in-stock items of a CSV catalog. The same
field arriving as a JSON boolean in one batch and as CSV text in another merges (dbt's
int_item_fields_merged, the items mart serving's catalog is trained from) into one comparable
value. Real ingest into a DuckDB file, a real `dbt build`, the filters serving applies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.filters import allowed, parse_conditions, parse_expression
from sluice.settings import load_app_config
from sluice.warehouse.transform import dbt_build
from tests.warehouse.test_dbt import dbt_vars
from tests.warehouse.test_ingest import Env, _by_path

CONFIG = Path(__file__).parents[2] / "config" / "sluice.yaml"


def _in_stock_template() -> list:
    template = load_app_config(CONFIG).templates["personalized_in_stock"]
    return parse_conditions(template.filters)


def _items(env: Env) -> dict[str, dict]:
    return {item: json.loads(fields) for item, fields in env.rows(
        "select item_id, fields from marts.items where tenant = 'default'")}


def _kept(env: Env, rules: list) -> list[str]:
    return sorted(item for item, fields in _items(env).items()
                  if allowed(rules, fields, set()))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Env:
    env = Env(tmp_path_factory.mktemp("booleans"))
    # the first batch: i1 and i2 as native events with JSON booleans
    (env.landing / "a-native.jsonl").write_text("".join(json.dumps(
        {"event": "item", "id": f"n{n}", "timestamp": 1700000000000, "item": f"i{n}",
         "fields": [{"name": "in_stock", "value": stock}]}) + "\n"
        for n, stock in ((1, True), (2, False))))
    # the second: a Personalize items CSV, later, turning i1 out of stock and i2 in
    (env.landing / "b-items.csv").write_text(
        "ITEM_ID,IN_STOCK,ON_SALE,SIZE,CREATION_TIMESTAMP\n"
        "i1,FALSE,true,true,1700000100\n"
        "i2,True,false,large,1700000100\n"
        "i3,true,,small,1700000100\n"
        "i4,false,False,true,1700000100\n")
    report = env.run()
    assert all(f.rows_quarantined == 0 for f in report.files)
    assert _by_path(report)["b-items.csv"].rows_loaded == 4
    dbt_build(env.warehouse, env.root / "dbt", dbt_vars())
    return env


def test_a_csv_column_of_true_and_false_loads_as_booleans(built):
    items = _items(built)
    assert {i: f["in_stock"] for i, f in items.items()} == {
        "i1": False, "i2": True, "i3": True, "i4": False}
    assert {i: f.get("on_sale") for i, f in items.items()} == {
        "i1": True, "i2": False, "i3": None, "i4": False}  # an empty cell: no value


def test_a_column_with_any_other_value_stays_text(built):
    assert {i: f["size"] for i, f in _items(built).items()} == {
        "i1": "true", "i2": "large", "i3": "small", "i4": "true"}


def test_the_shipped_in_stock_template_keeps_the_in_stock_items(built):
    assert _kept(built, _in_stock_template()) == ["i2", "i3"]


def test_a_personalize_filter_on_true_as_text_matches_the_booleans(built):
    """Personalize filters cannot use boolean schema fields: its guide says to declare them as
    strings holding "True" and "False". Such an expression keeps matching."""
    expression = 'INCLUDE ItemID WHERE Items.IN_STOCK IN ("True")'
    assert _kept(built, parse_expression(expression)) == ["i2", "i3"]
    excluded = parse_expression('EXCLUDE ItemID WHERE Items.ON_SALE IN ("True")')
    assert _kept(built, excluded) == ["i2", "i3", "i4"]


def test_true_as_text_from_put_items_filters_as_a_boolean():
    """PutItems sends properties as JSON: a string "True" (Personalize's advice above) meets a
    boolean loaded from a CSV in the same catalog; both answer `is true` alike."""
    rules = _in_stock_template()
    assert [allowed(rules, {"in_stock": v}, set())
            for v in (True, "True", "true", "TRUE", False, "False", "no", None, 1.5)] == [
        True, True, True, True, False, False, False, False, False]
