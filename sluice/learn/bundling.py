"""What a training run hands to serving: the `ModelBundle` of the model refit on all data.

Besides the model's factors and id maps: the popular list, the item-item neighbours, the
attribute index, the precomputed ranking heads (with progress for long jobs), the item
catalog, and the run's dataset statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from sluice.bundle import HEAD_SIZE, ModelBundle
from sluice.learn import attributes
from sluice.learn.candidates import item_index, precompute
from sluice.learn.configuration import interactions_meta
from sluice.learn.matrix import trained_boost
from sluice.learn.models import Model, Popularity
from sluice.learn.next_item import index_for_run
from sluice.learn.similar import SimilarItems
from sluice.settings import Settings
from sluice.warehouse import positions

if TYPE_CHECKING:
    from sluice.learn.training import Prepared


def make_bundle(settings: Settings, prepared: Prepared, final: Model,
                say: Callable[[str], None] | None = None) -> ModelBundle:
    """Everything serving needs, from the model refit on all data."""
    full, frame = prepared.full, prepared.frame
    size = settings.app.serving.popular_list_size
    popularity = Popularity().fit(full.matrix)
    similar = SimilarItems(settings.app.model.similar_items_neighbours).fit(full.matrix)
    attribute_index = index_for_run(settings, prepared, say)
    candidates = None
    k = settings.app.serving.precomputed_candidates
    if final.personalized and k:
        candidates = precompute(
            final.user_factors, final.item_factors, full.matrix, k,
            progress=progress_every(say, f"[{prepared.tenant}] candidates", full.shape[0]))
    cutoff_ms = int(pd.Timestamp(frame["event_at"].max()).value // 1_000_000)
    # with the recency boost if the family has it (the tuned one if tuning chose it)
    trained = full.for_model(final.name, trained_boost(final))
    boosted = trained is not full
    boost = trained.boost if boosted else 0.0
    ann = item_index(final, trained.matrix, settings.app.serving.ann, max(k, HEAD_SIZE), say)
    return ModelBundle(
        user_ids=full.user_ids, item_ids=full.item_ids,
        user_factors=final.user_factors, item_factors=final.item_factors,
        user_items=trained.matrix, popular=popularity.order[:size],
        popular_scores=popularity.item_factors[:, 0][popularity.order][:size],
        meta={"tenant": prepared.tenant, "algorithm": final.name, "params": final.params(),
              "cutoff_ms": cutoff_ms, "trained_at_ms": int(time.time() * 1000),
              **final.serving_meta(), "matrix": matrix_meta(settings, boost),
              "interactions": interactions_meta(settings.app.events),
              "stats": dataset_stats(prepared), **attributes.bundle_meta(
                  attribute_index, settings.app.attributes.cold_item_interactions),
              **({"ann": ann[1].meta()} if ann is not None else {}),
              # serving tells trained events from new ones by this (sluice.serve.model)
              **({positions.META_KEY: prepared.log_positions}
                 if prepared.log_positions else {})},
        catalog=prepared.catalog, similar=similar.matrix, candidates=candidates,
        attributes=attribute_index.arrays() if attribute_index is not None else None,
        ann=ann[0] if ann is not None else None,
        recent=trained.recent if boosted else None,
    )


def matrix_meta(settings: Settings, boost: float) -> dict[str, Any]:
    """The matrix config as this bundle's model was trained: serving boosts new events by
    the recency boost the model had (0 for the families without it)."""
    return {**settings.app.matrix.model_dump(), "recency_boost": boost}


def progress_every(say: Callable[[str], None] | None, what: str, total: int,
                   min_total: int = 100_000) -> Callable[[int, int], None] | None:
    """A progress callback saying `what` at each tenth of a long job (none for short ones)."""
    if say is None or total < min_total:
        return None
    said = [0]

    def progress(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth > said[0]:
            said[0] = tenth
            say(f"{what}: {done:,} of {total:,} users")

    return progress


def dataset_stats(prepared: Prepared) -> dict[str, Any]:
    full, frame = prepared.full, prepared.frame
    return {
        "users": int(full.shape[0]), "items": int(full.shape[1]),
        "interactions": int(len(frame)), "cells": int(full.matrix.nnz),
        "density": float(full.matrix.nnz / max(full.shape[0] * full.shape[1], 1)),
        "time_min": str(frame["event_at"].min()), "time_max": str(frame["event_at"].max()),
        "train_interactions": int(len(prepared.split.train)),
        "test_interactions": int(len(prepared.split.test)),
        "evaluated_users": len(prepared.relevant),
        "protocol": prepared.split.protocol, "protocol_note": prepared.split.note,
        "catalog_items": len(prepared.catalog),
    }
