"""Prometheus metrics, one registry per app (so tests can build many apps).

With several workers (`sluice serve --workers N`) the launcher sets PROMETHEUS_MULTIPROC_DIR
to a fresh folder per run: each worker writes its values there and a scrape, whichever worker
answers it, reads them all (prometheus-client's multiprocess mode). Counters and histograms
add up; gauges derived at scrape time take the scraping worker's latest value.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterable
from typing import Final

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.vocabulary import FALLBACK, MODEL_FALLBACK, MODEL_PERSONALIZED


class SlotWindow:
    """Slots served per tenant, template and source, in minute buckets: this worker's slots
    over the last `alerts.window_minutes`, by tier (what the tier-share gauge is made of)."""

    KEEP = 7 * 24 * 60  # buckets at most: the longest window config allows

    def __init__(self) -> None:
        self._buckets: deque[tuple[int, Tally[tuple[str, str, str]]]] = deque()
        self._lock = threading.Lock()  # the publishing thread reads while answers add

    def add(self, tenant: str, template: str, sources: Tally[str]) -> None:
        minute = int(time.time() // 60)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != minute:
                self._buckets.append((minute, Tally()))
                if len(self._buckets) > self.KEEP:
                    self._buckets.popleft()
            bucket = self._buckets[-1][1]
            for source, count in sources.items():
                bucket[tenant, template, source] += count

    def counts(self, window_minutes: int) -> dict[tuple[str, str], dict[str, float]]:
        """Per (tenant, template): the window's slots by tier (personalized, fallback, all)."""
        oldest = int(time.time() // 60) - window_minutes
        totals: Tally[tuple[str, str, str]] = Tally()
        with self._lock:
            for minute, bucket in self._buckets:
                if minute > oldest:
                    totals.update(bucket)
        by: dict[tuple[str, str], Tally[str]] = {}
        for (tenant, template, source), count in totals.items():
            by.setdefault((tenant, template), Tally())[source] += count
        return {key: {"personalized": c[MODEL_PERSONALIZED],
                      "fallback": c[MODEL_FALLBACK] + c[FALLBACK], "all": c.total()}
                for key, c in by.items()}


LATEST: Final = "mostrecent"  # multiprocess mode of the gauges each scrape sets
PUBLISH_SECONDS = 5.0  # how stale another worker's window slots may be at a scrape


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.window = SlotWindow()
        self.window_minutes = 60  # alerts.window_minutes, set by the first answer counted
        self._publisher: threading.Thread | None = None
        # every worker publishes its window's slots; livesum adds the live workers' up, so
        # the share that the scraping worker derives from them is the whole server's
        self.window_slots = Gauge(
            "sluice_window_slots", "Slots served over alerts.window_minutes by tier: "
            "personalized (model_personalized), fallback (model_fallback + fallback), all",
            ["tenant", "template", "tier"], registry=self.registry, multiprocess_mode="livesum")
        self.window_shares = Gauge(
            "sluice_window_slot_share", "Share of the slots served over alerts.window_minutes, "
            "by tier: personalized (model_personalized) or fallback (model_fallback + fallback)",
            ["tenant", "template", "tier"], registry=self.registry,
            multiprocess_mode=LATEST)  # set at each scrape from every worker's window_slots
        self.latency = Histogram(
            "sluice_request_seconds", "Request latency by route", ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.events = Counter(
            "sluice_events_total", "Events by outcome", ["outcome", "event_type", "tenant",
                                                         "reason"], registry=self.registry)
        self.slots = Counter("sluice_recommendation_slots_total", "Slots served by source",
                             ["tenant", "source"], registry=self.registry)
        self.experiment_answers = Counter(
            "sluice_experiment_answers_total", "Answers served within an experiment, by arm",
            ["tenant", "experiment", "arm"], registry=self.registry)
        self.refused = Counter("sluice_auth_refused_total", "Requests refused by auth",
                               ["status"], registry=self.registry)
        self.model_version = Gauge("sluice_model_version", "Champion version served",
                                   ["tenant"], registry=self.registry,
                                   multiprocess_mode=LATEST)
        self.model_age = Gauge("sluice_model_age_seconds", "Seconds since the served model was "
                               "trained", ["tenant"], registry=self.registry,
                               multiprocess_mode=LATEST)
        self.data_lag = Gauge("sluice_model_data_lag_seconds", "Seconds since the last event "
                              "the served model was trained on", ["tenant"],
                              registry=self.registry, multiprocess_mode=LATEST)
        self.answer_paths = Gauge(
            "sluice_model_answers", "Personalized answers since the served model loaded, by "
            "how the model tier was filled: precomputed (the trained head), kept (a head "
            "computed earlier here), ann (the approximate index's candidates scored), pass "
            "(every item scored)", ["tenant", "path"],
            registry=self.registry, multiprocess_mode="livesum")
        self.fallback_share = Gauge("sluice_fallback_share", "Share of slots served from the "
                                    "fallback tiers (model_fallback + fallback) since start",
                                    ["tenant"], registry=self.registry,
                                    multiprocess_mode=LATEST)

    def count_window(self, tenant: str, template: str, sources: Tally[str],
                     window_minutes: int) -> None:
        """One answer's slots into the window; a thread publishes the window every
        PUBLISH_SECONDS (busy or idle, so expired minutes drop out of the sum too)."""
        self.window.add(tenant, template, sources)
        self.window_minutes = window_minutes
        if self._publisher is None:
            self._publisher = threading.Thread(target=self._publish_loop, daemon=True,
                                               name="window-slots")
            self._publisher.start()

    def publish_window(self) -> None:
        for (tenant, template), tiers in self.window.counts(self.window_minutes).items():
            for tier, count in tiers.items():
                self.window_slots.labels(tenant, template, tier).set(count)

    def _publish_loop(self) -> None:
        while True:
            time.sleep(PUBLISH_SECONDS)
            self.publish_window()

    def _window_shares(self) -> None:
        """The tier shares from every live worker's published window slots."""
        self.publish_window()
        by: dict[tuple[str, str], dict[str, float]] = {}
        for metric in self._collect():
            if metric.name == "sluice_window_slots":
                for sample in metric.samples:
                    labels = sample.labels
                    by.setdefault((labels["tenant"], labels["template"]), {})[
                        labels["tier"]] = sample.value
        for (tenant, template), tiers in by.items():
            if tiers.get("all"):
                for tier in ("personalized", "fallback"):
                    self.window_shares.labels(tenant, template, tier).set(
                        tiers.get(tier, 0.0) / tiers["all"])

    def refresh(self, models: dict, paths: dict[str, dict[str, int]] | None = None,
                window_minutes: int = 60) -> None:
        """Gauges derived at scrape time: model version and age, fallback share, answer paths,
        the window's tier shares."""
        now = time.time()
        self.window_minutes = window_minutes
        self._window_shares()
        for tenant, by in (paths or {}).items():
            for path, count in by.items():
                self.answer_paths.labels(tenant, path).set(count)
        for tenant, status in models.items():
            if status.version:
                self.model_version.labels(tenant).set(float(status.version))
            if status.trained_at_ms:
                self.model_age.labels(tenant).set(now - status.trained_at_ms / 1000)
            if status.cutoff_ms:
                self.data_lag.labels(tenant).set(now - status.cutoff_ms / 1000)
        totals: dict[str, dict[str, float]] = {}
        for metric in self._collect():
            if metric.name != "sluice_recommendation_slots":
                continue
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    sources = totals.setdefault(sample.labels["tenant"], {})
                    sources[sample.labels["source"]] = sample.value
        for tenant, sources in totals.items():
            served = sum(sources.values())
            if served:
                fallback = sources.get(MODEL_FALLBACK, 0.0) + sources.get(FALLBACK, 0.0)
                self.fallback_share.labels(tenant).set(fallback / served)

    def _registry(self) -> CollectorRegistry:
        """This app's registry, or every worker's values in multiprocess mode."""
        if not multiprocess():
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return merged

    def _collect(self) -> Iterable[Metric]:
        return self._registry().collect()

    def render(self) -> Response:
        return Response(generate_latest(self._registry()), media_type=CONTENT_TYPE_LATEST)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def field_label(field: str) -> str:
    """The top-level field of `items[3].fields.color` for a label: label values stay few."""
    return re.split(r"[.\[]", field, maxsplit=1)[0][:64]


class Timing:
    """Pure ASGI middleware timing each request by route (BaseHTTPMiddleware costs far more)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.latency.labels(method, path, str(status[0])).observe(
                time.perf_counter() - started)


def instrument(app: FastAPI) -> None:
    app.add_middleware(Timing, metrics=app.state.metrics)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics."""
        service = getattr(app.state, "service", None)
        if service is not None:
            app.state.metrics.refresh(service.models, service.answer_paths(),
                                      service.settings.app.alerts.window_minutes)
        return app.state.metrics.render()
