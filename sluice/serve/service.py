"""The serving runtime without any web framework: models, the followed log, intake, answers.

`serving/` wraps this in FastAPI. Every worker process runs its own Service: it follows the
raw log (so events written by any worker reach it within a poll) and polls the registry for
a moved `champion` alias, swapping models without stopping answers.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.auth import KeyTable
from sluice.bundle import ModelBundle
from sluice.filters import NamedFilters, parse_conditions, parse_expression
from sluice.intake.eventlog import EventLog, LogFollower
from sluice.intake.trackers import Trackers
from sluice.learn import registry
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import (
    TEMPLATES,
    Answer,
    LoadedModel,
    RecommendationError,
    Recommender,
    Request,
    parse_context,
)
from sluice.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    tenant: str
    version: str | None = None
    loaded_at: float | None = None
    error: str | None = None
    cutoff_ms: int | None = None
    trained_at_ms: int | None = None


@dataclass
class Service:
    settings: Settings
    state: RealtimeState = field(init=False)
    models: dict[str, ModelStatus] = field(default_factory=dict)

    def __post_init__(self) -> None:
        app = self.settings.app
        self.state = RealtimeState(app.events.anonymous_user_prefix)
        self.log = EventLog(self.settings.raw_location)
        self.follower = LogFollower(self.settings.raw_location)
        self._recommenders: dict[str, Recommender] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=100_000)
        self.trackers = Trackers(self.settings)
        self.keys = KeyTable.from_settings(self.settings)
        self.filters = NamedFilters(app.filters, self.settings.home / "filters.json")

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        self.refresh_models()
        self.follow_log()
        if background:
            for target, name in ((self._follow_loop, "log-follower"),
                                 (self._model_loop, "model-poller"),
                                 (self._answer_loop, "answer-logger")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._drain_answers()
        self.log.close()

    @property
    def ready(self) -> bool:
        return any(m.version for m in self.models.values())

    def readiness(self) -> dict[str, Any]:
        return {"ready": self.ready,
                "models": {t: m.__dict__ for t, m in sorted(self.models.items())}}

    # --- models ------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        known = {"default", *self.trackers.tenants(), *self.models}
        prefix = f"{self.settings.app.model.name}-"
        try:
            client = registry.client(self.settings.mlflow_tracking_uri)
            for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
                known.add(model.name.removeprefix(prefix))
        except Exception as exc:  # the registry being down must not stop serving
            log.warning("model registry unreachable: %s", exc)
            registry.reset_connections(self.settings.mlflow_tracking_uri)
        return sorted(known)

    def refresh_models(self) -> None:
        for tenant in self.tenants():
            self._refresh(tenant)

    def _refresh(self, tenant: str) -> None:
        status = self.models.setdefault(tenant, ModelStatus(tenant))
        name = self.settings.registered_model_name(tenant)
        try:
            client = registry.client(self.settings.mlflow_tracking_uri)
            version = registry.alias_version(client, name, registry.CHAMPION)
            if version is None:
                status.error = status.error or f"no models:/{name}@champion yet"
                return
            if str(version.version) == status.version:
                return
            target = self.settings.home / "serving-models" / name / str(version.version)
            if not (target / "ready").exists():
                registry.download_alias(self.settings.mlflow_tracking_uri, name,
                                        registry.CHAMPION, dst=target)
                (target / "ready").touch()
            try:
                bundle = ModelBundle.load(target)
            except Exception:
                shutil.rmtree(target, ignore_errors=True)  # download again at the next poll
                raise
        except Exception as exc:  # a broken store or artifact: keep answering from fallbacks
            registry.reset_connections(self.settings.mlflow_tracking_uri)
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            status.error = f"champion of {name} could not be loaded: {type(exc).__name__}: {reason}"
            log.warning(status.error)
            return
        previous = self._recommenders.get(tenant)
        self._recommenders[tenant] = self._recommender(tenant, LoadedModel(
            bundle, str(version.version), self.settings.app.serving.ranking_cache_size))
        if previous is not None and previous.model is not None:
            # requests already holding the old model finish on it; then its scorer stops
            threading.Timer(30.0, previous.model.close).start()
        status.version, status.loaded_at, status.error = str(version.version), time.time(), None
        status.cutoff_ms = bundle.meta.get("cutoff_ms")
        status.trained_at_ms = bundle.meta.get("trained_at_ms")
        log.info("serving %s v%s", name, version.version)

    def _recommender(self, tenant: str, model: LoadedModel | None) -> Recommender:
        return Recommender(tenant, model, self.state, self.settings.app.events.weights)

    def answer_paths(self) -> dict[str, dict[str, int]]:
        """Per tenant, how the served model's personalized answers were filled since it loaded."""
        return {tenant: dict(r.model.paths) for tenant, r in list(self._recommenders.items())
                if r.model is not None}

    def recommender(self, tenant: str) -> Recommender:
        found = self._recommenders.get(tenant)
        if found is None:
            found = self._recommenders.setdefault(tenant, self._recommender(tenant, None))
        return found

    # --- events ------------------------------------------------------------------------------
    def accept(self, events: list[dict[str, Any]]) -> int:
        """Durably append parsed events, then apply them here at once."""
        self.log.append(events)
        self.state.apply(events)
        return len(events)

    def follow_log(self) -> int:
        # answers logged back (most of the log under read load) change no state: skip them
        # unparsed; the log is written by orjson, so the marker has no spaces to vary
        return self.state.apply(self.follower.poll(skip=(b'"event":"recommendation"',)))

    # --- answers -----------------------------------------------------------------------------
    def request(self, *, tenant: str = "default", template: str = "personalized",
                filters: list[Any] | None = None, filter_name: str | None = None,
                filter_values: dict[str, str] | None = None, **fields: Any) -> Request:
        """A Request with the template's chain, defaults and static filters resolved.

        Raises FilterError / RecommendationError naming the field at fault.
        """
        recommender = self.recommender(tenant)
        known: set[str] = set()
        if filters or filter_name is not None:  # the field names are only needed to check them
            known = recommender.known_fields() | set(self.settings.app.events.item_fields)
        rules = []
        configured = self.settings.app.templates.get(template)
        if configured is not None:
            rules += parse_conditions(configured.filters, where=f"templates.{template}.filters")
            for key in ("num_results", "fill_with_random"):
                if getattr(configured, key) is not None and fields.get(key) is None:
                    fields[key] = getattr(configured, key)
            template = configured.base
        elif template not in TEMPLATES:
            names = [*TEMPLATES, *self.settings.app.templates]
            raise RecommendationError("template", f"must be one of {', '.join(names)}")
        rules += parse_conditions(filters, known)
        if filter_name is not None:
            expression = self.filters.get(filter_name)
            if expression is None:
                raise LookupError(f"filterArn: no filter named {filter_name!r}")
            rules += parse_expression(expression, filter_values or {}, known)
        fields = {k: v for k, v in fields.items() if v is not None}
        fields["context"] = parse_context(fields.get("context"))
        return Request(tenant=tenant, template=template, rules=rules, **fields)

    def recommend(self, request: Request, scan: bool = True) -> Answer:
        """The answer, logged back; with scan=False, NeedsScan when it needs a catalog pass."""
        answer = self.recommender(request.tenant).recommend(request, scan=scan)
        self._log_answer(request, answer)
        return answer

    def rank(self, request: Request, item_ids: list[str]) -> Answer:
        answer = self.recommender(request.tenant).rank(request, item_ids)
        self._log_answer(request, answer)
        return answer

    def _log_answer(self, request: Request, answer: Answer) -> None:
        event: dict[str, Any] = {
            "event": "recommendation", "id": answer.recommendation_id,
            "timestamp": int(time.time() * 1000), "tenant": request.tenant,
            "items": [{"id": s.item_id, "score": s.score, "position": s.position,
                       "source": s.recommendation_source} for s in answer.items],
            "fields": {"template": answer.template, "model_version": answer.model_version or "",
                       "action": "impression", **answer.counts()},
        }
        for name, value in (request.context or {}).items():  # flat: event fields hold no maps
            event["fields"][f"context.{name}"] = value
        if request.user_id:
            event["user"] = request.user_id
        if request.session_id:
            event["session"] = request.session_id
        if not request.user_id and not request.session_id:
            event["session"] = f"anonymous-{answer.recommendation_id}"
        try:
            self._answers.put_nowait(event)
        except queue.Full:
            log.warning("recommendation log queue full: answer %s not logged",
                        answer.recommendation_id)

    def _drain_answers(self) -> None:
        batch = []
        while True:
            try:
                batch.append(self._answers.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self.log.append(batch)
            except OSError as exc:
                log.warning("could not log %d recommendation events: %s", len(batch), exc)

    # --- loops -------------------------------------------------------------------------------
    def _follow_loop(self) -> None:
        while not self._stop.wait(self.settings.app.serving.log_poll_seconds):
            try:
                self.follow_log()
            except Exception as exc:
                log.warning("following the raw log failed: %s", exc)

    def _model_loop(self) -> None:
        while not self._stop.wait(self.settings.app.serving.model_poll_seconds):
            self.refresh_models()

    def _answer_loop(self) -> None:
        while not self._stop.wait(0.05):
            self._drain_answers()
