"""Batch recommendations and segments: the serving tiers run offline over a file of users (or
items, or every user), answer for answer what the API would say at the same moment.

A job builds what a serving worker builds (a `Service` that has read the raw log, the model of
the requested version) and asks the same `Recommender` for every line. What makes it fast is
done before the tiers run: each block of users is scored with one matrix product and the head
of each ranking is handed to the model's head cache, exactly as a serving pass would have kept
it, so the model tier reads it instead of scoring users one by one. Output streams through
`BatchWriter`, one block at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sluice.bundle import ModelBundle
from sluice.errors import InputError, NotFoundError
from sluice.learn import registry
from sluice.serve.answer_log import recommendation_event
from sluice.serve.answers import RecommendationRequest
from sluice.serve.batch_io import (
    BatchWriter,
    InputLine,
    check_source,
    count_lines,
    input_key,
    read_input,
)
from sluice.serve.candidates import Head, head_of
from sluice.serve.model import LoadedModel
from sluice.serve.recommender import Recommender
from sluice.serve.service import Service
from sluice.settings import Settings
from sluice.vocabulary import DEFAULT_TENANT, PERSONALIZED, SIMILAR_ITEMS

log = logging.getLogger(__name__)
BLOCK_FLOATS = 1 << 25  # scores held per block (128 MB of float32): sets the block's rows
HEAD_MARGIN = 8  # items scored beyond the k kept (see _exact_head)
Report = Callable[[dict[str, Any]], None]


@dataclass
class BatchJob:
    """What to answer: the parameters of a recommendation request, for every line."""

    tenant: str = DEFAULT_TENANT
    template: str = PERSONALIZED
    num_results: int | None = None
    filters: list[Any] | None = None          # native conditions
    filter_name: str | None = None            # a named (Personalize) filter ...
    filter_values: dict[str, str] | None = None  # ... and its $PLACEHOLDER values
    fill_with_random: bool | None = None
    model_version: str | None = None          # None: the champion
    log_answers: bool = False                 # log answers as recommendation events
    block_size: int | None = None             # users per block (None: from the catalog size)


class Progress:
    """Rate and time left after each block, handed to `report` (the flow logs it and updates
    a Prefect progress artifact; the CLI prints it)."""

    def __init__(self, total: int | None, report: Report | None):
        self.total, self.report, self.done = total, report, 0
        self.started = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if self.total and rate else None
        if self.report is not None:
            self.report({"done": self.done, "total": self.total, "rate": rate,
                         "elapsed_s": elapsed, "left_s": left})


def no_champion(tenant: str, settings: Settings) -> str:
    name = settings.registered_model_name(tenant)
    return (f"tenant {tenant!r} has no champion model (models:/{name}@champion): training "
            "skipped it (too little data) or has not run; segments rank users by a model's "
            f"scores: run `sluice train` once it has enough data, `sluice models --tenant "
            f"{tenant}` lists its versions")


def unknown_tenant(tenant: str, known: Iterable[str]) -> str:
    """A tenant with neither a model nor a user's interaction would get empty answers: say
    which tenants there are (the flow, and `sluice batch` before Prefect starts)."""
    others = sorted(set(known) - {tenant})
    return (f"{tenant!r} has no model and no interaction in the raw log: known tenants are "
            f"{', '.join(others) or 'none yet (send events first)'}")


def every_tenant(settings: Settings) -> list[str]:
    """The tenants a batch over every tenant answers, found when it runs: those with a
    champion in the registry or a user's history in the raw log (any other would be refused
    as unknown). A tenant that appeared since the last run is in; none is configured."""
    service = Service(settings)
    try:
        service.follow_log()
        found = set(service.state.tenants())
    finally:
        service.log.close()
    return sorted(found | champion_tenants(settings))


def champion_tenants(settings: Settings) -> set[str]:
    """The tenants whose registered model has a champion."""
    prefix = settings.registered_model_name("")
    client = registry.client(settings.mlflow_tracking_uri)
    return {m.name.removeprefix(prefix)
            for m in client.search_registered_models(f"name LIKE '{prefix}%'")
            if registry.CHAMPION in (m.aliases or {})}


def champion_or_version(settings: Settings, tenant: str,
                        version: str | None = None) -> LoadedModel | None:
    """The tenant's registered model `version`, or its champion; None when no version is
    named and there is no champion (serving answers such a tenant from its popular and
    random tiers, and so does a batch job)."""
    name = settings.registered_model_name(tenant)
    client = registry.client(settings.mlflow_tracking_uri)
    if version is None:
        found = registry.alias_version(client, name, registry.CHAMPION)
        if found is None:
            return None
        version = str(found.version)
    target = registry.local_copy(settings.mlflow_tracking_uri, name, str(version),
                                 settings.home / "serving-models")
    return LoadedModel(ModelBundle.load(target), str(version), head_cache_size=1,
                       ann_config=settings.app.serving.ann)


def run_recommendations(settings: Settings, job: BatchJob, source: str | Path | None,
                        out: str | Path, report: Report | None = None,
                        job_id: str | None = None) -> dict[str, Any]:
    """Answer every line of `source` (None: every user of the tenant) into `out`; returns the
    manifest. Wrong job parameters raise an InputError; a wrong line is an error line. A
    tenant without a champion (training skipped it) is answered as the API answers it, from
    its popular and random tiers, each slot saying so."""
    model = champion_or_version(settings, job.tenant, job.model_version)
    service = Service(settings)
    try:
        service.follow_log()
        if model is None and not service.state.tenant(job.tenant).histories:
            raise NotFoundError("tenant", unknown_tenant(
                job.tenant, {*service.tenants(), *service.state.tenants()}))
        rec = service.install(job.tenant, model)
        base = service.request(tenant=job.tenant, template=job.template, filters=job.filters,
                               filter_name=job.filter_name, filter_values=job.filter_values,
                               num_results=job.num_results,
                               fill_with_random=job.fill_with_random)
        return answer_job(rec, base, job, source, out, report, job_id,
                          events=service.log if job.log_answers else None)
    finally:
        service.log.close()
        if model is not None:
            model.close()


def answer_job(rec: Recommender, base: RecommendationRequest, job: BatchJob,
               source: str | Path | None, out: str | Path, report: Report | None = None,
               job_id: str | None = None, events: Any = None) -> dict[str, Any]:
    """The job over a ready recommender (the benchmark calls this directly)."""
    job_id = job_id or new_job_id()
    model = rec.model  # None: no champion, the lower tiers answer
    started = time.time()
    check_source(base.template, source)
    entries, total = _entries(rec, source, input_key(base.template))
    size = job.block_size or block_rows(len(model.bundle.item_ids) if model else 0)
    if model is not None:  # holds one block: what prefill computed is read before eviction
        model.heads.resize(size)
    writer = BatchWriter(out, "recommendations", model.version if model else None)
    progress = Progress(total, report)
    for block in blocks(entries, size):
        if model is not None and base.template == PERSONALIZED and base.exclude_seen:
            prefill(rec, [e.id for e in block if e.id is not None],
                    base.num_results if not base.rules else model.head_size)
        logged = [_answer_line(rec, base, entry, writer, job_id, events is not None)
                  for entry in block]
        writer.flush()
        if events is not None and any(logged):
            events.append([event for event in logged if event is not None])
        progress.advance(len(block))
    return writer.close(_manifest(job_id, "recommendations", rec, base, job, source, started,
                                  progress))


def _answer_line(rec: Recommender, base: RecommendationRequest, entry: InputLine,
                 writer: BatchWriter, job_id: str, log: bool) -> dict[str, Any] | None:
    """Writes one line's answer (or its error); returns its recommendation event to `log`."""
    if entry.error is None:
        similar = base.template == SIMILAR_ITEMS
        request = dataclasses.replace(
            base, user_id=None if similar else entry.id, item_id=entry.id if similar else None,
            context={**base.context, "channel": "batch", "batch_job": job_id})
        try:
            answer = rec.recommend(request)
        except InputError as exc:
            entry.error = f"line {entry.line}: {exc}"
        else:
            writer.answer(entry, answer)
            return recommendation_event(request, answer) if log else None
    writer.error(entry)
    return None


