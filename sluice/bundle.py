"""A trained model's artifacts: `.npz` arrays (never pickle), id maps, catalog and popularity,
the similar-items index and each user's precomputed candidates when they were built.

This is everything serving needs at start-up; it never opens the warehouse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sluice import formats

NO_CANDIDATE = -1  # pads a row of precomputed candidates when a user has fewer unseen items than k

ARRAYS = "arrays.npz"
META = "meta.json"
CATALOG = "catalog.jsonl"


@dataclass
class ModelBundle:
    user_ids: np.ndarray              # str, row i of user_factors / user_items
    item_ids: np.ndarray              # str, row j of item_factors
    user_factors: np.ndarray          # float32 (users x factors)
    item_factors: np.ndarray          # float32 (items x factors)
    user_items: sp.csr_matrix         # training confidence per (user, item)
    popular: np.ndarray               # item indices, most popular first
    popular_scores: np.ndarray        # float32, same order
    meta: dict[str, Any] = field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> fields
    similar: sp.csr_matrix | None = None  # items x items, each row its nearest neighbours
    candidates: np.ndarray | None = None  # int32 users x k: each user's top unseen items, -1 pad
    # the attribute index (sluice.learn.attributes) as its `attr_*` arrays; meta "attributes"
    attributes: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.item_index = {it: j for j, it in enumerate(self.item_ids.tolist())}

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        optional: dict[str, np.ndarray] = {}
        if self.similar is not None:
            optional = {"sim_indptr": self.similar.indptr, "sim_indices": self.similar.indices,
                       "sim_data": self.similar.data.astype(np.float32)}
        if self.candidates is not None:
            optional["candidates"] = self.candidates.astype(np.int32)
        optional.update(self.attributes or {})
        np.savez(
            directory / ARRAYS, **optional,
            user_ids=self.user_ids.astype(str), item_ids=self.item_ids.astype(str),
            user_factors=self.user_factors.astype(np.float32),
            item_factors=self.item_factors.astype(np.float32),
            ui_indptr=self.user_items.indptr, ui_indices=self.user_items.indices,
            ui_data=self.user_items.data.astype(np.float32),
            popular=self.popular.astype(np.int64),
            popular_scores=self.popular_scores.astype(np.float32),
        )
        meta = {**self.meta, "format_version": self.meta.get("format_version",
                                                             formats.CURRENT["bundle"])}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        with open(directory / CATALOG, "w") as handle:
            for item_id, fields in self.catalog.items():
                handle.write(json.dumps({"item_id": item_id, "fields": fields}) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        directory = find_bundle(Path(directory))
        meta = json.loads((directory / META).read_text())
        formats.check("bundle", meta.get("format_version", 1), directory / META)
        with np.load(directory / ARRAYS, allow_pickle=False) as arrays:
            a = {k: arrays[k] for k in arrays.files}
        n_users, n_items = len(a["user_ids"]), len(a["item_ids"])
        user_items = sp.csr_matrix(
            (a["ui_data"], a["ui_indices"], a["ui_indptr"]), shape=(n_users, n_items))
        similar = None
        if "sim_indptr" in a:
            similar = sp.csr_matrix((a["sim_data"], a["sim_indices"], a["sim_indptr"]),
                                    shape=(n_items, n_items))
        catalog: dict[str, dict[str, Any]] = {}
        if (directory / CATALOG).exists():
            with open(directory / CATALOG) as handle:
                for line in handle:
                    row = json.loads(line)
                    catalog[row["item_id"]] = row["fields"]
        return cls(
            user_ids=a["user_ids"], item_ids=a["item_ids"],
            user_factors=np.ascontiguousarray(a["user_factors"], dtype=np.float32),
            item_factors=np.ascontiguousarray(a["item_factors"], dtype=np.float32),
            user_items=user_items, popular=a["popular"], popular_scores=a["popular_scores"],
            meta=meta, catalog=catalog,
            similar=similar, candidates=a.get("candidates"),
            attributes={k: v for k, v in a.items() if k.startswith("attr_")} or None,
        )


def find_bundle(directory: Path) -> Path:
    """The folder holding arrays.npz: the folder itself or one below it (MLflow nests it)."""
    if (directory / ARRAYS).exists():
        return directory
    found = sorted(directory.rglob(ARRAYS))
    if not found:
        raise FileNotFoundError(f"no {ARRAYS} under {directory}: not a Sluice model bundle")
    return found[0].parent
