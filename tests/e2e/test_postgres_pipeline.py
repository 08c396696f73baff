"""The demo pipeline on PostgreSQL yields the same marts and the same champion as on DuckDB.

One synthetic history (one seed, one landing folder that both homes read through
SLUICE_LANDING_URL) goes through the real `pipeline` flow (ingest -> dbt -> train -> report)
twice: in a home on the embedded DuckDB file, and in a home with `warehouse.engine: postgres`
on a throwaway server (tests/conftest.py `postgres_server`). Every mart must hold the same
rows, and each tenant's champion the same metrics, popularity baseline and gate decision.
The whole module takes about 5 minutes (two dbt builds and two trainings on 2 cores).
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pytest

from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.warehouse.engine import DuckDBWarehouse
from sluice.warehouse.postgres import PostgresWarehouse
from tests.utils.factories import environment

pytestmark = pytest.mark.slow


def _pipeline(env: dict[str, str]):
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        from flows.pipeline import pipeline

        return pipeline()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_harness, postgres_server):
    root = tmp_path_factory.mktemp("postgres-pipeline")
    landing = root / "landing"
    generate(landing, SyntheticSpec(users=300, items=120, events=8000, files=2, seed=13))
    shared = {"SLUICE_LANDING_URL": str(landing)}
    duck_env = {**environment(root / "duckdb"), **shared}
    database = postgres_server.database("pipeline")
    pg_env = {**environment(root / "postgres", warehouse={"engine": "postgres"}), **shared,
              "SLUICE_WAREHOUSE_DSN": database.dsn()}
    return {"duckdb": (_pipeline(duck_env), duck_env, DuckDBWarehouse(
                root / "duckdb" / "warehouse.duckdb")),
            "postgres": (_pipeline(pg_env), pg_env, PostgresWarehouse(database.dsn()))}


def _rows(warehouse, relation: str, columns: list[str]) -> list[tuple]:
    rows = warehouse.rows(f"select {', '.join(columns)} from {relation}")
    return sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)


def _plain(value):
    """Numbers compared as numbers (PostgreSQL sums come back as Decimal)."""
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def test_both_pipelines_load_and_build_the_same_and_postgres_holds_the_marts(runs):
    duck, pg = runs["duckdb"][0], runs["postgres"][0]
    assert pg.ingest.rows_loaded == duck.ingest.rows_loaded > 7000
    assert pg.ingest.rows_quarantined == duck.ingest.rows_quarantined == 0
    assert pg.transform.nodes == duck.transform.nodes and pg.transform.passed >= 150
    assert pg.transform.sufficiency == duck.transform.sufficiency
    assert runs["postgres"][2].rows("select count(*) from marts.interactions")[0][0] > 5000
    assert not list(Path(runs["postgres"][1]["SLUICE_HOME"]).glob("*.duckdb*"))  # none made
    assert pg.report and "Sluice analytics" in open(pg.report).read()


def test_every_mart_holds_the_same_rows_on_both_engines(runs):
    duck, pg = runs["duckdb"][2], runs["postgres"][2]
    marts = duck.rows("select table_name from information_schema.tables "
                      "where table_schema = 'marts' order by 1")
    assert len(marts) >= 10
    differing = {}
    for (mart,) in marts:
        # loaded_at (incremental models keep it as their watermark) and row_loaded_at (the
        # later of it and the session's login's) are when each engine's ingest ran: the
        # columns that must differ
        columns = [name for (name,) in duck.rows(
            "select column_name from information_schema.columns where table_schema = 'marts' "
            "and table_name = ? and column_name not in ('loaded_at', 'row_loaded_at') "
            "order by ordinal_position",
            [mart])]
        on_duckdb, on_postgres = (_rows(w, f"marts.{mart}", columns) for w in (duck, pg))
        if on_duckdb != on_postgres:
            differing[mart] = (len(on_duckdb), len(on_postgres))
    assert differing == {}


def _logged(env: dict[str, str], run_id: str) -> dict[str, float]:
    """The run's metrics as MLflow holds them, without the wall times."""
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    metrics = client.get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if "seconds" not in k}


def test_the_same_champion_with_the_same_metrics_on_both_engines(runs):
    (duck, duck_env, _), (pg, pg_env, _) = runs["duckdb"], runs["postgres"]
    assert [r.tenant for r in pg.train] == [r.tenant for r in duck.train] == ["default"]
    for on_duckdb, on_postgres in zip(duck.train, pg.train, strict=True):
        assert on_postgres.promoted and on_duckdb.promoted
        assert on_postgres.reason == on_duckdb.reason
        assert on_postgres.stats == on_duckdb.stats
        assert on_postgres.metrics == on_duckdb.metrics
        assert on_postgres.baseline == on_duckdb.baseline
        logged_duckdb = _logged(duck_env, on_duckdb.run_id)
        logged_postgres = _logged(pg_env, on_postgres.run_id)
        assert logged_postgres.keys() == logged_duckdb.keys()
        assert len(logged_postgres) > 30 and math.isfinite(logged_postgres["ndcg_at_10"])
        # the same numbers; a standard error may differ in its last bit (numpy sums the same
        # values in the order the engine returned the users)
        assert logged_postgres == pytest.approx(logged_duckdb, rel=1e-12, abs=0)
        gated = {k: v for k, v in logged_postgres.items() if not k.startswith("attributes.")}
        assert gated == {k: logged_duckdb[k] for k in gated}  # the model's own: bit for bit
