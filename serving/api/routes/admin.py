"""Operator routes, for admin keys: event trackers and an immediate registry poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from serving.api.bodies import JsonBody
from serving.api.deps import Admin, ServiceDep
from serving.api.errors import Problems, responses
from serving.api.routes.health import Readiness
from sluice.intake.trackers import TrackerError
from sluice.serve.reloads import WAIT_SECONDS
from sluice.vocabulary import TENANT_PATTERN

router = APIRouter(prefix="/admin", tags=["admin"], responses=responses(401, 403, 413, 422))


class NewTracker(JsonBody):
    tenant: str = Field(pattern=TENANT_PATTERN,
                        description="the dataset group the tracker writes into")


class Tracker(BaseModel):
    tracking_id: str
    tenant: str


@router.get("/trackers")
def list_trackers(principal: Admin, service: ServiceDep) -> list[Tracker]:
    """Event trackers (trackingId -> tenant) of the tenants this key covers."""
    return [Tracker(tracking_id=tracking_id, tenant=tenant)
            for tracking_id, tenant in sorted(service.trackers.all().items(), key=lambda t: t[1])
            if principal.covers(tenant)]


@router.post("/trackers", status_code=201, responses=responses(409, 415))
def create_tracker(body: NewTracker, principal: Admin, service: ServiceDep) -> Tracker:
    """Create the event tracker of a tenant; its trackingId authorises PutEvents."""
    principal.require("admin", body.tenant)
    try:
        tracking_id = service.trackers.create(body.tenant)
    except TrackerError as exc:
        raise HTTPException(409, [{"field": "tenant", "reason": str(exc)}]) from None
    return Tracker(tracking_id=tracking_id, tenant=body.tenant)


RELOAD_BEHIND: dict[int | str, dict[str, Any]] = {503: {
    "model": Problems,
    "description": "a serving process of this host had not reloaded in time (it moves at its "
                   "next poll)"}}


@router.post("/reload", responses=RELOAD_BEHIND)
async def reload_models(principal: Admin, service: ServiceDep) -> Readiness:
    """Poll the model registry now (rather than at the next interval), in every serving
    process of the home (`sluice serve --workers N`), not only the one this request reached:
    the answer comes once each serves the registry as it is now; answers readiness."""
    behind = await run_in_threadpool(service.reload_models)
    if behind:
        raise HTTPException(503, [{"field": "workers", "reason": (
            f"serving processes {', '.join(map(str, behind))} had not loaded the registry's "
            f"models within {WAIT_SECONDS:.0f} s (this one has); they move at their next "
            "poll: retry, or see their log")}])
    return Readiness.model_validate(service.readiness())
