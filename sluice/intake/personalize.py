"""Personalize-compatible requests (PutEvents, PutItems, PutUsers) as internal events.

Field limits follow botocore's service model for `personalize-events`, so what boto3 would
send is accepted and what it would refuse is refused here too, naming the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sluice.errors import InputError
from sluice.intake.events import (
    TIMESTAMP_RULE,
    EventError,
    categories,
    impression_id,
    numeric_text,
    parse_event,
    parse_timestamp,
    schema_value,
)
from sluice.intake.limits import too_deep
from sluice.intake.values import must_be_string
from sluice.vocabulary import MAX_ID_LENGTH, TENANT_RULE, is_tenant

MAX_EVENTS = 10
MAX_IMPRESSION = 25
MAX_RECOMMENDATION_ID = 40
# botocore's EventPropertiesJSON, ItemProperties and UserProperties
MAX_EVENT_PROPERTIES, MAX_ITEM_PROPERTIES, MAX_USER_PROPERTIES = 1024, 32000, 24000
MAX_ATTRIBUTION_SOURCE = 1024
# botocore's EventAttributionSource: printable ASCII with at least one non-space character
_ATTRIBUTION = re.compile(r"^[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*$")
ATTRIBUTION_FIELD = "event_attribution_source"  # metricAttribution, kept as an event field
MAX_PROPERTIES_DEPTH = 8  # properties are flat (values: scalars or lists); 8 leaves room
# event keys that may come at the top level or inside `properties` (the guide's examples)
_LIFTED = ("itemId", "eventValue", "recommendationId", "impression")
# PutEvents parameters, never schema fields: in properties only as the same value
_PARAMETERS = ("userId", "sessionId", "eventType", "eventId")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_ARN = re.compile(r"^arn:([a-z\d-]+):personalize:[^:]*:[^:]*:(?P<resource>.+)$")


class PersonalizeError(InputError):
    """A parameter of a Personalize call that is not an event (an ARN, numResults, a filter)."""


class MalformedError(PersonalizeError):
    """A member whose JSON type is not its model's (a string for an integer, a boolean for a
    float, a date-time string for a timestamp, a number for a string): a restJson1 server
    refuses it before reading the call, as a SerializationException (sluice/intake/restjson.py
    reads a body so, after Smithy's malformed-request protocol tests)."""


def snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def _str(obj: dict, key: str, field: str, required: bool,
         max_len: int = MAX_ID_LENGTH) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EventError(field, "required")
        return None
    must_be_string(value, field)
    if not 1 <= len(value) <= max_len:
        raise EventError(field, f"length must be 1 to {max_len}")
    return value


def _properties(raw: Any, field: str, max_len: int) -> dict[str, Any]:
    """The `properties` JSON string as a dict keyed as sent (camelCase)."""
    if raw is None:
        return {}
    if not isinstance(raw, str) or not 1 <= len(raw) <= max_len:
        raise EventError(field, f"a JSON object as a string of 1 to {max_len} characters")
    if too_deep(raw, MAX_PROPERTIES_DEPTH):  # json.loads would recurse until RecursionError
        raise EventError(field, f"nested deeper than {MAX_PROPERTIES_DEPTH} levels")
    try:
        parsed = json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise EventError(field, f"not valid JSON: {exc.msg}") from None
    except ValueError as exc:  # NaN, Infinity: Python's json reads them, JSON has no such number
        raise EventError(field, str(exc)) from None
    if not isinstance(parsed, dict):
        raise EventError(field, "must be a JSON object")
    return parsed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number: send finite numbers")


def _merged(raw: dict, props: dict[str, Any], key: str, where: str) -> Any:
    """`key` from the top level or from properties (the guide puts itemId, eventValue, ...
    there); given in both, the two must agree."""
    top, inner = raw.get(key), props.pop(key, None)
    if key == "eventValue":
        inner = numeric_text(inner)
    elif key == "impression" and isinstance(inner, str):  # the schema field's `a|b|c`
        inner = categories(inner)
    if top is not None and inner is not None and top != inner:
        raise EventError(f"{where}.{key}", f"{top!r:.60} at the top level but {inner!r:.60} in "
                                           "properties: send it once, or the same in both")
    return top if top is not None else inner


def _fields(props: dict[str, Any], where: str, entity: bool = False) -> dict[str, Any]:
    """Schema fields (camelCase keys, text or numbers) as snake_case event fields, each value
    read as a bulk file's cell is (`schema_value`).

    A null (an optional schema field without a value) is left out of an event; an item or a
    user is refused one, since Sluice merges their fields by name and cannot clear one."""
    if entity:
        for key, value in props.items():
            if value is None:
                raise EventError(f"{where}.properties.{key}", "null: Sluice keeps the latest "
                                 "value of each field, so a null cannot clear one; leave it out")
    return {snake(k): schema_value(v) for k, v in props.items() if v is not None}


# sentAt is a restJson1 timestamp, epoch seconds as a JSON number (a string is malformed:
# sluice/intake/restjson.py); epoch milliseconds are read as the native API reads them
SENT_AT_RULE = TIMESTAMP_RULE.replace(", or ISO-8601", "")


def _sent_at(value: Any, field: str) -> int:
    """botocore sends timestamps as epoch seconds (a number, maybe fractional)."""
    if value is None:
        raise EventError(field, f"required: {SENT_AT_RULE}")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise EventError(field, f"expected a number: {SENT_AT_RULE}")
    try:
        return parse_timestamp(value, field)
    except EventError as exc:
        raise EventError(field, exc.reason.replace(TIMESTAMP_RULE, SENT_AT_RULE)) from None


def _stable_id(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return "pe-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def tracking_id(body: dict[str, Any]) -> str | None:
    """PutEvents' trackingId, checked before it is looked up (a number or a 300-character
    string is invalid input, not an unknown tracker)."""
    return _str(body, "trackingId", "trackingId", False)


def _attribution(raw: Any, where: str) -> str | None:
    """`metricAttribution.eventAttributionSource` (botocore's shape), kept as a field; other
    members are ignored, as restJson1 ignores members the model does not name."""
    if raw is None:
        return None
    field = f"{where}.metricAttribution"
    if not isinstance(raw, dict):
        raise EventError(field, "expected an object {eventAttributionSource}")
    source = raw.get("eventAttributionSource")
    if not isinstance(source, str) or not _ATTRIBUTION.match(source):
        raise EventError(f"{field}.eventAttributionSource", "required: printable ASCII with "
                         "at least one character other than a space")
    if len(source) > MAX_ATTRIBUTION_SOURCE:
        raise EventError(f"{field}.eventAttributionSource",
                         f"longer than {MAX_ATTRIBUTION_SOURCE} characters")
    return source


def _attributed(raw: dict, fields: dict[str, Any], where: str) -> str | None:
    """metricAttribution's source into `fields` (agreeing with properties if given there)."""
    source = _attribution(raw.get("metricAttribution"), where)
    if source is not None:
        if fields.get(ATTRIBUTION_FIELD, source) != source:
            raise EventError(f"{where}.metricAttribution.eventAttributionSource",
                             "differs from eventAttributionSource in properties: send it once, "
                             "or the same in both")
        fields[ATTRIBUTION_FIELD] = source
    return source


def put_events(body: Any, tenant: str) -> list[dict[str, Any]]:
    """A PutEvents body as internal events; explicit impressions become a ranking event."""
    if not isinstance(body, dict):
        raise EventError("body", "expected a JSON object")
    tracking = _str(body, "trackingId", "trackingId", True)
    session = _str(body, "sessionId", "sessionId", True)
    user = _str(body, "userId", "userId", False)
    events_in = body.get("eventList")
    if not isinstance(events_in, list) or not 1 <= len(events_in) <= MAX_EVENTS:
        raise EventError("eventList", f"a list of 1 to {MAX_EVENTS} events")
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(events_in):
        where = f"eventList[{index}]"
        if not isinstance(raw, dict):
            raise EventError(where, "expected an object")
        event_type = _str(raw, "eventType", f"{where}.eventType", True)
        sent_at = _sent_at(raw.get("sentAt"), f"{where}.sentAt")
        props = _properties(raw.get("properties"), f"{where}.properties", MAX_EVENT_PROPERTIES)
        _parameters_agree(props, {"userId": user, "sessionId": session,
                                  "eventType": event_type, "eventId": raw.get("eventId")}, where)
        item, value, recommendation, impression = _lifted(raw, props, where)
        fields = _fields(props, where)
        source = _attributed(raw, fields, where)
        # from the content: a retried call (botocore resends the same body) gets the same ids,
        # and two identical events are stored once, as Personalize keeps one of them (the
        # attribution and what was shown only when given, so the ids of events without them
        # stay as they were)
        shown = [{"impression": impression, "recommendationId": recommendation}] if (
            impression or recommendation) else []
        event_id = _str(raw, "eventId", f"{where}.eventId", False) or _stable_id(
            tracking, session, user, event_type, item, sent_at, raw.get("properties"), value,
            *([source] if source is not None else []), *shown)
        who = {"session": session} | ({"user": user} if user else {})
        ranking = recommendation
        if impression:
            ranking = ranking or impression_id(event_id)
            out.append(_checked(_impression(
                event_id, sent_at, tenant, who, impression, recommendation,
                fields if item is None else None), where))
        if item is not None:
            event: dict[str, Any] = {"event": "interaction", "id": event_id, "timestamp": sent_at,
                     "tenant": tenant, **who, "item": item, "type": event_type,
                     "fields": fields}
            if ranking:
                event["ranking"] = ranking
            if value is not None:
                event["value"] = float(value)
            out.append(_checked(event, where))
    return out


def _impression(event_id: str, sent_at: int, tenant: str, who: dict[str, Any],
                impression: list[str], recommendation: str | None,
                fields: dict[str, Any] | None) -> dict[str, Any]:
    """The ranking event of an event's `impression`: the items shown; with a recommendationId,
    of the list that id names, so the marts show one list (the answer Sluice logged under it,
    else this impression). An event without an item keeps its `fields` here."""
    return {"event": "ranking", "id": impression_id(event_id), "timestamp": sent_at,
            "tenant": tenant, **who, "items": [{"id": i} for i in impression],
            **({"ranking": recommendation} if recommendation else {}),
            **({"fields": fields} if fields else {})}


def _parameters_agree(props: dict[str, Any], given: dict[str, Any], where: str) -> None:
    """userId, sessionId, eventType and eventId in properties (taken out of them) must repeat
    the parameter: a different value would be kept as a field that names no one."""
    for key in _PARAMETERS:
        if key in props and props.pop(key) != given[key]:
            raise EventError(f"{where}.properties.{key}", f"differs from the {key} parameter "
                             f"({given[key]!r:.60}): give it once, as the parameter")


def _lifted(raw: dict, props: dict[str, Any], where: str) -> tuple[Any, Any, Any, Any]:
    """(itemId, eventValue, recommendationId, impression), each from the top level or from
    properties (taken out of them), checked."""
    given = {k: _merged(raw, props, k, where) for k in _LIFTED}
    item = _str(given, "itemId", f"{where}.itemId", False)
    recommendation = _str(given, "recommendationId", f"{where}.recommendationId", False,
                          MAX_RECOMMENDATION_ID)
    value = given["eventValue"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise EventError(f"{where}.eventValue", "expected a number")
    impression = given["impression"]
    if impression is not None and (
            not isinstance(impression, list) or not 1 <= len(impression) <= MAX_IMPRESSION
            or not all(isinstance(i, str) and 1 <= len(i) <= MAX_ID_LENGTH
                       for i in impression)):
        raise EventError(f"{where}.impression", f"a list of 1 to {MAX_IMPRESSION} item ids")
    if item is None and not impression:
        raise EventError(f"{where}.itemId", "required unless the event has an impression")
    return item, value, recommendation, impression


def _checked(event: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return parse_event(event, event["tenant"])
    except EventError as exc:
        raise EventError(f"{where}.{_outer_name(exc.field)}", exc.reason) from None


def _outer_name(field: str) -> str:
    """An internal field name (`fields.num_ratings`) as the request spelled its parameter."""
    head, dot, rest = field.partition(".")
    head = {"id": "eventId", "fields": "properties", "type": "eventType", "item": "itemId",
            "value": "eventValue", "user": "userId", "items": "impression"}.get(head, head)
    return head + dot + rest


def dataset_tenant(arn: Any, field: str = "datasetArn", dataset: str | None = None) -> str:
    """`arn:aws:personalize:<region>:<account>:dataset/<dataset group>/<ITEMS|USERS>`; with
    `dataset` (ITEMS, USERS) the ARN must name that dataset, as PutItems/PutUsers need."""
    if not isinstance(arn, str) or len(arn) > 256:
        raise PersonalizeError(field, "required: a Personalize ARN")
    match = _ARN.match(arn)
    if not match:
        raise PersonalizeError(field, "not a Personalize ARN (arn:aws:personalize:...)")
    parts = match.group("resource").split("/")
    if len(parts) < 2 or not parts[1]:
        raise PersonalizeError(field, "expected .../<kind>/<dataset group name>[/...]")
    if not is_tenant(parts[1]):
        raise PersonalizeError(field, f"dataset group name: {TENANT_RULE}")
    if dataset is not None and (parts[0] != "dataset" or parts[2:] != [dataset]):
        raise PersonalizeError(field, f"expected the {dataset} dataset of a dataset group, "
                               f"arn:aws:personalize:REGION:ACCOUNT:dataset/GROUP/{dataset}")
    return parts[1]


def arn_resource(arn: str) -> str:
    """The resource of a Personalize ARN (`campaign/shop/popular`); "" when it is none."""
    match = _ARN.match(arn)
    return match.group("resource") if match else ""


def put_entities(body: Any, kind: str, now_ms: int) -> tuple[str, list[dict[str, Any]]]:
    """PutItems (kind 'item') or PutUsers (kind 'user'): (tenant, internal events)."""
    if not isinstance(body, dict):
        raise EventError("body", "expected a JSON object")
    key, id_key, max_props = ("items", "itemId", MAX_ITEM_PROPERTIES) if kind == "item" else (
        "users", "userId", MAX_USER_PROPERTIES)
    tenant = dataset_tenant(body.get("datasetArn"), dataset=key.upper())
    entries = body.get(key)
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_EVENTS:
        raise EventError(key, f"a list of 1 to {MAX_EVENTS} {key}")
    events = []
    for index, raw in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(raw, dict):
            raise EventError(where, "expected an object")
        props = _properties(raw.get("properties"), f"{where}.properties", max_props)
        entity = _str({id_key: _merged(raw, props, id_key, where)}, id_key, f"{where}.{id_key}",
                      True)
        fields = _fields(props, where, entity=True)
        # a retried PutItems re-applies the same values, so a per-call id is harmless
        event = {"event": kind, "id": _stable_id(kind, tenant, entity, raw.get("properties"),
                                                 now_ms, index),
                 "timestamp": now_ms, "tenant": tenant, kind: entity, "fields": fields}
        events.append(_checked(event, where))
    return tenant, events
