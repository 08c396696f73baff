"""The FastAPI app: routers over one `sluice.service.Service`, built in the lifespan handler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serving.api.metrics import Metrics, instrument
from serving.api.routes import events, health, personalize, recommendations
from sluice.service import Service
from sluice.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    service = Service(settings)
    service.start()
    app.state.service = service
    logging.getLogger("sluice").info("serving on %s:%s, ready=%s", settings.host, settings.port,
                                     service.ready)
    try:
        yield
    finally:
        service.stop()


def create_app() -> FastAPI:
    app = FastAPI(title="Sluice", version="0.1.0", lifespan=lifespan,
                  summary="Self-hosted recommendations with per-slot sources")
    app.state.metrics = Metrics()
    instrument(app)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(recommendations.router)
    app.include_router(personalize.router)
    return app


app = create_app()
