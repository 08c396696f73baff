"""Segments: for each item, the users most likely to engage, by a model's scores (a batch
job's other kind, beside recommendations in `sluice.serve.batch`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sluice.errors import InputError, NotFoundError
from sluice.serve import resolve
from sluice.serve.batch import (
    Progress,
    Report,
    block_rows,
    blocks,
    champion_or_version,
    lineage,
    new_job_id,
    no_champion,
)
from sluice.serve.batch_io import BatchWriter, InputLine, count_lines, read_input
from sluice.serve.candidates import head_of
from sluice.serve.model import LoadedModel
from sluice.settings import Settings
from sluice.vocabulary import MODEL_PERSONALIZED


def run_segments(settings: Settings, tenant: str, source: str | Path | None, out: str | Path,
                 num_results: int = 100, model_version: str | None = None,
                 report: Report | None = None, job_id: str | None = None) -> dict[str, Any]:
    """For each item of `source` (None: every item of the model), its top `num_results`
    trained users by model score, users who already interacted with it left out."""
    resolve.segment_size(num_results)
    model = champion_or_version(settings, tenant, model_version)
    if model is None:
        raise NotFoundError("tenant", no_champion(tenant, settings))
    try:
        return segment_job(model, tenant, source, out, num_results, report, job_id)
    finally:
        model.close()


def segment_job(model: LoadedModel, tenant: str, source: str | Path | None, out: str | Path,
                num_results: int, report: Report | None = None,
                job_id: str | None = None) -> dict[str, Any]:
    bundle = model.bundle
    if not model.personalized or bundle.user_factors.shape[1] != bundle.item_factors.shape[1]:
        raise InputError("model_version", f"v{model.version} has no user factors to rank users "
                                          "by: segments need a personalized factor model")
    job_id, started = job_id or new_job_id(), time.time()
    entries: Iterator[InputLine]
    if source is None:
        ids = bundle.item_ids.tolist()
        entries, total = (InputLine(n, {"itemId": i}, id=i) for n, i in
                          enumerate(ids, start=1)), len(ids)
    else:
        entries, total = read_input(source, "itemId"), count_lines(source)
    interacted = bundle.user_items.tocsc()
    writer = BatchWriter(out, "segments", model.version)
    progress = Progress(total, report)
    for block in blocks(entries, block_rows(len(bundle.user_ids))):
        _segment_block(model, interacted, block, writer, num_results)
        writer.flush()
        progress.advance(len(block))
    finished = time.time()
    return writer.close({
        "job": job_id, "kind": "segments", "tenant": tenant,
        "input": str(source) if source is not None else "all items",
        "parameters": {"num_results": num_results}, "lineage": lineage(model, 0),
        "timings": {"started_at": started, "finished_at": finished,
                    "seconds": round(finished - started, 3)}})


def _segment_block(model: LoadedModel, interacted: Any, block: list[InputLine],
                   writer: BatchWriter, n: int) -> None:
    bundle = model.bundle
    found_rows = bundle.item_index.rows(e.id or "" for e in block).tolist()
    for entry, row in zip(block, found_rows, strict=True):
        if entry.error is None and row < 0:
            entry.error = (f"line {entry.line}: itemId {entry.id!r} is not in model "
                           f"v{model.version}")
    good = [e for e in block if e.error is None]
    rows = [row for e, row in zip(block, found_rows, strict=True) if e.error is None]
    scores = (bundle.item_factors[rows] @ bundle.user_factors.T if rows
              else np.empty((0, len(bundle.user_ids)), dtype=np.float32))
    found = {}
    for entry, item, row in zip(good, rows, scores, strict=True):
        row[interacted.indices[interacted.indptr[item]:interacted.indptr[item + 1]]] = -np.inf
        found[entry.line] = head_of(row, n)
    for entry in block:
        if entry.error is not None:
            writer.error(entry)
            continue
        head = found[entry.line]
        writer.segment(entry, bundle.user_ids[head.items].tolist(),
                       head.scores.tolist(), MODEL_PERSONALIZED)
