"""Per-tenant training fans out on Prefect's Dask task runner (a local cluster of processes)."""

from __future__ import annotations

from sluice.learn import registry
from tests.utils.factories import environ, environment
from tests.utils.marts import taste_history, write_marts


def test_two_tenants_train_on_a_local_dask_cluster(tmp_path, prefect_harness):
    env = environment(tmp_path)
    write_marts(tmp_path / "warehouse.duckdb", taste_history(seed=1), tenant="shop")
    write_marts(tmp_path / "warehouse.duckdb", taste_history(seed=2), tenant="books")
    with environ(env):  # the worker processes inherit these
        from flows.train import with_task_runner

        results = with_task_runner(workers=2)()
    assert sorted(r.tenant for r in results) == ["books", "shop"]
    client = registry.client(env["MLFLOW_TRACKING_URI"])
    for tenant in ("books", "shop"):
        champion = client.get_model_version_by_alias(f"sluice-{tenant}", "champion")
        assert champion.tags["validation_status"] == "passed"
