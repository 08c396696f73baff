"""What a recommendation is asked with and answered by: the request, the slots, the answer and
its counts, the answer ids, and the errors naming what is wrong with a request.

The counts of docs/architecture.md are derived from the slots, so their relationships hold by
construction.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import InputError
from sluice.filters import Rule
from sluice.vocabulary import (
    DEFAULT_NUM_RESULTS,
    DEFAULT_TENANT,
    FALLBACK,
    MODEL_FALLBACK,
    MODEL_NON_PERSONALIZED,
    MODEL_PERSONALIZED,
    PERSONALIZED,
    SOURCES,
)

MAX_CONTEXT = 32
MAX_CONTEXT_NAME = 64


class RecommendationError(InputError):
    """A recommendation parameter (template, num_results, item_id, context) that is wrong."""


class NeedsScan(Exception):  # a signal to the caller, not a failure
    """The answer needs a pass over the whole catalog, and the caller asked for none.

    Raised by `Recommender.recommend(..., scan=False)`: a caller on an event loop answers
    the common case at once and hands this one to a thread.
    """


class _Ids:
    """Unique 32-hex-digit answer ids: 16 random digits drawn once per process, then a count.

    A uuid4 per answer reads os.urandom each time, about 25 us here: a tenth of an answer.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():  # a new process (a forked worker) draws its own prefix
            self._prefix, self._count, self._pid = os.urandom(8).hex(), itertools.count(), (
                os.getpid())
        return f"{self._prefix}{next(self._count):016x}"


new_id = _Ids()


@dataclass(slots=True)
class Slot:
    item_id: str
    score: float
    position: int
    recommendation_source: str
    # the probability that the policy put this item at this position (sluice.serve.exploration)
    propensity: float = 1.0
    explored: bool = False  # an exploration draw of the model tier (its source stays the tier's)
    arm: str | None = None  # the experiment arm that placed the slot (sluice.experiments)


@dataclass
class RecommendationRequest:
    tenant: str = DEFAULT_TENANT
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    template: str = PERSONALIZED  # the built-in template whose chain answers
    template_name: str | None = None  # the configured template the request named, if any
    num_results: int = DEFAULT_NUM_RESULTS
    fill_with_random: bool = True
    exclude_seen: bool = True
    exclude_ids: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)  # logged with the answer
    exploration: float = 0.0  # the template's exploration.share (0: off)


def parse_context(raw: Any, where: str = "context", max_names: int = MAX_CONTEXT,
                  max_name: int = MAX_CONTEXT_NAME) -> dict[str, str]:
    """The request's context (device, page, ...): up to 32 short string values by name
    (Personalize's GetRecommendations: 150 names of 150 characters).

    It does not change the ranking; it is logged with the answer so that outcomes can be
    read by context."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > max_names:
        raise RecommendationError(where, f"a map of at most {max_names} names to strings")
    for name, value in raw.items():
        if not isinstance(name, str) or not 0 < len(name) <= max_name:
            raise RecommendationError(where, f"names are strings of 1 to {max_name} characters")
        if not isinstance(value, str) or len(value) > 1000:
            raise RecommendationError(f"{where}.{name}", "a string of at most 1000 characters")
    return dict(raw)


@dataclass
class Answer:
    recommendation_id: str
    model_version: str | None
    template: str
    items: list[Slot]
    exploration_pool: int = 0  # the model tier's exploration pool (0: no exploration)
    experiment: str | None = None
    arm: str | None = None
    arm_share: float | None = None
    unit: str | None = None  # the experiment's unit (sluice.experiments.UNITS), logged
    _counts: dict[str, int] | None = field(default=None, init=False, repr=False)

    def counts(self) -> dict[str, int]:
        if self._counts is None:
            self._counts = self._count()
        return self._counts

    def _count(self) -> dict[str, int]:
        by = dict.fromkeys(SOURCES, 0)
        for slot in self.items:
            by[slot.recommendation_source] += 1
        personalized = by[MODEL_PERSONALIZED]
        non_personalized = by[MODEL_NON_PERSONALIZED] + by[MODEL_FALLBACK]
        return {
            "personalized_count": personalized,
            "model_personalized_count": by[MODEL_PERSONALIZED],
            "model_non_personalized_count": by[MODEL_NON_PERSONALIZED],
            "model_fallback_count": by[MODEL_FALLBACK],
            "fallback_count": by[FALLBACK],
            "non_personalized_count": non_personalized,
            "total": personalized + non_personalized + by[FALLBACK],
        }

    def as_dict(self) -> dict[str, Any]:
        found = {"recommendation_id": self.recommendation_id,
                 "model_version": self.model_version, "template": self.template,
                 "items": [_slot_dict(slot) for slot in self.items], **self.counts()}
        if self.experiment is not None:  # additive: answers outside experiments are unchanged
            found["experiment"], found["arm"] = self.experiment, self.arm
            found["experiment_unit"] = self.unit
        return found


def _slot_dict(slot: Slot) -> dict[str, Any]:
    found = {"item_id": slot.item_id, "score": slot.score, "position": slot.position,
             "recommendation_source": slot.recommendation_source,
             "propensity": slot.propensity, "explored": slot.explored}
    if slot.arm is not None:
        found["arm"] = slot.arm
    return found
