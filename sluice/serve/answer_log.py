"""Every answer goes back into the raw log as a `recommendation` event, so clicks carrying its
id are attributed to the slot and source in dbt. Answers are queued and written in batches
off the request path; a full queue drops (and says so) rather than slowing answers."""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from sluice.intake.eventlog import EventLog
from sluice.serve.answers import Answer, RecommendationRequest

log = logging.getLogger(__name__)


class AnswerLog:
    def __init__(self, events: EventLog, capacity: int = 100_000):
        self.events = events
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)

    def record(self, request: RecommendationRequest, answer: Answer) -> None:
        try:
            self._queue.put_nowait(recommendation_event(request, answer))
        except queue.Full:
            log.warning("recommendation log queue full: answer %s not logged",
                        answer.recommendation_id)

    def drain(self) -> None:
        batch = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self.events.append(batch)
            except OSError as exc:
                log.warning("could not log %d recommendation events: %s", len(batch), exc)


def recommendation_event(request: RecommendationRequest, answer: Answer) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "recommendation", "id": answer.recommendation_id,
        "timestamp": int(time.time() * 1000), "tenant": request.tenant,
        "items": [{"id": s.item_id, "score": s.score, "position": s.position,
                   "source": s.recommendation_source, "propensity": s.propensity,
                   **({"explored": True} if s.explored else {})} for s in answer.items],
        "fields": {"template": answer.template, "model_version": answer.model_version or "",
                   "action": "impression", **answer.counts()},
    }
    if answer.experiment is not None:
        event["fields"].update(experiment=answer.experiment, arm=answer.arm or "")
        if answer.unit is not None:  # the marts count the unit assignment hashed by it
            event["fields"]["unit"] = answer.unit
        if answer.arm_share is not None:
            event["fields"]["arm_share"] = answer.arm_share
        for slot, logged in zip(answer.items, event["items"], strict=True):
            if slot.arm:
                logged["arm"] = slot.arm
    if answer.exploration_pool:
        event["fields"]["exploration_share"] = request.exploration
        event["fields"]["exploration_pool"] = answer.exploration_pool
    for name, value in (request.context or {}).items():  # flat: event fields hold no maps
        event["fields"][f"context.{name}"] = value
    if request.user_id:
        event["user"] = request.user_id
    if request.session_id:
        event["session"] = request.session_id
    if not request.user_id and not request.session_id:
        event["session"] = f"anonymous-{answer.recommendation_id}"
    return event
