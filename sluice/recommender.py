"""Recommendation answers: templates chain source tiers, every slot says where it came from.

Tier 1 is the template's primary (the model), tier 2 precomputed popular items, tier 3 random
catalog items (only with fill_with_random). The counts of DESIGN.md are derived from the
slots, so their relationships hold by construction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sluice.bundle import ModelBundle
from sluice.filters import Rule, allowed
from sluice.models import als_fold_in, als_gram
from sluice.realtime import RealtimeState
from sluice.scoring import BatchScorer, top_n, top_n_blocked

MODEL_PERSONALIZED = "model_personalized"
MODEL_NON_PERSONALIZED = "model_non_personalized"
MODEL_FALLBACK = "model_fallback"
FALLBACK = "fallback"
SOURCES = (MODEL_PERSONALIZED, MODEL_NON_PERSONALIZED, MODEL_FALLBACK, FALLBACK)
LOG_POPULAR_SIZE = 1000
TEMPLATES = ("personalized", "similar_items", "popular", "filter_based", "recently_viewed")


class RecommendationError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass
class Slot:
    item_id: str
    score: float
    position: int
    recommendation_source: str


@dataclass
class Request:
    tenant: str = "default"
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    template: str = "personalized"
    num_results: int = 25
    fill_with_random: bool = True
    exclude_seen: bool = True
    exclude_ids: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Answer:
    recommendation_id: str
    model_version: str | None
    template: str
    items: list[Slot]

    def counts(self) -> dict[str, int]:
        by = dict.fromkeys(SOURCES, 0)
        for slot in self.items:
            by[slot.recommendation_source] += 1
        personalized = by[MODEL_PERSONALIZED]
        non_personalized = by[MODEL_NON_PERSONALIZED] + by[MODEL_FALLBACK]
        return {
            "personalized_count": personalized,
            "model_personalized_count": by[MODEL_PERSONALIZED],
            "model_non_personalized_count": by[MODEL_NON_PERSONALIZED],
            "model_fallback_count": by[MODEL_FALLBACK],
            "fallback_count": by[FALLBACK],
            "non_personalized_count": non_personalized,
            "total": personalized + non_personalized + by[FALLBACK],
        }

    def as_dict(self) -> dict[str, Any]:
        return {"recommendation_id": self.recommendation_id, "model_version": self.model_version,
                "template": self.template,
                "items": [slot.__dict__ for slot in self.items], **self.counts()}


class LoadedModel:
    """A bundle plus what serving derives from it once (ALS gram, catalog arrays)."""

    def __init__(self, bundle: ModelBundle, version: str | None):
        self.bundle, self.version = bundle, version
        meta = bundle.meta
        self.alpha = float(meta.get("alpha", 1.0))
        self.gram = als_gram(bundle.item_factors, float(meta.get("regularization", 0.0)))
        self.cutoff_ms = int(meta.get("cutoff_ms", 0))
        norms = np.linalg.norm(bundle.item_factors, axis=1, keepdims=True)
        self.unit_items = bundle.item_factors / np.maximum(norms, 1e-12)
        self.scorer = BatchScorer(bundle.item_factors)
        self.field_names = {name for fields in bundle.catalog.values() for name in fields}
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._mask_lock = threading.Lock()

    def item_mask(self, rules: list[Rule]) -> np.ndarray:
        """Which model items pass the item-field rules (cached: filters repeat)."""
        key = tuple(r.key() for r in rules)
        with self._mask_lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        catalog = self.bundle.catalog
        mask = np.fromiter((allowed(rules, catalog.get(i, {}), set())
                            for i in self.bundle.item_ids.tolist()), dtype=bool,
                           count=len(self.bundle.item_ids))
        with self._mask_lock:
            self._masks[key] = mask
            if len(self._masks) > 256:
                self._masks.popitem(last=False)
        return mask

    def close(self) -> None:
        self.scorer.close()


class Recommender:
    """Answers one tenant's requests from its model (maybe none yet) and the real-time state."""

    def __init__(self, tenant: str, model: LoadedModel | None, state: RealtimeState,
                 weights: dict[str, float], seed: int | None = None, cache_size: int = 50_000):
        self.tenant, self.model, self.state, self.weights = tenant, model, state, weights
        self._rng = np.random.default_rng(seed)
        self._vectors: OrderedDict[str, tuple[int, np.ndarray | None]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._catalog: tuple[int, list[str]] | None = None
        self._log_popular_cache: tuple[int, float, list[tuple[str, float]]] | None = None

    # --- what the user has done -------------------------------------------------------
    def _seen(self, key: str | None) -> tuple[set[str], list[tuple[int, float]]]:
        """Item ids the user interacted with, and (item index, weight) pairs to fold in."""
        seen: set[str] = set()
        pairs: list[tuple[int, float]] = []
        if key is None:
            return seen, pairs
        model = self.model
        if model is not None:
            row = model.bundle.user_index.get(key)
            if row is not None:
                ui = model.bundle.user_items
                start, end = ui.indptr[row], ui.indptr[row + 1]
                seen.update(model.bundle.item_ids[ui.indices[start:end]].tolist())
        cutoff = model.cutoff_ms if model is not None else 0
        for event in self.state.history(self.tenant, key):
            seen.add(event.item_id)
            weight = self.weights.get(event.type)
            if model is None or weight is None or event.timestamp <= cutoff:
                continue
            index = model.bundle.item_index.get(event.item_id)
            if index is not None:
                pairs.append((index, weight))
        return seen, pairs

    def _user_vector(self, key: str, new: list[tuple[int, float]]) -> np.ndarray | None:
        model = self.model
        assert model is not None
        version = self.state.version(self.tenant, key)
        with self._lock:
            cached = self._vectors.get(key)
            if cached is not None and cached[0] == version:
                self._vectors.move_to_end(key)
                return cached[1]
        row = model.bundle.user_index.get(key)
        if row is not None and not new:
            vector: np.ndarray | None = model.bundle.user_factors[row]
        else:
            weights: dict[int, float] = {}
            if row is not None:
                ui = model.bundle.user_items
                for i, w in zip(ui.indices[ui.indptr[row]:ui.indptr[row + 1]],
                                ui.data[ui.indptr[row]:ui.indptr[row + 1]], strict=True):
                    weights[int(i)] = float(w)
            for i, w in new:
                weights[i] = weights.get(i, 0.0) + w
            vector = None
            if weights:
                idx = np.fromiter(weights.keys(), dtype=np.int64)
                vector = als_fold_in(model.bundle.item_factors, model.gram, idx,
                                     np.fromiter(weights.values(), dtype=np.float64), model.alpha)
        with self._lock:
            self._vectors[key] = (version, vector)
            if len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
        return vector

    # --- tiers ----------------------------------------------------------------------------
    def recommend(self, req: Request) -> Answer:
        if req.template not in TEMPLATES:
            raise RecommendationError("template", f"must be one of {', '.join(TEMPLATES)}")
        key = self.state.user_key(self.tenant, req.user_id, req.session_id)
        seen, new = self._seen(key)
        blocked = set(req.exclude_ids) | (seen if req.exclude_seen else set())
        passes = self._filter(req.rules, key)
        slots: list[Slot] = []
        taken: set[str] = set()

        def add(candidates: list[tuple[str, float]], source: str) -> None:
            for item_id, score in candidates:
                if len(slots) >= req.num_results:
                    return
                if item_id in taken or item_id in blocked or not passes(item_id):
                    continue
                taken.add(item_id)
                slots.append(Slot(item_id, round(float(score), 6), len(slots) + 1, source))

        want = req.num_results + len(blocked)
        if req.template == "personalized":
            if key is not None and self.model is not None:
                add(self._personalized(key, new, want, blocked, req.rules), MODEL_PERSONALIZED)
            if len(slots) < req.num_results:
                add(self._popular(), MODEL_FALLBACK)
        elif req.template == "popular":
            add(self._popular(), MODEL_NON_PERSONALIZED)
        elif req.template == "similar_items":
            if not req.item_id:
                raise RecommendationError("item_id", "required by the similar_items template")
            blocked.add(req.item_id)
            add(self._similar(req.item_id, want + 1, req.rules), MODEL_PERSONALIZED)
        elif req.template == "recently_viewed":
            history = self.state.history(self.tenant, key)
            recent = list(dict.fromkeys(e.item_id for e in reversed(history)))
            blocked.difference_update(recent)
            add([(item, 0.0) for item in recent], MODEL_PERSONALIZED)
        if (req.fill_with_random or req.template == "filter_based") and (
                len(slots) < req.num_results):
            add(self._random(req.num_results - len(slots), taken | blocked, passes), FALLBACK)
        version = self.model.version if self.model is not None else None
        return Answer(uuid.uuid4().hex, version, req.template, slots)

    def known_fields(self) -> set[str]:
        names = set(self.model.field_names) if self.model is not None else set()
        for fields in list(self.state.tenant(self.tenant).items.values()):
            names.update(fields)
        return names

    def fields(self, item_id: str) -> dict[str, Any]:
        live = self.state.tenant(self.tenant).items.get(item_id)
        if live is not None:
            return live
        return self.model.bundle.catalog.get(item_id, {}) if self.model is not None else {}

    def _filter(self, rules: list[Rule], key: str | None):
        if not rules:
            return lambda item_id: True
        types: dict[str, set[str]] = {}
        if any(r.source == "interactions" for r in rules):
            for event in self.state.history(self.tenant, key):
                types.setdefault(event.item_id, set()).add(event.type)
        return lambda item_id: allowed(rules, self.fields(item_id), types.get(item_id, set()))

    def rank(self, req: Request, item_ids: list[str]) -> Answer:
        """Reorder `item_ids` for the user; items the model cannot score keep their order, last."""
        key = self.state.user_key(self.tenant, req.user_id, req.session_id)
        given = list(dict.fromkeys(item_ids))
        model = self.model
        scored: list[tuple[str, float]] = []
        source = MODEL_PERSONALIZED
        if model is not None:
            known = [i for i in given if i in model.bundle.item_index]
            _, new = self._seen(key)
            vector = self._user_vector(key, new) if key is not None else None
            if vector is not None and known:
                idx = np.fromiter((model.bundle.item_index[i] for i in known), dtype=np.int64)
                values = model.bundle.item_factors[idx] @ vector
                scored = [(known[j], float(values[j])) for j in np.argsort(-values, kind="stable")]
            else:
                popularity = dict(zip(model.bundle.item_ids[model.bundle.popular].tolist(),
                                      model.bundle.popular_scores.tolist(), strict=True))
                scored = sorted(((i, popularity[i]) for i in known if i in popularity),
                                key=lambda pair: -pair[1])
                source = MODEL_FALLBACK
        ranked = {i for i, _ in scored}
        slots = [Slot(i, round(score, 6), n + 1, source) for n, (i, score) in enumerate(scored)]
        slots += [Slot(i, 0.0, len(slots) + n + 1, FALLBACK)
                  for n, i in enumerate(i for i in given if i not in ranked)]
        version = model.version if model is not None else None
        return Answer(uuid.uuid4().hex, version, "ranking", slots)

    def _personalized(self, key: str, new: list[tuple[int, float]], n: int,
                      blocked: set[str], rules: list[Rule]) -> list[tuple[str, float]]:
        vector = self._user_vector(key, new)
        if vector is None:
            return []
        model = self.model
        assert model is not None
        bundle = model.bundle
        scores = model.scorer.score(vector)  # a fresh row: safe to mask in place
        exclude = [bundle.item_index[i] for i in blocked if i in bundle.item_index]
        if exclude:
            scores[exclude] = -np.inf
        item_rules = [r for r in rules if r.source == "items"]
        if item_rules:
            scores[~model.item_mask(item_rules)] = -np.inf
        picks = top_n_blocked(scores, n)
        return list(zip(bundle.item_ids[picks].tolist(), scores[picks].tolist(), strict=True))

    def _popular(self) -> list[tuple[str, float]]:
        if self.model is None:
            return self._log_popular()
        bundle = self.model.bundle
        return list(zip(bundle.item_ids[bundle.popular].tolist(),
                        bundle.popular_scores.tolist(), strict=True))

    def _log_popular(self) -> list[tuple[str, float]]:
        """Without a model: the items most interacted with in the log, recounted at most once
        a second (and only when new interactions arrived)."""
        seen = self.state.tenant(self.tenant).interactions
        now = time.monotonic()
        cached = self._log_popular_cache
        if cached is None or (cached[0] != seen and now - cached[1] >= 1.0):
            cached = self._log_popular_cache = (seen, now, self.state.popular(
                self.tenant, LOG_POPULAR_SIZE))
        return cached[2]

    def _similar(self, item_id: str, n: int, rules: list[Rule]) -> list[tuple[str, float]]:
        """The trained similar-items index first (when the bundle has one), then the nearest
        items by factor cosine, so filters or a long answer never run the tier dry."""
        if self.model is None or item_id not in self.model.bundle.item_index:
            return []
        bundle = self.model.bundle
        row = bundle.item_index[item_id]
        indexed: list[tuple[str, float]] = []
        if bundle.similar is not None:
            start, end = bundle.similar.indptr[row], bundle.similar.indptr[row + 1]
            neighbours = bundle.similar.indices[start:end]
            weights = bundle.similar.data[start:end]
            order = np.argsort(-weights, kind="stable")
            indexed = [(str(bundle.item_ids[neighbours[j]]), float(weights[j])) for j in order
                       if neighbours[j] != row]
        unit = self.model.unit_items
        scores = unit @ unit[row]
        item_rules = [r for r in rules if r.source == "items"]
        if item_rules:
            scores[~self.model.item_mask(item_rules)] = -np.inf
        picks = top_n(scores, n)
        return indexed + list(zip(bundle.item_ids[picks].tolist(), scores[picks].tolist(),
                                  strict=True))

    def catalog(self) -> list[str]:
        """Model items, catalog snapshot and items seen in the log since (cached)."""
        live = self.state.tenant(self.tenant).items
        if self._catalog is None or self._catalog[0] != len(live):
            items: dict[str, None] = {}
            if self.model is not None:
                items.update(dict.fromkeys(self.model.bundle.item_ids.tolist()))
                items.update(dict.fromkeys(self.model.bundle.catalog))
            items.update(dict.fromkeys(list(live)))
            self._catalog = (len(live), list(items))
        return self._catalog[1]

    def _random(self, n: int, exclude: set[str], passes) -> list[tuple[str, float]]:
        """Up to n random catalog items that pass the filters, visited in random order."""
        if n <= 0:
            return []
        pool = self.catalog()
        if not pool:
            return []
        picked: list[tuple[str, float]] = []
        chosen: set[str] = set()
        # a small draw first (cheap on a large catalog); the whole catalog only if it falls short
        first = min(len(pool), 4 * n + len(exclude) + 16)
        for order in (self._rng.choice(len(pool), size=first, replace=False),
                      self._rng.permutation(len(pool))):
            for i in order:
                item_id = pool[i]
                if item_id in exclude or item_id in chosen or not passes(item_id):
                    continue
                chosen.add(item_id)
                picked.append((item_id, 0.0))
                if len(picked) >= n:
                    return picked
            if first == len(pool):
                break
        return picked
        return picked
