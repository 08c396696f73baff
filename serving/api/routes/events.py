"""Native intake: Metarank-style events, one, an array, or JSON Lines."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from serving.api.deps import MetricsDep, ServiceDep
from sluice.eventlog import LogWriteError
from sluice.events import parse_batch

router = APIRouter(prefix="/v1", tags=["events"])

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_CALL = 10_000


def _error(status: int, field: str, reason: str, index: int | None = None) -> JSONResponse:
    detail: dict[str, Any] = {"field": field, "reason": reason}
    if index is not None:
        detail["index"] = index
    return JSONResponse({"detail": [detail]}, status_code=status)


def _decode(body: bytes) -> list[Any] | JSONResponse:
    try:
        parsed = orjson.loads(body)
        return parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError:
        pass
    events = []
    for number, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            return _error(422, "body", f"line {number + 1} is not JSON: {exc}", len(events))
    return events


@router.post("/events", status_code=200)
async def post_events(request: Request, service: ServiceDep, metrics: MetricsDep) -> JSONResponse:
    """Accept events; 200 means every one of them is on disk in the raw event log."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _error(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    try:
        body = await request.body()
    except ClientDisconnect:  # the client went away: nothing was acknowledged, nothing stored
        return JSONResponse({}, status_code=499)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    raws = _decode(body)
    if isinstance(raws, JSONResponse):
        return raws
    if not raws:
        return _error(422, "body", "no events: send an event, a JSON array or JSON Lines")
    if len(raws) > MAX_EVENTS_PER_CALL:
        return _error(413, "body", f"at most {MAX_EVENTS_PER_CALL} events per call")
    events, errors = parse_batch(raws)
    if errors:
        for e in errors:
            metrics.events.labels("rejected", "unknown", "default", e["field"]).inc()
        return JSONResponse({"detail": errors}, status_code=422)
    try:
        await run_in_threadpool(service.accept, events)
    except LogWriteError as exc:
        return _error(503, "body", f"events not stored, retry later: {exc}")
    for event in events:
        metrics.events.labels("accepted", event["event"], event["tenant"], "").inc()
    return JSONResponse({"accepted": len(events)})
