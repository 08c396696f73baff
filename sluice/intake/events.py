"""Event contracts: Metarank-style events parsed into one internal, normalized form.

The internal form is itself a valid input (parsing is idempotent), so the raw event log,
landing files and the HTTP APIs all go through `parse_event`:

    {"event": "interaction", "id": "e1", "timestamp": 1700000000000, "tenant": "default",
     "user": "u1", "session": "s1", "item": "i1", "type": "click", "ranking": "r1",
     "value": 1.0, "fields": {"color": "red"}, "items": [...]}
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.errors import InputError
from sluice.vocabulary import DEFAULT_TENANT, MAX_ID_LENGTH, TENANT_RULE, is_tenant

PUBLIC_EVENT_TYPES = ("item", "user", "ranking", "interaction")
INTERNAL_EVENT_TYPES = (*PUBLIC_EVENT_TYPES, "recommendation")
EVENT_ALIASES = {"metadata": "item"}

MAX_STRING_LENGTH = 4096
MAX_FIELD_NAME_LENGTH = 128
MAX_FIELDS = 128
MAX_LIST_LENGTH = 1000
MAX_RANKING_ITEMS = 1000
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
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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
        raise EventError(field, f"{text[:64]!r} is not ISO-8601 nor an epoch number") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range((moment - _EPOCH) // timedelta(milliseconds=1), field, repr(text))


def check_id(value: Any, field: str, required: bool = False) -> str | None:
    """The id rule every API shares (user, session, item ids): a string of 1 to 256 characters.

    Request ids go through it before use, so every answer logged back is an event ingest
    accepts."""
    if value is None and not required:
        return None
    return _string({"v": value}, "v", field, required=True, allow_numbers=False)


# numbers as text without a leading zero (so codes like "02134" stay strings)
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]{0,17})(\.[0-9]+)?([eE][-+]?[0-9]+)?$")


def numeric_text(value: Any) -> Any:
    """A number written as text ("4", "2.5") as that number; anything else unchanged.

    CSV cells and the Personalize CLI's properties carry every value as a string."""
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    return value


def _string(obj: dict, key: str, field: str, required: bool, limit: int = MAX_ID_LENGTH,
            allow_numbers: bool = True) -> str | None:
    value: Any = obj.get(key)
    if value.__class__ is str and 0 < len(value) <= limit:  # the common case, checked fast
        return value
    if value is None:
        if required:
            raise EventError(field, "required")
        return None
    if allow_numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise EventError(field, f"expected a string, got {type(value).__name__}")
    if not value:
        raise EventError(field, "must not be empty")
    if len(value) > limit:
        raise EventError(field, f"longer than {limit} characters")
    return value


