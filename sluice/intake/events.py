"""Event contracts: Metarank-style events parsed into one internal, normalized form.

The internal form is itself a valid input (parsing is idempotent), so the raw event log,
landing files and the HTTP APIs all go through `parse_event`:

    {"event": "interaction", "id": "e1", "timestamp": 1700000000000, "tenant": "default",
     "user": "u1", "session": "s1", "item": "i1", "type": "click", "ranking": "r1",
     "value": 1.0, "fields": {"color": "red"}, "items": [...]}
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from sluice.intake.values import (
    EARLIEST_MS,
    EPOCH_SECONDS_BELOW,
    INT64_MAX,
    INT64_MIN,
    LATEST_MS,
    TIMESTAMP_RULE,
    EventError,
    check_id,
    check_number,
    check_string,
    check_tenant,
    epoch_ms,
    iso,
    numeric_text,
    parse_timestamp,
)
from sluice.vocabulary import DEFAULT_TENANT, MAX_ID_LENGTH

PUBLIC_EVENT_TYPES = ("item", "user", "ranking", "interaction")
INTERNAL_EVENT_TYPES = (*PUBLIC_EVENT_TYPES, "recommendation")
EVENT_ALIASES = {"metadata": "item"}

MAX_STRING_LENGTH = 20_000  # Personalize's textual item fields (descriptions) hold 20,000
MAX_FIELD_NAME_LENGTH = 128
MAX_FIELDS = 128
# an answer logged back (`recommendation`, internal) carries its counts and the request's
# context as `context.<name>` fields: Personalize's context holds 150 names of 150 characters
MAX_ANSWER_FIELDS = MAX_FIELDS + 150
MAX_ANSWER_FIELD_NAME_LENGTH = len("context.") + 150
MAX_LIST_LENGTH = 1000
MAX_RANKING_ITEMS = 1000
MAX_TYPE_LENGTH = 256  # an interaction's type: Personalize's eventType allows 256 characters
IMPRESSION_SUFFIX = ":impression"


def impression_id(event_id: str) -> str:
    """The id of the shown list an event's impression records: `<event id>:impression`, or,
    for an event id too long to take the suffix within the id rule, its digest's."""
    candidate = event_id + IMPRESSION_SUFFIX
    if len(candidate) <= MAX_ID_LENGTH:
        return candidate
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"id-{digest}{IMPRESSION_SUFFIX}"


def categories(text: str) -> list[str]:
    """Personalize's categorical value `a|b|c` as its values (empty parts dropped)."""
    return [v for v in text.split("|") if v]


def schema_value(value: Any) -> Any:
    """A schema field's value as a bulk file's cell or an API property reads: `a|b` is a list
    (Personalize's categorical values), numbers written as text are numbers."""
    if isinstance(value, str) and "|" in value:
        return categories(value)
    return numeric_text(value)


def _field_value(value: Any, field: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError(field, "numbers must be finite")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
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
                           else INT64_MIN <= v <= INT64_MAX for v in value):
            return value
        raise EventError(field, "a list must hold only strings or only finite numbers "
                                "(integers within 64 bits)")
    kind = "null" if value is None else type(value).__name__
    raise EventError(field, f"value must be bool, string, number or list of those, got {kind}")


def parse_fields(raw: Any, field: str = "fields", max_fields: int = MAX_FIELDS,
                 max_name: int = MAX_FIELD_NAME_LENGTH) -> dict[str, Any]:
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
    if len(pairs) > max_fields:
        raise EventError(field, f"at most {max_fields} fields per event")
    out: dict[str, Any] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not name or len(name) > max_name:
            raise EventError(field, f"field names are non-empty strings of at most "
                                    f"{max_name} characters, got {name!r:.40}")
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
    item: dict[str, Any] = {"id": check_string(entry, "id", f"{where}.id", True)}
    if entry.get("fields") is not None:
        item["fields"] = parse_fields(entry["fields"], f"{where}.fields")
    if entry.get("relevancy") is not None:  # Metarank's score of the item in the ranking
        _relevancy_field(item, check_number(entry["relevancy"], f"{where}.relevancy"), where)
    for key in ("label", "score") if internal else ("label",):
        if entry.get(key) is not None:
            item[key] = check_number(entry[key], f"{where}.{key}")
    if internal:
        for key in ("source", "arm"):
            if entry.get(key) is not None:
                item[key] = check_string(entry, key, f"{where}.{key}", False)
        if entry.get("position") is not None:
            item["position"] = int(check_number(entry["position"], f"{where}.position"))
        if entry.get("propensity") is not None:
            item["propensity"] = check_number(entry["propensity"], f"{where}.propensity")
            if not 0 < item["propensity"] <= 1:
                raise EventError(f"{where}.propensity", "a probability in (0, 1]")
        if entry.get("explored") is not None:
            if not isinstance(entry["explored"], bool):
                raise EventError(f"{where}.explored", "expected true or false")
            item["explored"] = entry["explored"]
    return item


