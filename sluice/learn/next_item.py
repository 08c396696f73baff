"""The offline check of the attribute index: next-item prediction on the holdout.

For every holdout user, the last item they touched in training asks each source for its top
k, and a hit is the user's first holdout item among them. The attribute index is compared
with the collaborative similar items (fit on the training part only) and with popularity,
on the same users, so the three numbers are read side by side (with their standard errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sluice.learn.attribute_fields import choose
from sluice.learn.attributes import AttributeIndex, from_config
from sluice.learn.matrix import InteractionMatrix
from sluice.learn.similar import SimilarItems

if TYPE_CHECKING:
    from sluice.learn.training import Prepared
    from sluice.settings import Settings

log = logging.getLogger(__name__)

Ranker = Callable[[str], list[str]]


def next_item_pairs(train: pd.DataFrame, test: pd.DataFrame) -> list[tuple[str, str]]:
    """(last training item, first holdout item) per user with both, the two different."""
    last = train.sort_values("event_at").groupby("user_id", observed=True)["item_id"].last()
    first = test.sort_values("event_at").groupby("user_id", observed=True)["item_id"].first()
    pairs = pd.concat([last.rename("last"), first.rename("next")], axis=1, join="inner")
    pairs = pairs[pairs["last"].astype(str) != pairs["next"].astype(str)]
    return list(zip(pairs["last"].astype(str), pairs["next"].astype(str), strict=True))


def hit_rate(pairs: list[tuple[str, str]], ranker: Ranker) -> tuple[float, float]:
    """The share of pairs whose next item is in the ranker's answer, and its standard error."""
    if not pairs:
        return 0.0, 0.0
    hits = np.array([nxt in ranker(last) for last, nxt in pairs], dtype=np.float64)
    return float(hits.mean()), float(hits.std(ddof=0) / np.sqrt(len(hits)))


def evaluate_next_item(index: AttributeIndex, train: InteractionMatrix,
                       split_train: pd.DataFrame, split_test: pd.DataFrame, k: int = 10,
                       neighbours: int = 50) -> dict[str, Any]:
    """Hit rate at k of attribute neighbours, collaborative similar items and popularity."""
    pairs = next_item_pairs(split_train, split_test)
    attr_row = {it: j for j, it in enumerate(index.item_ids.tolist())}
    collab = SimilarItems(neighbours).fit(train.matrix)
    item_row = {it: j for j, it in enumerate(train.item_ids.tolist())}
    counts = np.asarray((train.matrix > 0).sum(axis=0)).ravel()
    popular = train.item_ids[np.argsort(-counts, kind="stable")[:k + 1]].astype(str).tolist()

    def attributes(item: str) -> list[str]:
        return _top(index.neighbours, attr_row.get(item), index.item_ids, k)

    def collaborative(item: str) -> list[str]:
        return _top(collab.matrix, item_row.get(item), train.item_ids, k)

    def popularity(item: str) -> list[str]:
        return [p for p in popular if p != item][:k]

    out: dict[str, Any] = {"users": len(pairs), "k": k}
    for name, ranker in (("attributes", attributes), ("similar_items", collaborative),
                         ("popularity", popularity)):
        out[name], out[f"{name}_se"] = hit_rate(pairs, ranker)
    return out


def _top(matrix: sp.csr_matrix, row: int | None, ids: np.ndarray, k: int) -> list[str]:
    if row is None:
        return []
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    order = np.argsort(-matrix.data[start:end], kind="stable")[:k]
    return ids[matrix.indices[start:end][order]].astype(str).tolist()


def metrics(result: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of a result (`attributes.next_item_hit_at_10`, ...)."""
    k = result["k"]
    out = {"attributes.next_item_users": float(result["users"])}
    for name in ("attributes", "similar_items", "popularity"):
        out[f"attributes.next_item_hit_at_{k}.{name}"] = result[name]
        out[f"attributes.next_item_hit_at_{k}.{name}_se"] = result[f"{name}_se"]
    return out


def index_for_run(settings: Settings, prepared: Prepared,
                  say: Callable[[str], None] | None = None) -> AttributeIndex | None:
    """Build the tenant's attribute index over the chosen fields (`attribute_fields.choose`);
    inside an MLflow run, log the fields, the index's size, build time and the next-item
    check."""
    say = say or log.info
    cfg = settings.app
    choice = choose(cfg.attributes.fields, cfg.events.item_fields, prepared.catalog,
                    prepared.tenant)
    if choice.line:
        say(f"[{prepared.tenant}] {choice.line}")
    if mlflow.active_run() is not None:
        mlflow.log_params(choice.params())
        mlflow.set_tags(choice.tags())
    index = from_config(cfg, prepared.catalog, choice)
    if index is None:
        if choice.weights:  # the line above said why when there were no fields to read
            say(f"[{prepared.tenant}] no attribute index: no item has a value shared with "
                f"another in {', '.join(choice.weights)} (from {choice.source}); "
                "similar_attributes answers will come from the random tier only")
        return None
    stats = index.stats()
    say(f"[{prepared.tenant}] attribute index: {stats['items']:,} items, "
        f"{stats['terms']:,} terms, {stats['bytes'] / 1e6:.1f} MB in "
        f"{stats['build_seconds']:.1f}s")
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"attributes.{k}": float(v) for k, v in stats.items()})
        result = evaluate_next_item(index, prepared.train, prepared.split.train,
                                    prepared.split.test, cfg.evaluation.k,
                                    cfg.model.similar_items_neighbours)
        mlflow.log_metrics(metrics(result))
    return index
