"""Personalize-compatible requests (PutEvents, PutItems, PutUsers) as internal events.

Field limits follow botocore's service model for `personalize-events`, so what boto3 would
send is accepted and what it would refuse is refused here too, naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from sluice.errors import InputError
from sluice.intake.events import EventError, parse_event
from sluice.intake.limits import too_deep
from sluice.vocabulary import MAX_ID_LENGTH, TENANT_RULE, is_tenant

MAX_EVENTS = 10
MAX_IMPRESSION = 25
MAX_PROPERTIES_DEPTH = 8  # properties are flat (values: scalars or lists); 8 leaves room
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_ARN = re.compile(r"^arn:([a-z\d-]+):personalize:[^:]*:[^:]*:(?P<resource>.+)$")


class PersonalizeError(InputError):
    """A parameter of a Personalize call that is not an event (an ARN, numResults, a filter)."""


def snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def _str(obj: dict, key: str, field: str, required: bool,
         max_len: int = MAX_ID_LENGTH) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EventError(field, "required")
        return None
    if not isinstance(value, str):
        raise EventError(field, f"expected a string, got {type(value).__name__}")
    if not 1 <= len(value) <= max_len:
        raise EventError(field, f"length must be 1 to {max_len}")
    return value


def _properties(raw: Any, field: str, max_len: int) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, str) or not 1 <= len(raw) <= max_len:
        raise EventError(field, f"a JSON object as a string of 1 to {max_len} characters")
    if too_deep(raw, MAX_PROPERTIES_DEPTH):  # json.loads would recurse until RecursionError
        raise EventError(field, f"nested deeper than {MAX_PROPERTIES_DEPTH} levels")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EventError(field, f"not valid JSON: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise EventError(field, "must be a JSON object")
    return {snake(k): v for k, v in parsed.items()}


def _sent_at(value: Any, field: str) -> int:
    """botocore sends timestamps as epoch seconds (a number, maybe fractional)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EventError(field, "required: epoch seconds")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise EventError(field, f"{value[:40]!r} is not epoch seconds") from None
    if not math.isfinite(value) or not 1e9 <= value < 1e10:
        raise EventError(field, f"{value} is not epoch seconds (10 digits)")
    return int(round(value * 1000))


def _stable_id(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return "pe-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def put_events(body: Any, tenant: str) -> list[dict[str, Any]]:
    """A PutEvents body as internal events; explicit impressions become a ranking event."""
    if not isinstance(body, dict):
        raise EventError("body", "expected a JSON object")
    tracking_id = _str(body, "trackingId", "trackingId", True)
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
        item = _str(raw, "itemId", f"{where}.itemId", False)
        recommendation = _str(raw, "recommendationId", f"{where}.recommendationId", False, 40)
        fields = _properties(raw.get("properties"), f"{where}.properties", 1024)
        value = raw.get("eventValue")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise EventError(f"{where}.eventValue", "expected a number")
        impression = raw.get("impression")
        if impression is not None and (
                not isinstance(impression, list) or not 1 <= len(impression) <= MAX_IMPRESSION
                or not all(isinstance(i, str) and 1 <= len(i) <= MAX_ID_LENGTH
                           for i in impression)):
            raise EventError(f"{where}.impression", f"a list of 1 to {MAX_IMPRESSION} item ids")
        if item is None and not impression:
            raise EventError(f"{where}.itemId", "required unless the event has an impression")
        event_id = _str(raw, "eventId", f"{where}.eventId", False) or _stable_id(
            tracking_id, session, user, event_type, item, sent_at, raw.get("properties"), value)
        who = {"session": session} | ({"user": user} if user else {})
        ranking = recommendation
        if impression:
            ranking = ranking or f"{event_id}:impression"
            out.append(_checked({"event": "ranking", "id": f"{event_id}:impression",
                                 "timestamp": sent_at, "tenant": tenant, **who,
                                 "items": [{"id": i} for i in impression]}, where))
        if item is not None:
            event = {"event": "interaction", "id": event_id, "timestamp": sent_at,
                     "tenant": tenant, **who, "item": item, "type": event_type,
                     "fields": fields}
            if ranking:
                event["ranking"] = ranking
            if value is not None:
                event["value"] = float(value)
            out.append(_checked(event, where))
    return out


def _checked(event: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return parse_event(event, event["tenant"])
    except EventError as exc:
        field = {"fields": "properties", "type": "eventType", "item": "itemId",
                 "value": "eventValue"}.get(exc.field.split(".")[0], exc.field)
        raise EventError(f"{where}.{field}", exc.reason) from None


def dataset_tenant(arn: Any, field: str = "datasetArn") -> str:
    """`arn:aws:personalize:<region>:<account>:dataset/<dataset group>/<ITEMS|USERS>`."""
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
    return parts[1]


def arn_template(arn: Any, templates: tuple[str, ...]) -> str | None:
    """The template a recommender or campaign ARN selects by its last part
    (`.../recommender/<dataset group>/similar_attributes`), when it names one of `templates`."""
    if not isinstance(arn, str):
        return None
    match = _ARN.match(arn)
    parts = match.group("resource").split("/") if match else []
    return parts[-1] if len(parts) >= 3 and parts[-1] in templates else None


def put_entities(body: Any, kind: str, now_ms: int) -> tuple[str, list[dict[str, Any]]]:
    """PutItems (kind 'item') or PutUsers (kind 'user'): (tenant, internal events)."""
    if not isinstance(body, dict):
        raise EventError("body", "expected a JSON object")
    tenant = dataset_tenant(body.get("datasetArn"))
    key, id_key, max_props = ("items", "itemId", 32000) if kind == "item" else (
        "users", "userId", 24000)
    entries = body.get(key)
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_EVENTS:
        raise EventError(key, f"a list of 1 to {MAX_EVENTS} {key}")
    events = []
    for index, raw in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(raw, dict):
            raise EventError(where, "expected an object")
        entity = _str(raw, id_key, f"{where}.{id_key}", True)
        fields = _properties(raw.get("properties"), f"{where}.properties", max_props)
        # a retried PutItems re-applies the same values, so a per-call id is harmless
        event = {"event": kind, "id": _stable_id(kind, tenant, entity, raw.get("properties"),
                                                 now_ms, index),
                 "timestamp": now_ms, "tenant": tenant, kind: entity, "fields": fields}
        try:
            events.append(parse_event(event, tenant))
        except EventError as exc:
            raise EventError(f"{where}.properties", exc.reason) from None
    return tenant, events