def prefill(rec: Recommender, keys: Iterable[str], k: int) -> int:
    """Scores the users of a block with one matrix product and keeps the head of each ranking
    in the model's head cache, as a serving pass would (seen items left out), so the model
    tier reads it. Users the tier answers otherwise (a trained head, no vector) are skipped.
    Returns how many users were scored."""
    model, state, tenant = rec.model, rec.state, rec.tenant
    assert model is not None
    todo: list[tuple[str, int, Any]] = []
    vectors = []
    for key in dict.fromkeys(keys):
        history = state.history(tenant, key)
        version = state.version(tenant, key)
        new = rec.users.new_pairs(history)
        if not new and model.heads.items is not None and key in model.bundle.user_index:
            continue  # the tier answers from the trained head
        vector = rec.users.vector(key, version, new)
        if vector is None:
            continue  # nobody to personalize for: the lower tiers answer
        todo.append((key, version, history))
        vectors.append(vector)
    if not todo:
        return 0
    factors = model.scorer.item_factors
    scores = np.stack(vectors).astype(np.float32) @ factors.T
    for row, vector, (key, version, history) in zip(scores, vectors, todo, strict=True):
        row[rec.users.seen_indices(key, history)] = -np.inf
        model.heads.put(key, version, _exact_head(head_of(row, k + HEAD_MARGIN), factors,
                                                  vector, k))
    return len(todo)


