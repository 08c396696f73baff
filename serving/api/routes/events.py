"""Native intake: Metarank-style events, one, an array, or JSON Lines."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from serving.api.deps import MetricsDep, ServiceDep, Writer
from serving.api.errors import RETRY_AFTER_SECONDS, problem, responses
from serving.api.metrics import field_label
from sluice.intake.eventlog import LogWriteError
from sluice.intake.events import (
    MAX_FIELD_NAME_LENGTH,
    MAX_FIELDS,
    MAX_RANKING_ITEMS,
    MAX_TYPE_LENGTH,
    parse_batch,
)
from sluice.intake.limits import gives_a_key_twice, loads_named, repeated_key, without_bom
from sluice.vocabulary import MAX_ID_LENGTH, TENANT_PATTERN

router = APIRouter(prefix="/v1", tags=["events"], responses=responses(401, 403, 413, 422, 503))

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_CALL = 10_000

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
_TIMESTAMP = {"anyOf": [{"type": "number", "minimum": 10**8, "maximum": 32_503_679_999_999},
                        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                        {"type": "string", "format": "date-time"}],
              "description": "epoch ms or seconds (number or digits), or ISO-8601"}
_FIELDS = {"type": "array", "maxItems": MAX_FIELDS, "items": {
    "type": "object", "required": ["name", "value"],
    "properties": {"name": {"type": "string", "minLength": 1,
                            "maxLength": MAX_FIELD_NAME_LENGTH},
                   "value": {"anyOf": [{"type": "string"}, {"type": "number"},
                                       {"type": "boolean"},
                                       {"type": "array", "items": {"type": "string"}}]}}}}


def _event(kind: str, *required: str, **properties: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "object", "required": ["event", "id", "timestamp", *required],
        "additionalProperties": False,
        "properties": {"event": {"enum": [kind]}, "id": _ID, "timestamp": _TIMESTAMP,
                       "tenant": {"type": "string", "pattern": TENANT_PATTERN},
                       "fields": _FIELDS, **properties}}
    if "session" in properties:  # an anonymous visitor's: `user` or `session`, or both
        event["anyOf"] = [{"required": ["user"]}, {"required": ["session"]}]
    return event


_EVENT = {"anyOf": [
    _event("item", "item", item=_ID),
    _event("user", "user", user=_ID),
    _event("interaction", "item", "type", user=_ID, session=_ID, item=_ID,
           type={"type": "string", "minLength": 1, "maxLength": MAX_TYPE_LENGTH},
           ranking=_ID,
           value={"type": "number"}),
    _event("ranking", "items", user=_ID, session=_ID, items={
        "type": "array", "minItems": 1, "maxItems": MAX_RANKING_ITEMS, "items": {
            "type": "object", "required": ["id"], "properties": {"id": _ID}}}),
]}
_ITEM = {"event": "item", "id": "item-42-v1", "timestamp": "2026-12-01T09:30:00Z",
         "item": "42", "fields": [{"name": "color", "value": "red"}]}
_CLICK = {"event": "interaction", "id": "e-1001", "timestamp": 1796117400000, "user": "u7",
          "session": "s-9", "item": "42", "type": "click"}
# The body is one event or an array of them: documentation tools draw each alternative's
# sample from these (generated from the schema instead, an array alternative's sample is a
# guess that ReDoc warns about in the browser console)
_EXAMPLES = {"one": {"summary": "one event", "value": _CLICK},
             "several": {"summary": "an array of events", "value": [_ITEM, _CLICK]}}
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"anyOf": [_EVENT, {
        "type": "array", "minItems": 1, "maxItems": MAX_EVENTS_PER_CALL, "items": _EVENT}]},
        "examples": _EXAMPLES},
    "application/x-ndjson": {"schema": {"type": "string", "description": "JSON Lines"},
                             "example": "\n".join(json.dumps(e) for e in (_ITEM, _CLICK))}}}}


def _decode(body: bytes) -> list[Any] | JSONResponse:
    body = without_bom(body)
    try:
        parsed = loads_named(body)
    except json.JSONDecodeError:
        return _decode_lines(body)
    events = parsed if isinstance(parsed, list) else [parsed]
    if gives_a_key_twice(body, parsed):
        return _repeated(repeated_key(body), isinstance(parsed, list))
    return events


def _decode_lines(body: bytes) -> list[Any] | JSONResponse:
    events, lines = [], []
    for number, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            events.append(loads_named(line))
        except json.JSONDecodeError as exc:
            return problem(422, "body", f"line {number + 1} is not JSON: {exc}", len(events))
        lines.append(line)
    if gives_a_key_twice(body, events):  # the whole body at once: one pass, not one a line
        for index, line in enumerate(lines):
            if (where := repeated_key(line)) is not None:
                return _twice(where, index)
    return events


def _repeated(where: str | None, listed: bool) -> JSONResponse:
    """The refusal of a body that gives a name twice in one object (`where`: its field path
    in the body, `[3].user` in an array)."""
    index = 0
    if listed and where is not None:
        position, _, where = where[1:].partition("]")
        index, where = int(position), where.removeprefix(".")
    return _twice(where or "body", index)


def _twice(field: str, index: int | None) -> JSONResponse:
    return problem(422, field, "given twice in one object; send it once (a JSON reader would "
                   "keep only the last value, silently)", index)


@router.post("/events", status_code=200, openapi_extra=_BODY)
async def post_events(request: Request, principal: Writer, service: ServiceDep,
                      metrics: MetricsDep) -> JSONResponse:
    """Accept events; 200 means every one of them is on disk in the raw event log.

    Events without `tenant` go to the key's tenant; a key for one tenant writes only there.
    """
    try:
        body = await request.body()  # bounded and depth-checked by the BodyLimits middleware
    except ClientDisconnect:  # the client went away: nothing was acknowledged, nothing stored
        return JSONResponse({}, status_code=499)
    if len(body) > MAX_BODY_BYTES:
        return problem(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    raws = _decode(body)
    if isinstance(raws, JSONResponse):
        return raws
    if not raws:
        return problem(422, "body", "no events: send an event, a JSON array or JSON Lines")
    if len(raws) > MAX_EVENTS_PER_CALL:
        return problem(413, "body", f"at most {MAX_EVENTS_PER_CALL} events per call")
    events, errors = parse_batch(raws, principal.default_tenant)
    if errors:
        for e in errors:
            metrics.events.labels("rejected", "unknown", "unknown", field_label(e["field"])).inc()
        return JSONResponse({"detail": errors}, status_code=422)
    denied = [{"index": i, "field": "tenant",
               "reason": f"this key may not write to tenant {e['tenant']!r}"}
              for i, e in enumerate(events) if not principal.covers(e["tenant"])]
    if denied:
        metrics.refused.labels("403").inc()
        return JSONResponse({"detail": denied}, status_code=403)
    try:
        await run_in_threadpool(service.accept, events)
    except LogWriteError as exc:
        return problem(503, "body", f"events not stored, retry later: {exc}",
                       headers={"Retry-After": RETRY_AFTER_SECONDS})
    for event in events:
        metrics.events.labels("accepted", event["event"], event["tenant"], "").inc()
    return JSONResponse({"accepted": len(events)})
