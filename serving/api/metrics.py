"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "sluice_request_seconds", "Request latency by route", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.events = Counter(
            "sluice_events_total", "Events by outcome", ["outcome", "event_type", "tenant",
                                                         "reason"], registry=self.registry)
        self.slots = Counter("sluice_recommendation_slots_total", "Slots served by source",
                             ["tenant", "source"], registry=self.registry)
        self.model_version = Gauge("sluice_model_version", "Champion version served",
                                   ["tenant"], registry=self.registry)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def instrument(app: FastAPI) -> None:
    @app.middleware("http")
    async def _timed(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.metrics.latency.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics."""
        service = getattr(app.state, "service", None)
        if service is not None:
            for tenant, status in service.models.items():
                if status.version:
                    app.state.metrics.model_version.labels(tenant).set(float(status.version))
        return app.state.metrics.render()
