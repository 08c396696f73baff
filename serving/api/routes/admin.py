"""Operator routes, for admin keys: event trackers and an immediate registry poll."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from serving.api.bodies import JsonBody
from serving.api.deps import Admin, ServiceDep
from serving.api.errors import RELOAD_BEHIND, responses
from serving.api.routes.health import Readiness
from sluice.intake.trackers import TrackerError
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


@router.post("/reload", responses=RELOAD_BEHIND)
async def reload_models(principal: Admin, service: ServiceDep) -> Readiness:
    """Poll the model registry now (rather than at the next interval), in every serving
    process of the home (`sluice serve --workers N`), not only the one this request reached:
    the answer comes once each serves the registry as it is now (503 naming those of this
    host that had not within `serving.reload_wait_seconds`); answers readiness."""
    await run_in_threadpool(service.reload_models)
    return Readiness.model_validate(service.readiness())