def _field_value(value: Any, field: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError(field, "numbers must be finite")
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise EventError(field, "integers must fit in 64 bits")  # the log could not hold it
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise EventError(field, f"longer than {MAX_STRING_LENGTH} characters")
        return value
    if isinstance(value, list):
        if len(value) > MAX_LIST_LENGTH:
            raise EventError(field, f"lists hold at most {MAX_LIST_LENGTH} values")
        if all(isinstance(v, str) for v in value):
            if any(len(v) > MAX_STRING_LENGTH for v in value):
                raise EventError(field, f"list strings are at most {MAX_STRING_LENGTH} long")
            return value
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if numeric and all(math.isfinite(v) if isinstance(v, float)
                           else _INT64_MIN <= v <= _INT64_MAX for v in value):
            return value
        raise EventError(field, "a list must hold only strings or only finite numbers "
                                "(integers within 64 bits)")
    kind = "null" if value is None else type(value).__name__
    raise EventError(field, f"value must be bool, string, number or list of those, got {kind}")


def parse_fields(raw: Any, field: str = "fields") -> dict[str, Any]:
    """Metarank `[{"name","value"}]` (or a plain mapping) to a name -> value dict."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or "name" not in entry or "value" not in entry:
                raise EventError(f"{field}[{i}]", "expected an object with `name` and `value`")
            pairs.append((entry["name"], entry["value"]))
    else:
        raise EventError(field, "expected a list of {name, value} or an object")
    if len(pairs) > MAX_FIELDS:
        raise EventError(field, f"at most {MAX_FIELDS} fields per event")
    out: dict[str, Any] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name or len(name) > MAX_FIELD_NAME_LENGTH:
            raise EventError(field, f"field names are non-empty strings of at most "
                                    f"{MAX_FIELD_NAME_LENGTH} characters, got {name!r:.40}")
        out[name] = _field_value(value, f"{field}.{name}")
    return out


def _ranking_items(raw: Any, internal: bool) -> list[dict[str, Any]]:
    if internal and raw == []:  # an answer may be empty (a filter that matched nothing)
        return []
    if not isinstance(raw, list) or not raw:
        raise EventError("items", "required: a non-empty list of {id, fields?, label?}")
    if len(raw) > MAX_RANKING_ITEMS:
        raise EventError("items", f"at most {MAX_RANKING_ITEMS} items")
    items = []
    for i, entry in enumerate(raw):
        item = _plain_item(entry, internal)
        items.append(item if item is not None else _ranking_item(entry, f"items[{i}]", internal))
    return items


_SLOT_KEYS = frozenset(("id", "score", "position", "source", "arm", "propensity", "explored"))
_EXACT_INT = 2**53  # floats hold every int below this, so int(float(n)) == n


def _plain_item(entry: Any, internal: bool) -> dict[str, Any] | None:
    """The common shapes ({id}; a served slot {id, score, position, source}) checked fast:
    the same result _ranking_item gives, or None to let _ranking_item check everything."""
    if entry.__class__ is not dict:
        return None
    item_id = entry.get("id")
    if not (item_id.__class__ is str and 0 < len(item_id) <= MAX_ID_LENGTH):
        return None
    if len(entry) == 1:
        return {"id": item_id}
    if not internal or not entry.keys() <= _SLOT_KEYS:
        return None
    item: dict[str, Any] = {"id": item_id}
    score, source, position = entry.get("score"), entry.get("source"), entry.get("position")
    arm = entry.get("arm")
    if arm is not None:  # the experiment arm that placed the slot (sluice.experiments)
        if not (arm.__class__ is str and len(arm) <= MAX_ID_LENGTH):
            return None
        item["arm"] = arm
    if score is not None:
        if score.__class__ is not float or not math.isfinite(score):
            return None
        item["score"] = score
    if source is not None:
        if not (source.__class__ is str and 0 < len(source) <= MAX_ID_LENGTH):
            return None
        item["source"] = source
    if position is not None:
        if position.__class__ is not int or not -_EXACT_INT < position < _EXACT_INT:
            return None
        item["position"] = position
    propensity, explored = entry.get("propensity"), entry.get("explored")
    if propensity is not None:  # sluice.serve.exploration: the slot's probability
        if propensity.__class__ is not float or not 0 < propensity <= 1:
            return None
        item["propensity"] = propensity
    if explored is not None:
        if explored.__class__ is not bool:
            return None
        item["explored"] = explored
    return item


def _ranking_item(entry: Any, where: str, internal: bool) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise EventError(where, "expected an object with `id`")
    item: dict[str, Any] = {"id": _string(entry, "id", f"{where}.id", True)}
    if entry.get("fields") is not None:
        item["fields"] = parse_fields(entry["fields"], f"{where}.fields")
    for key in ("label", "score") if internal else ("label",):
        if entry.get(key) is not None:
            item[key] = _number(entry[key], f"{where}.{key}")
    if internal:
        for key in ("source", "arm"):
            if entry.get(key) is not None:
                item[key] = _string(entry, key, f"{where}.{key}", False)
        if entry.get("position") is not None:
            item["position"] = int(_number(entry["position"], f"{where}.position"))
        if entry.get("propensity") is not None:
            item["propensity"] = _number(entry["propensity"], f"{where}.propensity")
            if not 0 < item["propensity"] <= 1:
                raise EventError(f"{where}.propensity", "a probability in (0, 1]")
        if entry.get("explored") is not None:
            if not isinstance(entry["explored"], bool):
                raise EventError(f"{where}.explored", "expected true or false")
            item["explored"] = entry["explored"]
    return item


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(field, f"expected a number, got {type(value).__name__}")
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        raise EventError(field, "integers must fit in 64 bits")
    if not math.isfinite(value):
        raise EventError(field, "must be finite")
    return float(value)


def parse_event(
    raw: Any,
    default_tenant: str = DEFAULT_TENANT,
    allow_internal: bool = False,
) -> dict[str, Any]:
    """Validate one event and return its internal form; raises EventError naming the field."""
    if not isinstance(raw, dict):
        raise EventError("event", f"expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("event")
    if isinstance(kind, str):  # an unhashable value (a list) would break the lookup
        kind = EVENT_ALIASES.get(kind, kind)
    allowed = INTERNAL_EVENT_TYPES if allow_internal else PUBLIC_EVENT_TYPES
    if kind not in allowed:
        raise EventError("event", f"must be one of {', '.join(allowed)}, got {kind!r:.40}")
    event: dict[str, Any] = {
        "event": kind,
        "id": _string(raw, "id", "id", True),
        "timestamp": parse_timestamp(raw.get("timestamp")),
        "tenant": _tenant(raw.get("tenant"), default_tenant),
    }
    user = _string(raw, "user", "user", kind == "user")
    session = _string(raw, "session", "session", False)
    if kind in ("ranking", "interaction", "recommendation") and user is None and session is None:
        raise EventError("user", f"a {kind} needs `user` or `session`")
    if user is not None:
        event["user"] = user
    if session is not None:
        event["session"] = session
    if kind in ("item", "interaction"):
        event["item"] = _string(raw, "item", "item", True)
    if kind == "interaction":
        event["type"] = _string(raw, "type", "type", True, limit=64)
        ranking = _string(raw, "ranking", "ranking", False)
        if ranking is not None:
            event["ranking"] = ranking
        if raw.get("value") is not None:
            event["value"] = _number(raw["value"], "value")
    if kind in ("ranking", "recommendation"):
        event["items"] = _ranking_items(raw.get("items"), internal=kind == "recommendation")
    fields = parse_fields(raw.get("fields"))
    if fields:
        event["fields"] = fields
    return event


def _tenant(value: Any, default: str) -> str:
    return default if value is None else check_tenant(value)


def check_tenant(value: Any, field: str = "tenant") -> str:
    if not is_tenant(value):
        raise EventError(field, f"{TENANT_RULE}, got {value!r:.40}")
    return value


def parse_batch(
    raws: list[Any], default_tenant: str = DEFAULT_TENANT
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse a batch; returns (events, errors) with errors as {index, field, reason}."""
    events, errors = [], []
    for index, raw in enumerate(raws):
        try:
            events.append(parse_event(raw, default_tenant))
        except EventError as exc:
            errors.append({"index": index, "field": exc.field, "reason": exc.reason})
    return events, errors


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
