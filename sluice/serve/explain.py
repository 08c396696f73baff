"""Explaining one answer: per slot its source, the tier's reason and the propensity, with the
model version and its lineage.

The last RECENT answers of this process are kept in memory (the common case: an answer asked
about soon after it was served, by the worker that served it). Any other answer is read back
from the raw log, which keeps every answer for good as the `recommendation` event dbt reads:
whichever worker, replica or process lifetime served it. That search scans the segments
newest first (a byte search, no parse), so an old answer in a large log costs a pass over the
newer segments; serving never opens the warehouse for it.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sluice.experiments import INTERLEAVED
from sluice.intake.eventlog import read_complete, segments
from sluice.serve.answers import Answer, Slot
from sluice.vocabulary import DEFAULT_TENANT, FALLBACK, MODEL_FALLBACK, SIMILAR_ATTRIBUTES

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

    def get(self, recommendation_id: str) -> tuple[str, Answer] | None:
        with self._lock:
            return self._answers.get(recommendation_id)


def logged_answer(root: Path | str, recommendation_id: str) -> tuple[str, Answer] | None:
    """The answer as the raw log at `root` holds it (its tenant too), or None when no
    `recommendation` event has that id (sluice.serve.answer_log writes them)."""
    needle = b'"event":"recommendation","id":' + orjson.dumps(recommendation_id) + b","
    listed: list[Path | str] = list(segments(root))
    for path in reversed(listed):
        try:
            line = _line_with(path, needle)
        except FileNotFoundError:  # a segment removed while listed: the next one
            continue
        if line is not None:
            event = orjson.loads(line)
            return str(event.get("tenant") or DEFAULT_TENANT), _from_event(event)
    return None


def _line_with(path: Path | str, needle: bytes) -> bytes | None:
    """The last complete line of the segment that holds `needle`."""
    if isinstance(path, Path):  # local: mapped, not read into memory
        with open(path, "rb") as handle:
            if handle.seek(0, 2) == 0:
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _around(data, needle)
    read, _ = read_complete(path, 0)
    return _around(read, needle)


def _around(data: Any, needle: bytes) -> bytes | None:
    at = data.rfind(needle)
    if at < 0:
        return None
    end = data.find(b"\n", at)
    if end < 0:  # a torn last line: not a logged answer yet
        return None
    return bytes(data[data.rfind(b"\n", 0, at) + 1:end])


def _from_event(event: dict[str, Any]) -> Answer:
    fields = event.get("fields") or {}
    slots = [Slot(item_id=str(i["id"]), score=float(i.get("score") or 0.0),
                  position=int(i["position"]), recommendation_source=str(i["source"]),
                  propensity=float(i.get("propensity", 1.0)), explored=bool(i.get("explored")),
                  arm=i.get("arm")) for i in event.get("items") or []]
    return Answer(recommendation_id=str(event["id"]),
                  model_version=fields.get("model_version") or None,
                  template=str(fields.get("template", "")), items=slots,
                  exploration_pool=int(fields.get("exploration_pool") or 0),
                  experiment=fields.get("experiment"), arm=fields.get("arm") or None,
                  arm_share=fields.get("arm_share"), unit=fields.get("unit"))


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


def drafted(slot: Slot) -> dict[str, Any]:
    """An interleaved slot: its position is team draft's, not its arm's rank."""
    return {"tier": "interleaving", "why": f"team draft: placed by arm {slot.arm}, its next "
            "item not yet taken", "score": slot.score, "propensity": slot.propensity}


def _no_index(answer: Answer, lineage: dict[str, Any] | None) -> str | None:
    """Why a similar_attributes answer's version has no attribute index (the training note),
    or None."""
    attributes = (lineage or {}).get("attributes") or {}
    if answer.template != SIMILAR_ATTRIBUTES or attributes.get("fields_source") != "none":
        return None
    return attributes.get("note") or "the model has no attribute index"


class Lineages:
    """What a registered version learned from (MLflow, read once per version when asked);
    for an interleaved answer's version ("3+4"), each arm's."""

    def __init__(self, tracking_uri: str, model_name: Callable[[str], str]):
        self._uri, self._name = tracking_uri, model_name
        self._found: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, tenant: str, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        if "+" in version:
            return {"versions": {v: self.get(tenant, v) for v in version.split("+") if v}}
        found = self._found.get((tenant, version))
        if found is None:
            from sluice.learn.tracking import lineage  # MLflow, only when asked

            try:
                found = lineage(self._uri, self._name(tenant), version)
            except Exception as exc:  # the answer is still explained without it
                return {"error": f"lineage unavailable: {exc}"[:300]}
            self._found[(tenant, version)] = found
        return found


def explain(tenant: str, answer: Answer, lineage: dict[str, Any] | None) -> dict[str, Any]:
    why = drafted if answer.arm == INTERLEAVED else reason
    items: list[dict[str, Any]] = [
        {"item_id": s.item_id, "position": s.position,
         "recommendation_source": s.recommendation_source, "arm": s.arm,
         "explored": s.explored, "reason": why(s)} for s in answer.items]
    note = _no_index(answer, lineage)
    for item in items if note else []:  # random slots of an answer that had no index
        if item["recommendation_source"] == FALLBACK:
            item["reason"]["why"] = f"{item['reason']['why']}: {note}"
    return {"recommendation_id": answer.recommendation_id, "tenant": tenant,
            "template": answer.template, "model_version": answer.model_version,
            "lineage": lineage, "exploration_pool": answer.exploration_pool,
            "experiment": answer.experiment, "arm": answer.arm, "experiment_unit": answer.unit,
            "items": items}
