"""A loaded model: the bundle plus what serving derives from it once (the fold-in, the heads,
catalog arrays), and the count of how its answers were filled."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from sluice import ann
from sluice.bundle import HEAD_SIZE, ModelBundle
from sluice.filters import Rule
from sluice.intake.log_coverage import UNKNOWN, Coverage
from sluice.intake.log_positions import NO_POSITION, OFFSET_BITS, OFFSET_MASK, unpack
from sluice.item_fields import ItemFields
from sluice.learn.model_base import als_fold_in, als_gram
from sluice.scoring import BatchScorer
from sluice.serve.attributes import AttributeNeighbours
from sluice.serve.candidates import CandidateCache
from sluice.settings import MatrixConfig
from sluice.settings.serving import AnnConfig

FOLD_INS = ("als", "history", "constant")  # bundle meta fold_in, set by each model family
# how an answer's model tier was filled: the trained head, a head kept from an earlier pass,
# a pass over the approximate index's candidates (large catalogs), or a pass over every item
PATHS = ("precomputed", "kept", "ann", "pass")
_MASKS_KEPT = 256  # item masks by filter, kept because filters repeat


def ann_breadth(bundle: ModelBundle, config: AnnConfig) -> int:
    """How widely an index search looks (sluice.ann): serving's fixed breadth for the
    bundle's kind if set, else the one calibrated into the bundle, else (a bundle from before
    calibration) the former default."""
    if bundle.ann is None:
        return 0
    fixed = config.probes if bundle.ann.kind == "ivf" else config.ef_search
    calibrated = (bundle.meta.get("ann") or {}).get("breadth")
    return int(fixed or calibrated or ann.LEGACY_BREADTH[bundle.ann.kind])


class LoadedModel:
    """A bundle plus what serving derives from it once: the fold-in, heads, catalog arrays."""

    def __init__(self, bundle: ModelBundle, version: str | None, head_cache_size: int = 50_000,
                 ann_config: AnnConfig | None = None):
        self.bundle, self.version = bundle, version
        ann_config = ann_config or AnnConfig()
        # the index replaces catalog passes at serving's size threshold, whatever training's
        self.ann = (bundle.ann if bundle.ann is not None
                    and len(bundle.item_ids) >= ann_config.min_items else None)
        self.ann_breadth = ann_breadth(bundle, ann_config)
        if self.ann is not None:
            ann.single_threaded()
        meta = bundle.meta
        self.alpha = float(meta.get("alpha", 1.0))
        self.fold_in_kind = str(meta.get("fold_in", "als"))
        if self.fold_in_kind not in FOLD_INS:
            raise ValueError(f"bundle meta fold_in: unknown {self.fold_in_kind!r}, expected "
                             f"one of {', '.join(FOLD_INS)}")
        self.personalized = self.fold_in_kind != "constant"
        self.gram = (als_gram(bundle.item_factors, float(meta.get("regularization", 0.0)))
                     if self.fold_in_kind == "als" else None)
        self.cutoff_ms = int(meta.get("cutoff_ms", 0))
        self.trained = TrainedLog.of(meta, self.cutoff_ms)
        # how training weighed a history (the recency boost): new events are weighed the same;
        # a bundle from before the boost existed was trained without one
        self.matrix = MatrixConfig.model_validate({"recency_boost": 0.0,
                                                   **(meta.get("matrix") or {})})
        # each item's factor norm, for similarity by cosine (a vector, not a normalized copy
        # of the factors: at a million items that copy was as large as the factors)
        factors = bundle.item_factors  # einsum: no squared copy of every factor on the way
        self.item_norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", factors, factors)),
                                     np.float32(1e-12)).astype(np.float32)
        self.scorer = BatchScorer(bundle.item_factors)
        self.heads = CandidateCache(bundle.candidates, bundle.user_factors, bundle.item_factors,
                                    head_cache_size)
        self.head_size = max(self.heads.k, HEAD_SIZE)
        self.popular = list(zip(bundle.item_ids[bundle.popular].tolist(),
                                bundle.popular_scores.tolist(), strict=True))
        self.attributes = AttributeNeighbours.of(bundle)  # None: the bundle has no index
        self.fields = ItemFields.of(bundle.catalog)  # by column: masks per distinct value
        self.field_names = set(self.fields.names)
        self.paths = dict.fromkeys(PATHS, 0)  # how the model tier was filled, since loading
        self._paths_lock = threading.Lock()
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._mask_lock = threading.Lock()

    def after_training(self, timestamp: int, position: int) -> bool:
        """Whether an event came after what the model trained on (`TrainedLog`)."""
        return self.trained.after(timestamp, position)

    def trained_on(self, timestamps: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Of many events, which the model trained on: `not after_training` of each."""
        return self.trained.trained(timestamps, positions)

    def fold_in(self, item_indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A user vector for a history, computed as the family computes it (meta fold_in)."""
        if self.fold_in_kind == "history":  # item-item: the vector is the history itself
            vector = np.zeros(self.bundle.item_factors.shape[1], dtype=np.float32)
            np.add.at(vector, item_indices, weights.astype(np.float32))
            return vector
        if self.fold_in_kind == "constant":  # popularity: one ranking for everyone
            return np.ones(self.bundle.item_factors.shape[1], dtype=np.float32)
        assert self.gram is not None
        return als_fold_in(self.bundle.item_factors, self.gram, item_indices, weights,
                           self.alpha)

    def cosines(self, row: int) -> np.ndarray:
        """Every item's cosine similarity by factors to item `row`."""
        factors = self.bundle.item_factors
        return (factors @ factors[row]) / (self.item_norms * self.item_norms[row])

    def count(self, path: str) -> None:
        with self._paths_lock:
            self.paths[path] += 1

    def item_mask(self, rules: list[Rule]) -> np.ndarray:
        """Which model items pass the item-field rules (cached: filters repeat)."""
        key = tuple(r.key() for r in rules)
        with self._mask_lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        mask = self.fields.mask(rules, self.bundle.item_ids)
        with self._mask_lock:
            self._masks[key] = mask
            if len(self._masks) > _MASKS_KEPT:
                self._masks.popitem(last=False)
        return mask

    def close(self) -> None:
        self.scorer.close()


class TrainedLog:
    """Which events a model trained on. With the raw log's positions in its meta: an event
    read from (or written to) the log at a position past what the marts covered is new,
    whatever its time, and one within it is not; otherwise, as before positions were kept (an
    older bundle, one trained on landing files only, an event not from the log, a segment
    ingest loaded again after the marts were built): an event is new when it is later than the
    latest event trained on (`cutoff_ms`)."""

    def __init__(self, coverage: Coverage | None, cutoff_ms: int):
        self.coverage, self.cutoff_ms = coverage, cutoff_ms
        self._by_number: dict[int, int] = {}  # segment number -> covered bytes or a marker
        self._covered_table = np.zeros(0, dtype=np.int64)  # the same, as an array

    @classmethod
    def of(cls, meta: dict, cutoff_ms: int) -> TrainedLog:
        """Either form of the record: the compact one, or every segment named (older)."""
        return cls(Coverage.of_meta(meta), cutoff_ms)

    def after(self, timestamp: int, position: int) -> bool:
        if self.coverage is None or position == NO_POSITION:
            return timestamp > self.cutoff_ms
        covered = self._covered(position >> OFFSET_BITS)
        if covered == UNKNOWN:
            return timestamp > self.cutoff_ms
        return (position & OFFSET_MASK) > covered  # UNSEEN: any line ends past it; WHOLE: none

    def trained(self, timestamps: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """`not after` of each event, as array operations (int64 arrays, as many of each)."""
        by_time = timestamps <= self.cutoff_ms
        known = positions != NO_POSITION
        if self.coverage is None or not known.any():
            return by_time
        numbers = np.where(known, positions >> OFFSET_BITS, 0)
        covered = self._table(int(numbers.max()) + 1)[numbers]
        by_position = (positions & OFFSET_MASK) <= covered
        return np.where(known & (covered != UNKNOWN), by_position, by_time)

    def _table(self, size: int) -> np.ndarray:
        """`_covered` of segment numbers 0 to size - 1 at least, as an array (kept, and only
        extended by the segments numbered since)."""
        table = self._covered_table
        if len(table) < size:
            added = np.fromiter((self._covered(n) for n in range(len(table), size)),
                                dtype=np.int64, count=size - len(table))
            table = self._covered_table = np.concatenate([table, added])
        return table

    def _covered(self, number: int) -> int:
        """A segment's covered bytes, or WHOLE / UNKNOWN / UNSEEN (sluice.intake.log_coverage)."""
        assert self.coverage is not None
        covered = self._by_number.get(number)
        if covered is None:  # once per segment: a dict read after that
            name, _ = unpack(number << OFFSET_BITS)
            covered = self._by_number[number] = self.coverage.of_segment(name)
        return covered
