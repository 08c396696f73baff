"""One value of an event, checked: the timestamp rule, ids and strings, numbers, tenants.

Every entry point (native events, PutEvents, tabular files, request parameters) reads single
values through these, so a value gets one verdict wherever it comes in; a refusal is an
`EventError` naming the field and the rule.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.errors import InputError
from sluice.vocabulary import MAX_ID_LENGTH, TENANT_RULE, is_tenant

# Epoch numbers are read by value, not digit count: below 10^11 they are seconds (10^11 s is
# the year 5138), at or above it milliseconds (10^11 ms is 1973-03-03). The plausible range
# starts there because the internal form stores ms and must read back as the same instant;
# it ends at a fixed far-future bound so that a value in microseconds is refused, not misread.
EPOCH_SECONDS_BELOW = 10**11
EARLIEST_MS = EPOCH_SECONDS_BELOW  # 1973-03-03T09:46:40Z
LATEST_MS = 32_503_680_000_000  # 3000-01-01T00:00:00Z (exclusive)
TIMESTAMP_RULE = ("epoch seconds (a number below 10^11) or epoch milliseconds (at or above "
                  "it), or ISO-8601, from 1973-03-03T09:46:40Z to before 3000-01-01")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class EventError(InputError):
    """An event that breaks the contract; names the field and the reason."""


def parse_timestamp(value: Any, field: str = "timestamp") -> int:
    """Milliseconds since epoch from an epoch number (or numeric string) or ISO-8601.

    The one timestamp rule of every entry point (native events, PutEvents `sentAt`, tabular
    TIMESTAMP columns): see TIMESTAMP_RULE.
    """
    if value.__class__ is int and EARLIEST_MS <= value < LATEST_MS:  # the common case, fast
        return value
    if isinstance(value, bool) or value is None:
        raise EventError(field, f"required: {TIMESTAMP_RULE}")
    if isinstance(value, int):
        return epoch_ms(value, field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventError(field, f"{value!r} is not a time: {TIMESTAMP_RULE}")
        return epoch_ms(value, field)
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL.match(text):  # ASCII only: int() would read some unicode digits, e.g. '٣'
            return epoch_ms(int(text) if text.isdigit() else float(text), field)
        return _from_iso(text, field)
    raise EventError(field, f"expected a number or string, got {type(value).__name__}")


def epoch_ms(value: int | float, field: str = "timestamp") -> int:
    """An epoch number read by value (seconds below 10^11, else ms) as whole milliseconds."""
    if value < 0:
        raise EventError(field, f"{value} is before 1970: {TIMESTAMP_RULE}")
    ms = value * 1000 if value < EPOCH_SECONDS_BELOW else value
    ms = int(round(ms)) if isinstance(ms, float) else ms
    return _in_range(ms, field, repr(value))


def _in_range(ms: int, field: str, shown: str) -> int:
    if ms < EARLIEST_MS:
        raise EventError(field, f"{shown:.64} is before 1973-03-03T09:46:40Z: {TIMESTAMP_RULE}")
    if ms >= LATEST_MS:
        raise EventError(field, f"{shown:.64} is after 3000-01-01 (microseconds? nanoseconds?): "
                                f"{TIMESTAMP_RULE}")
    return ms


def _from_iso(text: str, field: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventError(field, f"{text[:64]!r} is not a time: {TIMESTAMP_RULE}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range((moment - _EPOCH) // timedelta(milliseconds=1), field, repr(text))


def check_id(value: Any, field: str, required: bool = False) -> str | None:
    """The id rule every API shares (user, session, item ids): a string of 1 to 256 characters.

    Request ids go through it before use, so every answer logged back is an event ingest
    accepts."""
    if value is None and not required:
        return None
    return check_string({"v": value}, "v", field, required=True)


# numbers as text without a leading zero (so codes like "02134" stay strings)
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]{0,17})(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def numeric_text(value: Any) -> Any:
    """A number written as text ("4", "2.5") as that number; anything else unchanged.

    CSV cells and the Personalize CLI's properties carry every value as a string."""
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    return value


def check_string(obj: dict, key: str, field: str, required: bool,
                 limit: int = MAX_ID_LENGTH) -> str | None:
    """`obj[key]` as a string of 1 to `limit` characters: the rule of every id (event, user,
    session, item, ranking) and event type. A number is refused, never written as text: 1 and
    1.0 would be two users."""
    value: Any = obj.get(key)
    if value.__class__ is str and 0 < len(value) <= limit:  # the common case, checked fast
        return value
    if value is None:
        if required:
            raise EventError(field, "required")
        return None
    must_be_string(value, field)
    if not value:
        raise EventError(field, "must not be empty")
    if len(value) > limit:
        raise EventError(field, f"longer than {limit} characters")
    return value


def check_number(value: Any, field: str) -> float:
    """A finite number (an integer within 64 bits) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(field, f"expected a number, got {type(value).__name__}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise EventError(field, "integers must fit in 64 bits")
    if not math.isfinite(value):
        raise EventError(field, "must be finite")
    return float(value)


def must_be_string(value: Any, field: str) -> None:
    """The refusal of a non-string where an id or a name is expected, naming the field."""
    if not isinstance(value, str):
        raise EventError(field, f"must be a string, got {_json_type(value)} {value!r:.40}")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list):
        return "object" if isinstance(value, dict) else "array"
    return type(value).__name__


def check_tenant(value: Any, field: str = "tenant") -> str:
    must_be_string(value, field)
    if not is_tenant(value):
        raise EventError(field, f"{TENANT_RULE}, got {value!r:.40}")
    return value


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
