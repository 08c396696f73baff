"""A tenant's data for training: read from the marts, checked, split and made into matrices.

`prepare` is what every fit of a run shares (train, tune and its validation split); too little
data raises `InsufficientDataError` with what was found and what is needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sluice.learn.evaluation import K_VALUES, Split, decisive_split
from sluice.learn.matrix import InteractionMatrix, build
from sluice.settings import Settings
from sluice.warehouse.db import connect


class InsufficientDataError(RuntimeError):
    """Too little data to train; the message gives what was found and what is needed."""


@dataclass
class Prepared:
    """A tenant's data, split and turned into matrices: what every fit of a run shares."""

    tenant: str
    frame: pd.DataFrame
    split: Split
    train: InteractionMatrix
    relevant: dict[int, np.ndarray]
    full: InteractionMatrix
    catalog: dict[str, dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    k_values: tuple[int, ...] = K_VALUES

    def test_counts(self) -> np.ndarray:
        """Held-out interactions per training user row (for the 'mostly after' segment)."""
        rows = pd.Index(self.train.user_ids).get_indexer(self.split.test["user_id"].astype(str))
        return np.bincount(rows[rows >= 0], minlength=len(self.train.user_ids))


class Timer:
    """Seconds per phase of a run, for the run's metrics and the speed benchmark."""

    def __init__(self, into: dict[str, float]):
        self.seconds = into

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def tenants(warehouse: Path) -> list[str]:
    con = connect(warehouse, read_only=True)
    try:
        return [r[0] for r in con.execute(
            "select distinct tenant from marts.interactions order by 1").fetchall()]
    finally:
        con.close()


def load_interactions(warehouse: Path, tenant: str) -> pd.DataFrame:
    """The tenant's interactions mart; ids and types come categorical (arrow dictionaries),
    which makes building the matrices a lookup in the small category arrays."""
    con = connect(warehouse, read_only=True)
    try:
        table = con.sql(
            "select user_id, item_id, interaction_type, event_at, event_value, "
            "weight::double as weight from marts.interactions where tenant = ?",
            params=[tenant]).to_arrow_table()
    finally:
        con.close()
    for name in ("user_id", "item_id", "interaction_type"):
        column = table.schema.get_field_index(name)
        table = table.set_column(column, name, table[name].dictionary_encode())
    return table.to_pandas()


def load_catalog(warehouse: Path, tenant: str) -> dict[str, dict[str, Any]]:
    con = connect(warehouse, read_only=True)
    try:
        rows = con.execute(
            "select item_id, fields from marts.items where tenant = ?", [tenant]).fetchall()
    finally:
        con.close()
    return {item_id: json.loads(fields) if fields else {} for item_id, fields in rows}


def check_sufficiency(frame: pd.DataFrame, min_interactions: int, min_users: int) -> None:
    interactions = len(frame)
    users_with_two = int((frame.groupby("user_id", observed=True).size() >= 2).sum()
                         if interactions else 0)
    if interactions < min_interactions or users_with_two < min_users:
        raise InsufficientDataError(
            f"not enough data to train: {interactions:,} interactions (need {min_interactions:,})"
            f" and {users_with_two:,} users with two or more interactions (need {min_users:,})."
            " Send more events or lower `sufficiency` in config/sluice.yaml."
        )


def prepare(settings: Settings, tenant: str, frame: pd.DataFrame | None = None,
            catalog: dict[str, dict[str, Any]] | None = None) -> Prepared:
    """Load (unless given), check, split and build the matrices of one tenant.

    Given the training part of another split as `frame`, this makes a validation split
    inside it (the tune flow picks hyperparameters there, never on the reported holdout).
    """
    timings: dict[str, float] = {}
    timer = Timer(timings)
    with timer.phase("load"):
        if frame is None:
            frame = load_interactions(settings.warehouse_path, tenant)
        if catalog is None:
            catalog = load_catalog(settings.warehouse_path, tenant)
    suff, ev, mx = settings.app.sufficiency, settings.app.evaluation, settings.app.matrix
    check_sufficiency(frame, suff.min_interactions, suff.min_users_with_two_interactions)
    with timer.phase("matrix"):
        held = decisive_split(frame, ev.protocol, ev.holdout_fraction, ev.leave_out,
                              ev.min_users, ev.widen_to, mx)
        split, train, relevant = held.split, held.train, held.relevant
        full = build(frame, config=mx)
    if not relevant:
        raise InsufficientDataError(
            f"not enough data to evaluate: the {ev.protocol} holdout of {len(split.test):,} "
            "interactions has no user who is also in training with a new item")
    k_values = tuple(sorted({*K_VALUES, ev.k}))  # 10 and 20 always, evaluation.k too
    return Prepared(tenant, frame, split, train, relevant, full, catalog, timings, k_values)
