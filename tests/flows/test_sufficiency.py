"""The transform flow's data-sufficiency rows are JSON: a tenant without unweighted types has
null there, not NaN (which `sluice transform` printed, and no JSON parser reads)."""

from __future__ import annotations

import json

import duckdb


def test_sufficiency_rows_print_nulls_as_json_null(monkeypatch, tmp_path):
    from flows import transform
    from tests.utils.factories import environment

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema marts")
    con.execute("create table marts.data_sufficiency as select * from (values "
                "('default', 5666, null::varchar, true), ('shop', 3, 'view: 2', false)) "
                "as t(tenant, interactions, unweighted_types, is_sufficient)")
    con.close()
    published = []
    monkeypatch.setattr(transform, "create_table_artifact",
                        lambda **kwargs: published.append(kwargs["table"]))
    rows = transform.publish_sufficiency.fn()
    text = json.dumps(rows, allow_nan=False, default=str)  # raises on NaN
    assert json.loads(text)[0] == {"tenant": "default", "interactions": 5666,
                                   "unweighted_types": None, "is_sufficient": True}
    assert rows[1]["unweighted_types"] == "view: 2"
    assert published == [rows]
