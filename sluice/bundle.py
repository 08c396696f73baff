"""A trained model's artifacts: `.npz` arrays (never pickle), id maps, catalog and popularity,
the similar-items index, each user's precomputed candidates and the approximate
nearest-neighbour index of the item factors (`ann_index`, for large catalogs) when built.

This is everything serving needs at start-up; it never opens the warehouse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sluice import formats, npz
from sluice.ann import ItemIndex
from sluice.ids import SortedMap, id_map, stored_order
from sluice.item_fields import ItemFields

# the head kept of a ranking computed while serving (at least; the precomputed k if larger):
# also how many candidates serving asks the ann index for, which its calibration asks too
HEAD_SIZE = 100
NO_CANDIDATE = -1  # pads a row of precomputed candidates when a user has fewer unseen items than k

ARRAYS = "arrays.npz"
META = "meta.json"
ANN = "ann.faiss"  # the approximate index, mapped at load (formerly `ann_index` in ARRAYS)
ANN_FORMAT = 2  # bundle format version from which the index is ANN: older code must refuse
CATALOG = "catalog.jsonl"  # the catalog as text: what a person reads, and older Sluice
CATALOG_COLUMNS = "catalog.npz"  # the same by column, mapped at load (sluice.item_fields)
# the arrays that grow with users and items, mapped read-only from the file where it allows
# (bundles written by `save`; sluice.npz): a server's workers share one copy of their pages.
# `*_order`: the permutation sorting the ids, saved for large id maps (sluice.ids)
MAPPED = ("user_factors", "item_factors", "candidates", "user_ids", "item_ids", "user_order",
          "item_order",
          # the attribute index (sluice.learn.attributes): only ever read, never written
          *(f"attr_{name}" for name in ("item_ids", "vec_indptr", "vec_indices", "vec_data",
                                        "nn_indptr", "nn_indices", "nn_data", "term_indptr",
                                        "term_indices", "term_data")))


class BundleError(ValueError):
    """A bundle that loads but is not whole (shapes, dtypes, id maps, non-finite values)."""


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise BundleError(f"inconsistent model bundle: {problem}")


def _finite(values: np.ndarray, name: str) -> None:
    _require(np.issubdtype(values.dtype, np.floating), f"{name} is {values.dtype}, not float")
    # a finite sum means every value is finite (a NaN or an infinity carries into it), and it
    # makes no mask as large as the array; only a sum that overflows looks value by value
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, said below
        total = values.sum(dtype=np.float64)
    if not np.isfinite(total):
        _require(bool(np.isfinite(values).all()), f"{name} holds NaN or infinite values")


def _indices(values: np.ndarray, name: str, low: int, high: int) -> None:
    _require(np.issubdtype(values.dtype, np.integer), f"{name} is {values.dtype}, not integer")
    _require(values.size == 0 or (values.min() >= low and values.max() < high),
             f"{name} points outside {low}..{high - 1}")


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
    # item id -> fields: a dict as training builds it, ItemFields (mapped columns) as loaded
    catalog: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    similar: sp.csr_matrix | None = None  # items x items, each row its nearest neighbours
    candidates: np.ndarray | None = None  # int32 users x k: each user's top unseen items, -1 pad
    # the attribute index (sluice.learn.attributes) as its `attr_*` arrays; meta "attributes"
    attributes: dict[str, np.ndarray] | None = None
    ann: ItemIndex | None = None  # candidates by inner product, for catalog passes at scale
    # per cell of user_items (same order): its recency-boosted part (sluice.learn.matrix), so
    # that folding in new events re-weighs the trained ones; None without matrix.recency_boost
    recent: np.ndarray | None = None
    # the permutations sorting user_ids and item_ids (sluice.ids), as loaded; None: computed
    user_order: np.ndarray | None = None
    item_order: np.ndarray | None = None

    def __post_init__(self) -> None:
        # id -> row: a dict for small maps, a binary search over the (mapped) ids for large
        self.user_index = id_map(self.user_ids, self.user_order)
        self.item_index = id_map(self.item_ids, self.item_order)

    def check(self) -> ModelBundle:
        """Raises BundleError unless every array fits the id maps and every score is finite:
        a model is served only whole (a bad one would answer 500s or null scores)."""
        users, items = len(self.user_ids), len(self.item_ids)
        _require(self.user_ids.ndim == 1 and self.item_ids.ndim == 1, "id maps are not 1-D")
        for index in (self.user_index, self.item_index):
            problem = index.problem()
            _require(problem is None, str(problem))
        _require(self.user_factors.ndim == 2 and self.item_factors.ndim == 2,
                 "factors are not 2-D arrays")
        _require(self.user_factors.shape[0] == users, f"user_factors has "
                 f"{self.user_factors.shape[0]} rows for {users} user ids")
        _require(self.item_factors.shape[0] == items, f"item_factors has "
                 f"{self.item_factors.shape[0]} rows for {items} item ids")
        _require(self.user_factors.shape[1] == self.item_factors.shape[1],
                 f"user factors have {self.user_factors.shape[1]} columns, item factors "
                 f"{self.item_factors.shape[1]}")
        _finite(self.user_factors, "user_factors")
        _finite(self.item_factors, "item_factors")
        _require(self.user_items.shape == (users, items), "user_items does not match id maps")
        _indices(self.user_items.indices, "user_items", 0, items)
        _finite(self.user_items.data, "user_items")
        if self.recent is not None:
            _require(self.recent.shape == self.user_items.data.shape,
                     "ui_recent does not have one value per user_items cell")
            _finite(self.recent, "ui_recent")
        _indices(self.popular, "popular", 0, items)
        _require(self.popular_scores.shape == self.popular.shape,
                 "popular_scores and popular differ in length")
        _finite(self.popular_scores, "popular_scores")
        if self.similar is not None:
            _require(self.similar.shape == (items, items), "similar does not match item ids")
            _indices(self.similar.indices, "similar", 0, items)
            _finite(self.similar.data, "similar")
        if self.candidates is not None:
            _require(self.candidates.ndim == 2 and self.candidates.shape[0] == users,
                     "candidates do not have one row per user")
            _indices(self.candidates, "candidates", NO_CANDIDATE, items)
        if self.ann is not None:
            _require(self.ann.items == items, f"the ann index holds {self.ann.items} items for "
                     f"{items} item ids")
            _require(self.ann.dims == self.item_factors.shape[1], f"the ann index has "
                     f"{self.ann.dims} dimensions for {self.item_factors.shape[1]} factors")
        if isinstance(self.catalog, ItemFields):
            problem = self.catalog.problem()
            _require(problem is None, f"{CATALOG_COLUMNS}: {problem}")
        return self

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        optional: dict[str, Any] = {}  # arrays; Any, as numpy types savez(**kw) as its flags
        if self.similar is not None:
            optional = {"sim_indptr": self.similar.indptr, "sim_indices": self.similar.indices,
                       "sim_data": self.similar.data.astype(np.float32)}
        if self.candidates is not None:
            optional["candidates"] = self.candidates.astype(np.int32)
        if self.recent is not None:
            optional["ui_recent"] = self.recent.astype(np.float32)
        optional.update(self.attributes or {})
        for name, ids, index in (("user_order", self.user_ids, self.user_index),
                                 ("item_order", self.item_ids, self.item_index)):
            # large maps: sluice.ids.SortedMap, so nothing is built at load
            order = (index.order if isinstance(index, SortedMap) and index.ids is ids
                     else stored_order(ids))
            if order is not None:
                optional[name] = order
        npz.save(directory / ARRAYS, dict(
            **optional,
            user_ids=self.user_ids.astype(str), item_ids=self.item_ids.astype(str),
            user_factors=self.user_factors.astype(np.float32),
            item_factors=self.item_factors.astype(np.float32),
            ui_indptr=self.user_items.indptr, ui_indices=self.user_items.indices,
            ui_data=self.user_items.data.astype(np.float32),
            popular=self.popular.astype(np.int64),
            popular_scores=self.popular_scores.astype(np.float32),
        ))
        version = int(self.meta.get("format_version", formats.CURRENT["bundle"]))
        if self.ann is not None:  # an older Sluice would serve it without its index
            self.ann.write(directory / ANN)
            version = max(version, ANN_FORMAT)
        else:
            (directory / ANN).unlink(missing_ok=True)
        meta = {**self.meta, "format_version": version}
        (directory / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        with open(directory / CATALOG, "w") as handle:
            for item_id, fields in self.catalog.items():
                handle.write(json.dumps({"item_id": item_id, "fields": fields}) + "\n")
        ItemFields.of(self.catalog).save(directory / CATALOG_COLUMNS)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        directory = find_bundle(Path(directory))
        meta = json.loads((directory / META).read_text())
        formats.check("bundle", meta.get("format_version", 1), directory / META)
        a = npz.load(directory / ARRAYS, MAPPED)
        n_users, n_items = len(a["user_ids"]), len(a["item_ids"])
        user_items = _sparse(
            (a["ui_data"], a["ui_indices"], a["ui_indptr"]), shape=(n_users, n_items))
        similar = None
        if "sim_indptr" in a:
            similar = _sparse((a["sim_data"], a["sim_indices"], a["sim_indptr"]),
                              shape=(n_items, n_items))
        catalog = _catalog(directory)
        return cls(
            user_ids=a["user_ids"], item_ids=a["item_ids"],
            user_factors=np.ascontiguousarray(a["user_factors"], dtype=np.float32),
            item_factors=np.ascontiguousarray(a["item_factors"], dtype=np.float32),
            user_items=user_items, popular=a["popular"], popular_scores=a["popular_scores"],
            meta=meta, catalog=catalog,
            similar=similar, candidates=a.get("candidates"),
            attributes={k: v for k, v in a.items() if k.startswith("attr_")} or None,
            ann=_ann_index(directory / ANN, a.get("ann_index")), recent=a.get("ui_recent"),
            user_order=a.get("user_order"), item_order=a.get("item_order"),
        ).check()


def _catalog(directory: Path) -> Mapping[str, dict[str, Any]]:
    """The catalog's columns (mapped), or, for a bundle written before them, its text read
    into columns (an id map and arrays instead of a dict of dicts)."""
    if (directory / CATALOG_COLUMNS).exists():
        try:
            return ItemFields.load(directory / CATALOG_COLUMNS)
        except (ValueError, KeyError, OSError) as exc:  # a damaged or foreign file
            raise BundleError(f"inconsistent model bundle: {CATALOG_COLUMNS} does not read "
                              f"as a catalog ({exc})") from None
    catalog: dict[str, dict[str, Any]] = {}
    if (directory / CATALOG).exists():
        with open(directory / CATALOG) as handle:
            for line in handle:
                row = json.loads(line)
                catalog[row["item_id"]] = row["fields"]
    return ItemFields.of(catalog)


def _ann_index(path: Path, data: np.ndarray | None) -> ItemIndex | None:
    """The index file (mapped), or the serialized index of bundles written before it."""
    if data is not None:
        _require(data.dtype == np.uint8 and data.ndim == 1, "ann_index is not a byte array")
    elif not path.exists():  # bundles of small catalogs, and those trained before the index
        return None
    try:
        return ItemIndex.from_bytes(data) if data is not None else ItemIndex.read(path)
    except RuntimeError as exc:  # faiss refuses a truncated or foreign blob
        name = "ann_index" if data is not None else ANN
        raise BundleError(f"inconsistent model bundle: {name} does not read as an index "
                          f"({str(exc).strip().splitlines()[-1][:200]})") from None


def _sparse(parts: tuple, shape: tuple[int, int]) -> sp.csr_matrix:
    try:
        return sp.csr_matrix(parts, shape=shape)
    except ValueError as exc:  # indices beyond the id maps, indptr of the wrong length
        raise BundleError(f"inconsistent model bundle: a sparse array does not fit the id "
                          f"maps ({exc})") from None


def find_bundle(directory: Path) -> Path:
    """The folder holding arrays.npz: the folder itself or one below it (MLflow nests it)."""
    if (directory / ARRAYS).exists():
        return directory
    found = sorted(directory.rglob(ARRAYS))
    if not found:
        raise FileNotFoundError(f"no {ARRAYS} under {directory}: not a Sluice model bundle")
    return found[0].parent