def _relevancy_field(item: dict[str, Any], value: float, where: str) -> None:
    """Metarank's `{"id", "relevancy"}` kept as the item's field `relevancy`, the form its
    later releases write (`fields: [{"name": "relevancy", ...}]`); given both, they agree."""
    fields = item.setdefault("fields", {})
    if fields.get("relevancy", value) != value:
        raise EventError(f"{where}.relevancy", "differs from the item's field `relevancy`")
    fields["relevancy"] = value


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
        "id": check_string(raw, "id", "id", True),
        "timestamp": parse_timestamp(raw.get("timestamp")),
        "tenant": _tenant(raw.get("tenant"), default_tenant),
    }
    user = check_string(raw, "user", "user", kind == "user")
    session = check_string(raw, "session", "session", False)
    if kind in ("ranking", "interaction", "recommendation") and user is None and session is None:
        raise EventError("user", f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} needs `user` "
                         "or `session`")
    if user is not None:
        event["user"] = user
    if session is not None:
        event["session"] = session
    if kind in ("item", "interaction"):
        event["item"] = check_string(raw, "item", "item", True)
    if kind in ("interaction", "ranking"):
        # an interaction's list; a ranking's: the list it records the impression of (PutEvents'
        # recommendationId with an `impression`), which then names it in the marts
        ranking = check_string(raw, "ranking", "ranking", False)
        if ranking is not None:
            event["ranking"] = ranking
    if kind == "interaction":
        event["type"] = check_string(raw, "type", "type", True, limit=MAX_TYPE_LENGTH)
        if raw.get("value") is not None:
            event["value"] = check_number(raw["value"], "value")
    if kind in ("ranking", "recommendation"):
        event["items"] = _ranking_items(raw.get("items"), internal=kind == "recommendation")
    fields = (parse_fields(raw.get("fields"), max_fields=MAX_ANSWER_FIELDS,
                           max_name=MAX_ANSWER_FIELD_NAME_LENGTH) if kind == "recommendation"
              else parse_fields(raw.get("fields")))
    if fields:
        event["fields"] = fields
    return event


def _tenant(value: Any, default: str) -> str:
    return default if value is None else check_tenant(value)


# the members of a Metarank event (and `value`, `tenant`): a request naming another is refused
EVENT_KEYS = ("event", "id", "timestamp", "tenant", "user", "session", "item", "type", "value",
              "ranking", "items", "fields")


def check_event_keys(raw: Any) -> None:
    """A misspelt member (`tenat`, `sesion`, `valeu`) is refused by name, not dropped: the
    event would be stored without it (under the key's tenant, say)."""
    for key in raw if isinstance(raw, dict) else ():
        if key not in EVENT_KEYS:
            raise EventError(f"{key!s:.64}", "not a member of an event (a misspelt name?): "
                                            f"one of {', '.join(EVENT_KEYS)}")


def parse_batch(
    raws: list[Any], default_tenant: str = DEFAULT_TENANT
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse a batch sent to the API; returns (events, errors) with errors as {index, field,
    reason}. Unlike a landing file's lines, a member the event does not have is refused."""
    events, errors = [], []
    for index, raw in enumerate(raws):
        try:
            check_event_keys(raw)
            events.append(parse_event(raw, default_tenant))
        except EventError as exc:
            errors.append({"index": index, "field": exc.field, "reason": exc.reason})
    return events, errors


# the single-value checks moved to sluice.intake.values; their names stay importable from here
__all__ = ["EARLIEST_MS", "EPOCH_SECONDS_BELOW", "LATEST_MS", "MAX_ID_LENGTH", "TIMESTAMP_RULE",
           "EventError", "check_id", "check_tenant", "epoch_ms", "iso", "numeric_text",
           "parse_batch", "parse_event", "parse_fields", "parse_timestamp"]
