"""The serving runtime without any web framework: models, the followed log, intake, answers.

`serving/` wraps this in FastAPI. Every worker process runs its own Service: it follows the
raw log (so events written by any worker reach it within a poll) and polls the registry for
a moved `champion` alias, swapping models without stopping answers; a reload asked of one
worker reaches them all (`sluice.reloads`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sluice.auth import KeyTable
from sluice.errors import NotFoundError
from sluice.experiments import Arm, Experiments
from sluice.filters import NamedFilters
from sluice.intake.eventlog import EventLog
from sluice.intake.follower import LogFollower
from sluice.intake.trackers import Trackers
from sluice.learn.registry import CHAMPION
from sluice.serve import resolve
from sluice.serve.answer_log import AnswerLog
from sluice.serve.answers import Answer, RecommendationRequest
from sluice.serve.arms import ArmModels, arm_answer
from sluice.serve.champions import Champions, ModelStatus
from sluice.serve.explain import Lineages, RecentAnswers, explain, logged_answer
from sluice.serve.model import LoadedModel
from sluice.serve.polling import RegistryPolls
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.settings import Settings
from sluice.vocabulary import DEFAULT_TENANT

log = logging.getLogger(__name__)
OLD_MODEL_GRACE_SECONDS = 30.0  # requests already holding a swapped-out model finish on it


@dataclass
class Service:
    settings: Settings
    state: RealtimeState = field(init=False)

    def __post_init__(self) -> None:
        app = self.settings.app
        self.state = RealtimeState(app.events.anonymous_user_prefix)
        self.log = EventLog(self.settings.raw_location)
        self.follower = LogFollower(self.settings.raw_location)
        self._recommenders: dict[str, Recommender] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.answers = AnswerLog(self.log)
        self.recent = RecentAnswers()
        self.lineages = Lineages(self.settings.mlflow_tracking_uri,
                                 self.settings.registered_model_name)
        self.trackers = Trackers(self.settings)
        self.champions = Champions(self.settings, self.trackers)
        self.keys = KeyTable.from_settings(self.settings)
        self.filters = NamedFilters(app.filters, self.settings.home / "filters.json")
        self.experiments = Experiments(self.settings.home)
        self.arms = ArmModels(self.settings, self._recommender)
        self.polls = RegistryPolls(self.settings.home, self.champions, self.experiments,
                                   self.arms, self._swap, app.serving.reload_wait_seconds)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Read the log, then load the champions (a model loaded counts what of the log it
        trained on: `attributes.trained_log_counts`); `background`: as a serving process, with the
        loops that follow them, and a reload asked of any process of the home reaching it."""
        if background:  # a reload asked from here on is waited for (`reload_models`)
            self.polls.reloads.done(self.polls.reloads.asked())
        self.follow_log()
        self.refresh_models()
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
        self.answers.drain()
        self.log.close()
        self.polls.reloads.leave()

    @property
    def models(self) -> dict[str, ModelStatus]:
        return self.champions.models

    @property
    def ready(self) -> bool:
        return any(m.version for m in self.models.values())

    def readiness(self) -> dict[str, Any]:
        return {"ready": self.ready,
                "models": {t: m.__dict__ for t, m in sorted(self.models.items())}}

    # --- models ------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        return self.champions.tenants()

    def refresh_models(self) -> None:
        """Poll the registry now (`sluice.serve.polling`)."""
        self.polls.poll()

    def reload_models(self) -> None:
        """`POST /admin/reload`: every serving process of the home polls the registry now
        (`sluice.reloads`); WorkersBehindError names those of this host that had not
        within `serving.reload_wait_seconds`."""
        self.polls.reload()

    def _swap(self, tenant: str, model: LoadedModel) -> None:
        previous = self._recommenders.get(tenant)
        self._recommenders[tenant] = self._recommender(tenant, model)
        if previous is not None and previous.model is not None:
            threading.Timer(OLD_MODEL_GRACE_SECONDS, previous.model.close).start()

    def _recommender(self, tenant: str, model: LoadedModel | None) -> Recommender:
        return Recommender(tenant, model, self.state, self.settings.app.events.weights)

    def install(self, tenant: str, model: LoadedModel | None) -> Recommender:
        """Answer `tenant` from `model` (a batch job's chosen version, or None: its lower
        tiers), not the polled one."""
        self._recommenders[tenant] = found = self._recommender(tenant, model)
        return found

    def answer_paths(self) -> dict[str, dict[str, int]]:
        """Per tenant, how the served model's personalized answers were filled since it loaded."""
        return {tenant: dict(r.model.paths) for tenant, r in list(self._recommenders.items())
                if r.model is not None}

    def recommender(self, tenant: str) -> Recommender:
        """The tenant's recommender; NotFoundError naming `tenant` for one that nothing names
        (kept per tenant for the process's life: a typo must not add one, nor its state)."""
        found = self._recommenders.get(tenant)
        if found is None:
            if not self.knows(tenant):
                raise NotFoundError("tenant", f"no tenant {tenant!r}: no event, event tracker, "
                                    "registered model or API key names it")
            found = self._recommenders.setdefault(tenant, self._recommender(tenant, None))
        return found

    def knows(self, tenant: str) -> bool:
        """The default tenant, and any that has events, a tracker, a model or a key of its own."""
        return (tenant == DEFAULT_TENANT or tenant in self.champions.models
                or self.state.has(tenant) or tenant in self.trackers.tenants()
                or any(p.tenant == tenant for p in self.keys.principals()))

    # --- events ------------------------------------------------------------------------------
    def accept(self, events: list[dict[str, Any]]) -> int:
        """Durably append parsed events, then apply them here at once."""
        self.state.apply(events, self.log.append(events))
        return len(events)

    def follow_log(self) -> int:
        # answers logged back (most of the log under read load) change no state: skip them
        # unparsed; the log is written by orjson, so the marker has no spaces to vary
        positions: list[int] = []
        events = self.follower.poll(skip=(b'"event":"recommendation"',), positions=positions)
        return self.state.apply(events, positions)

    # --- answers -----------------------------------------------------------------------------
    def request(self, *, tenant: str = DEFAULT_TENANT, **given: Any) -> RecommendationRequest:
        """A request with the template's chain, defaults and static filters resolved
        (`sluice.serve.resolve`); raises an InputError naming the field at fault."""
        return resolve.request(self.settings.app, self.filters,
                               lambda: self.recommender(tenant).known_fields(),
                               tenant=tenant, **given)

    def num_results(self, value: Any, where: str = "num_results") -> int:
        return resolve.num_results(self.settings.app.serving, value, where)

    def recommend(self, request: RecommendationRequest, scan: bool = True) -> Answer:
        """The answer, logged back; with scan=False, NeedsScan when it needs a catalog pass."""
        answer = None
        experiment = self.experiments.running(request.tenant, request.template,
                                              name=request.template_name)
        if experiment is not None:
            answer = arm_answer(experiment, request, lambda arm: self._arm(request.tenant, arm),
                                scan)
        if answer is None:
            answer = self.recommender(request.tenant).recommend(request, scan=scan)
        self.answers.record(request, answer)
        self.recent.put(request.tenant, answer)
        return answer

    def _arm(self, tenant: str, arm: Arm) -> Recommender | None:
        if arm.model == CHAMPION:
            found = self.recommender(tenant)
            return found if found.model is not None else None
        return self.arms.get(tenant, arm.model)

    def rank(self, request: RecommendationRequest, item_ids: list[str]) -> Answer:
        answer = self.recommender(request.tenant).rank(request, item_ids)
        self.answers.record(request, answer)
        self.recent.put(request.tenant, answer)
        return answer

    def explain(self, recommendation_id: str) -> tuple[str, dict[str, Any]]:
        """The tenant of a logged answer and, per slot, where it came from and why (this
        process's recent answers first, then the raw log: any worker's, any time)."""
        found = self.recent.get(recommendation_id)
        if found is None:
            self.answers.drain()  # an answer of this process still queued for the log
            found = logged_answer(self.settings.raw_location, recommendation_id)
        if found is None:
            raise NotFoundError("recommendation_id", f"no answer {recommendation_id!r} was "
                                "logged by any worker: use the `recommendation_id` of an answer "
                                "(one served in the last second may still be queued: retry)")
        tenant, answer = found
        return tenant, explain(tenant, answer, self.lineages.get(tenant, answer.model_version))

    # --- loops -------------------------------------------------------------------------------
    def _follow_loop(self) -> None:
        while not self._stop.wait(self.settings.app.serving.log_poll_seconds):
            try:
                self.follow_log()
            except Exception as exc:
                log.warning("following the raw log failed: %s", exc)

    def _model_loop(self) -> None:
        self.polls.loop(self._stop, self.settings.app.serving.model_poll_seconds)

    def _answer_loop(self) -> None:
        while not self._stop.wait(0.05):
            self.answers.drain()
