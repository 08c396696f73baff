"""The flows alike: typed results, the shared tenant list, the warehouse lock and I/O retries."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from flows.retries import RETRY_DELAYS, io_failure
from sluice.learn.tuning import TuneResult
from tests.utils.factories import environment
from tests.utils.marts import taste_history, write_marts

TUNE = {"trials": 2, "grid": {"als": {"factors": [4, 8], "alpha": [2.0]}}}


def _lock_is_held(warehouse: Path) -> bool:
    """Whether some open file (the flow's, here) holds the warehouse lock right now."""
    fd = os.open(f"{warehouse}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_tune_searches_under_the_warehouse_lock_and_returns_a_typed_result(
        tmp_path, monkeypatch, prefect_harness):
    for key, value in environment(tmp_path, tune=TUNE).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    write_marts(warehouse, taste_history(), "tuned")
    import flows.tune

    held: list[bool] = []
    real = flows.tune.tune_tenant

    def checking(*args, **kwargs):
        held.append(_lock_is_held(warehouse))
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.tune, "tune_tenant", checking)
    (result,) = flows.tune.tune()  # no tenant named: the shared list finds "tuned"
    assert held == [True]
    assert not _lock_is_held(warehouse)
    assert isinstance(result, TuneResult)
    assert result.best.tenant == "tuned" and len(result.trials) == 2
    assert result.best.params["factors"] in (4, 8)


def test_tune_skips_a_tenant_short_of_data_and_tunes_the_others(
        tmp_path, monkeypatch, prefect_harness):
    """"a-new" sorts first and has a handful of events: it is skipped, "tuned" is tuned."""
    for key, value in environment(tmp_path, tune=TUNE).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    write_marts(warehouse, taste_history(users=3, per_user=2), "a-new")
    write_marts(warehouse, taste_history(), "tuned")
    import flows.tune
    from sluice.learn.training import InsufficientDataError

    (result,) = flows.tune.tune()
    assert result.best.tenant == "tuned" and len(result.trials) == 2
    with pytest.raises(InsufficientDataError, match="tenant 'a-new': not enough data"):
        flows.tune.tune(tenant="a-new")  # nothing could be tuned: that fails, saying why


def test_train_and_tune_list_tenants_and_retry_alike():
    from flows import tenants, train, tune

    assert train.chosen_tenants is tune.chosen_tenants is tenants.chosen_tenants
    for task in (tenants.list_tenants, train.train_one, tune.tune_one):
        assert task.retries == len(RETRY_DELAYS), task.name
        assert task.retry_delay_seconds == RETRY_DELAYS, task.name
        assert task.retry_condition_fn is io_failure, task.name


def test_a_named_tenant_is_not_looked_up(monkeypatch):
    from flows import tenants

    def fail() -> list[str]:
        raise AssertionError("the tenant list was read although a tenant was named")

    monkeypatch.setattr(tenants, "list_tenants", fail)
    assert tenants.chosen_tenants("shop") == ["shop"]
    monkeypatch.setattr(tenants, "list_tenants", lambda: [])
    with pytest.raises(RuntimeError, match="sluice ingest"):
        tenants.chosen_tenants(None)


def _broken(warehouse: Path, tenant: str) -> None:
    """Marts the model cannot fit (an infinite weight): an error that is not too little data."""
    import duckdb

    with duckdb.connect(str(warehouse)) as con:
        con.execute("update marts.interactions set weight = 'inf'::double "
                    "where tenant = ? and user_id = 'u3'", [tenant])


def test_a_tenant_failing_in_training_fails_the_run_after_the_others_registered(
        tmp_path, monkeypatch, prefect_harness):
    """"a-broken" sorts first and cannot be fitted; "b-short" is skipped; "c-shop" is still
    trained and registered, then the run fails naming "a-broken" and the reason in one line."""
    from sluice.learn import registry

    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    write_marts(warehouse, taste_history(seed=1), "a-broken")
    write_marts(warehouse, taste_history(users=3, per_user=2), "b-short")
    write_marts(warehouse, taste_history(seed=2), "c-shop")
    _broken(warehouse, "a-broken")
    import flows.train
    from flows.tenants import TenantsFailed

    with pytest.raises(TenantsFailed) as failure:
        flows.train.train()
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("tenant 'a-broken': ModelFitError: NaN encountered in factors")
    assert "trained and registered: c-shop" in message and "b-short" not in message
    client = registry.client(os.environ["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("sluice-c-shop", "champion").version) == "1"
    assert not client.search_registered_models("name = 'sluice-a-broken'")


def test_a_tenant_failing_in_tuning_fails_the_run_after_the_others_were_tuned(
        tmp_path, monkeypatch, prefect_harness):
    for key, value in environment(tmp_path, tune=TUNE).items():
        monkeypatch.setenv(key, value)
    warehouse = tmp_path / "warehouse.duckdb"
    write_marts(warehouse, taste_history(seed=1), "a-broken")
    write_marts(warehouse, taste_history(seed=2), "c-shop")
    _broken(warehouse, "a-broken")
    import flows.tune
    from flows.tenants import TenantsFailed

    with pytest.raises(TenantsFailed, match=r"^tenant 'a-broken': .*\(tuned and registered: "
                                            r"c-shop\)$"):
        flows.tune.tune()
