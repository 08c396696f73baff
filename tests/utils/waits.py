"""Waiting for background work (a log follower, the answer logger, a model poller) by polling
its outcome, never by sleeping a fixed time: a loaded CI machine is slow, not wrong."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], what: str, *, until: Callable[[T], Any] = bool,
               timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call `probe` every `interval` seconds until `until(value)` holds; return that value.

    After `timeout` seconds (generous: speed is benchmarks' business) fail with an
    AssertionError naming `what` was awaited and the value last seen. Errors of `probe`
    propagate: a wait never hides a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {value!r}"[:2000])
        time.sleep(interval)


def answers_logged(http: Any, home: Any) -> str:
    """Wait until every answer a one-worker server has served so far is in its raw log
    (<home>/raw): ask for one more answer, a marker, and wait for it to be logged. One thread
    writes answers back in the order they were served, so every earlier one is logged too.
    Returns the marker's recommendation id."""
    from sluice.serve.explain import logged_answer
    from tests.utils.auth import READ

    answer = http.post("/v1/recommendations", json={"user_id": "log-marker"}, headers=READ)
    assert answer.status_code == 200, answer.text
    marker = answer.json()["recommendation_id"]
    wait_until(lambda: logged_answer(home / "raw", marker), f"answer {marker} in the raw log")
    return str(marker)


def log_lines(home: Any) -> list[bytes]:
    """Every complete line of the raw log at <home>/raw, segment by segment."""
    from sluice.intake.eventlog import read_complete, segments

    return [line for path in segments(home / "raw")
            for line in read_complete(path, 0)[0].splitlines()]


@contextmanager
def nothing_logged(http: Any, home: Any) -> Iterator[None]:
    """Asserts that the block writes nothing to the raw log of a one-worker server: the
    answers before it are waited for (`answers_logged`), and after it a marker answer must be
    the only line added. An answer of the block would be logged before the marker; anything
    written some other way gets a moment more to show."""
    import orjson

    answers_logged(http, home)
    before = log_lines(home)
    yield
    marker = answers_logged(http, home)
    time.sleep(0.2)
    added = log_lines(home)[len(before):]
    assert [orjson.loads(line)["id"] for line in added] == [marker], added