def _exact_head(head: Head, factors: np.ndarray, vector: np.ndarray, k: int) -> Head:
    """The head with the scores a single user's pass computes (a matrix-vector product sums
    in another order than the block's matrix product: the last digits differ), re-sorted by
    them; the margin keeps near-ties at the k-th place from changing which items are in."""
    exact = factors[head.items] @ vector.astype(np.float32)
    order = np.argsort(-exact, kind="stable")[:k]
    return Head(head.items[order], exact[order].astype(np.float32),
                complete=head.complete and len(head.items) <= k)


def block_rows(n_items: int) -> int:
    return int(min(4096, max(64, BLOCK_FLOATS // max(n_items, 1))))


def new_job_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def _entries(rec: Recommender, source: str | Path | None,
             key: str) -> tuple[Iterator[InputLine], int]:
    if source is not None:
        return read_input(source, key), count_lines(source)
    users = all_users(rec)  # a template answering items has none to default to: check_source
    return (InputLine(n, {"userId": u}, id=u) for n, u in enumerate(users, start=1)), len(users)


def all_users(rec: Recommender) -> list[str]:
    """The model's trained users, then users first seen in the raw log since (not anonymous
    visitors: a campaign needs someone to send to)."""
    users: dict[str, None] = {}
    if rec.model is not None:
        users.update(dict.fromkeys(rec.model.bundle.user_ids.tolist()))
    prefix = rec.state.anonymous_prefix
    users.update(dict.fromkeys(k for k in list(rec.state.tenant(rec.tenant).histories)
                               if not k.startswith(prefix)))
    return list(users)


def blocks(entries: Iterator[InputLine], size: int) -> Iterator[list[InputLine]]:
    block: list[InputLine] = []
    for entry in entries:
        block.append(entry)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


NO_CHAMPION = "no champion model: answered from the popular and random tiers, as the API does"


def lineage(model: LoadedModel | None, state_events: int) -> dict[str, Any]:
    meta = model.bundle.meta if model is not None else {}
    found = {"model_version": model.version if model else None,
             "algorithm": meta.get("algorithm"), "data_high_water_ms": meta.get("cutoff_ms"),
             "trained_at_ms": meta.get("trained_at_ms"), "raw_log_events_applied": state_events}
    return found if model is not None else {**found, "note": NO_CHAMPION}


def _manifest(job_id: str, kind: str, rec: Recommender, base: RecommendationRequest,
              job: BatchJob, source: str | Path | None, started: float,
              progress: Progress) -> dict[str, Any]:
    finished = time.time()
    return {"job": job_id, "kind": kind, "tenant": rec.tenant,
            "input": str(source) if source is not None else "all users",
            "parameters": {"template": job.template, "num_results": base.num_results,
                           "fill_with_random": base.fill_with_random, "filters": job.filters,
                           "filter_name": job.filter_name, "filter_values": job.filter_values,
                           "log_answers": job.log_answers},
            "lineage": lineage(rec.model, rec.state.applied),
            "timings": {"started_at": started, "finished_at": finished,
                        "seconds": round(finished - started, 3),
                        "per_second": round(progress.done / max(finished - started, 1e-9), 1)}}
