"""The FastAPI app: routers over one `Service` (sluice.serve), built in the lifespan handler."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from serving.api import errors
from serving.api.errors import PERSONALIZE_PREFIX
from serving.api.limits import AwsRequestIds, BodyLimits
from serving.api.metrics import Metrics, instrument
from serving.api.routes import (
    admin,
    docs,
    events,
    experiments,
    health,
    personalize,
    recommendations,
)
from sluice import formats, logs
from sluice.auth import is_loopback
from sluice.serve.service import Service
from sluice.settings import get_settings

log = logging.getLogger("sluice")

BODY_LIMITS = (("/v1/events", events.MAX_BODY_BYTES),
               ("/personalize/events", personalize.MAX_EVENTS_BODY_BYTES),
               ("/personalize/items", personalize.MAX_ITEMS_BODY_BYTES),
               ("/personalize/users", personalize.MAX_USERS_BODY_BYTES),
               ("/personalize/recommendations", personalize.MAX_RECOMMENDATIONS_BODY_BYTES),
               ("/personalize/personalize-ranking", personalize.MAX_RANKING_BODY_BYTES),
               ("/personalize/", personalize.MAX_BODY_BYTES),
               ("/v1/recommendations", recommendations.MAX_BODY_BYTES),
               ("/v1/rank", recommendations.MAX_BODY_BYTES))
DEFAULT_BODY_BYTES = 64 * 1024


class UnsafeBinding(RuntimeError):
    """Auth is off (or only demo keys are set) and SLUICE_HOST is not a loopback address."""


def check_binding(service: Service, host: str) -> None:
    """Refuse to serve beyond loopback without real keys; say when auth is off."""
    keys = service.keys
    if not keys.enabled:
        if not is_loopback(host):
            raise UnsafeBinding(f"auth is off (no API keys configured) and SLUICE_HOST={host} is "
                                "not loopback: configure auth.keys or SLUICE_API_KEYS, or bind "
                                "127.0.0.1")
        log.warning("auth is off: no API keys configured; only loopback clients are served")
    elif keys.demo and not is_loopback(host):
        raise UnsafeBinding(f"the demo keys of config/sluice.yaml are public: replace them "
                            f"(SLUICE_API_KEYS or auth.keys) before binding SLUICE_HOST={host}")
    else:
        log.info("auth is on: %d credentials (%s)", len(keys.principals()),
                 ", ".join(p.name for p in keys.principals()))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logs.configure()
    settings = get_settings()
    formats.check_home(settings.home)  # never a home that a restore is filling
    service = Service(settings)
    check_binding(service, settings.host)
    service.start()
    # Everything imported and loaded so far (FastAPI, MLflow, the model: ~300k objects) lives
    # as long as the process; left to the collector, each full collection walks all of it,
    # a 150 ms stall here every few thousand requests. Frozen, collections walk only what
    # requests allocate.
    gc.collect()
    gc.freeze()
    app.state.service = service
    log.info("serving on %s:%s, ready=%s", settings.host, settings.port, service.ready)
    try:
        yield
    finally:
        service.stop()


def create_app() -> FastAPI:
    # /docs and /redoc from assets installed with fastapi-offline, never a CDN: a self-hosted
    # machine without internet access still gets a working page (/redoc: routes/docs.py)
    app = FastAPIOffline(title="Sluice", version="0.1.0", lifespan=lifespan,
                         summary="Self-hosted recommendations with per-slot sources",
                         static_url=docs.DOCS_ASSETS, redoc_url=None)
    app.state.metrics = Metrics()
    app.add_middleware(BodyLimits, limits=BODY_LIMITS, default=DEFAULT_BODY_BYTES,
                       lenient=("/v1/events", PERSONALIZE_PREFIX),
                       own_depth=(PERSONALIZE_PREFIX,))  # measured as restJson1 reads a body
    instrument(app)
    app.add_middleware(AwsRequestIds)  # outermost: body refusals carry the id too
    errors.install(app)
    app.include_router(docs.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(recommendations.router)
    app.include_router(personalize.router)
    app.include_router(admin.router)
    app.include_router(experiments.router)
    return app


app = create_app()
