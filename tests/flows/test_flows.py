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
