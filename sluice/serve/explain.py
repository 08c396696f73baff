"""Explaining one answer: per slot its source, the tier's reason and the propensity, with the
model version and its lineage. Answers are kept in memory, the last RECENT of this process:
with several workers, an answer is found by the worker that served it (the raw log keeps
every answer for good, as the `recommendation` event dbt reads)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sluice.errors import NotFoundError
from sluice.serve.answers import Answer, Slot
from sluice.vocabulary import FALLBACK, MODEL_FALLBACK

RECENT = 10_000


class RecentAnswers:
    """The last `capacity` answers of this process, by recommendation id."""

    def __init__(self, capacity: int = RECENT):
        self.capacity = capacity
        self._answers: OrderedDict[str, tuple[str, Answer]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, tenant: str, answer: Answer) -> None:
        with self._lock:
            self._answers[answer.recommendation_id] = (tenant, answer)
            if len(self._answers) > self.capacity:
                self._answers.popitem(last=False)

    def get(self, recommendation_id: str) -> tuple[str, Answer]:
        with self._lock:
            found = self._answers.get(recommendation_id)
        if found is None:
            raise NotFoundError("recommendation_id", f"not among the last {self.capacity:,} "
                                "answers of this serving process; read older ones from "
                                "marts.slot_propensities")
        return found


def reason(slot: Slot) -> dict[str, Any]:
    """What the tier that filled the slot did to put this item here."""
    if slot.explored:
        return {"tier": "model", "why": "exploration: drawn uniformly from the model's next "
                "candidates", "model_score": slot.score, "propensity": slot.propensity}
    if slot.recommendation_source == MODEL_FALLBACK:
        return {"tier": "popular", "why": "popular item where the model fell short",
                "popularity": slot.score}
    if slot.recommendation_source == FALLBACK:
        return {"tier": "random", "why": "random catalog draw", "propensity": slot.propensity}
    return {"tier": "model", "why": "the model's ranking", "model_score": slot.score,
            "model_rank": slot.position, "propensity": slot.propensity}


def explain(tenant: str, answer: Answer, lineage: dict[str, Any] | None) -> dict[str, Any]:
    return {"recommendation_id": answer.recommendation_id, "tenant": tenant,
            "template": answer.template, "model_version": answer.model_version,
            "lineage": lineage, "exploration_pool": answer.exploration_pool,
            "items": [{"item_id": s.item_id, "position": s.position,
                       "recommendation_source": s.recommendation_source,
                       "explored": s.explored, "reason": reason(s)} for s in answer.items]}
