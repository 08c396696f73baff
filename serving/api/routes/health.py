"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.api.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready")
def ready(service: ServiceDep) -> JSONResponse:
    """200 once a champion model is loaded; 503 (with the reason) while answers are fallbacks."""
    body = service.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
