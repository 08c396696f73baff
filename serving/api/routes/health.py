"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from serving.api.deps import ServiceDep

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    """Whether a champion is loaded, and per tenant its model's state (version, error)."""

    ready: bool
    models: dict[str, dict[str, Any]]


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={
    200: {"model": Readiness, "description": "a champion model is loaded"},
    503: {"model": Readiness, "description": "no champion loaded yet: answers come from the "
                                             "popular and random tiers; `models` says why"}})
def ready(service: ServiceDep) -> JSONResponse:
    """200 once a champion model is loaded; 503 (with the reason) while answers are fallbacks."""
    body = service.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
