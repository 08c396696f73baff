"""When a task may retry: only on I/O trouble, never on a data or configuration error."""

from __future__ import annotations

from typing import Any

RETRY_DELAYS = [5, 30]  # seconds: a brief blip, then a longer one


def io_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry on OSError/TimeoutError (disk, network, lock waits); a failed dbt test, too
    little data or a bad config fails at once, with its message."""
    try:
        state.result()
    except (OSError, TimeoutError):
        return True
    except Exception:
        return False
    return False


# the options of a task that retries on I/O trouble only, after RETRY_DELAYS
IO_RETRIES: dict[str, Any] = {"retries": len(RETRY_DELAYS), "retry_delay_seconds": RETRY_DELAYS,
                              "retry_condition_fn": io_failure}
