"""Flow tasks retry on I/O trouble only; data errors fail at once with their message."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.retries import io_failure


def _flaky(error: Exception, calls: list[int]):
    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=io_failure)
    def step() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return "done"

    @flow
    def run() -> str:
        return step()

    return run


def test_an_io_error_is_retried(prefect_harness):
    calls: list[int] = []
    assert _flaky(OSError("disk blip"), calls)() == "done"
    assert len(calls) == 2


def test_a_data_error_is_not(prefect_harness):
    calls: list[int] = []
    with pytest.raises(RuntimeError, match="not enough data"):
        _flaky(RuntimeError("not enough data"), calls)()
    assert len(calls) == 1
