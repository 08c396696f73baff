"""Recommendation answers: templates chain source tiers, every slot says where it came from.

Tier 1 is the template's primary (the model), tier 2 precomputed popular items, tier 3 random
catalog items (only with fill_with_random). The counts of docs/architecture.md are derived
from the slots, so their relationships hold by construction.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sluice.bundle import ModelBundle
from sluice.filters import Rule, allowed
from sluice.learn.models import als_fold_in, als_gram
from sluice.scoring import BatchScorer, top_n, top_n_blocked
from sluice.serve.candidates import CandidateCache, Head, head_of
from sluice.serve.realtime import Interaction, RealtimeState

MODEL_PERSONALIZED = "model_personalized"
MODEL_NON_PERSONALIZED = "model_non_personalized"
MODEL_FALLBACK = "model_fallback"
FALLBACK = "fallback"
SOURCES = (MODEL_PERSONALIZED, MODEL_NON_PERSONALIZED, MODEL_FALLBACK, FALLBACK)
LOG_POPULAR_SIZE = 1000
TEMPLATES = ("personalized", "similar_items", "popular", "filter_based", "recently_viewed")
FOLD_INS = ("als", "history", "constant")  # bundle meta fold_in, set by each model family
HEAD_SIZE = 100  # the head kept of a ranking computed while serving
# how an answer's model tier was filled: the trained head, a head kept from an earlier pass,
# or a pass over every item
PATHS = ("precomputed", "kept", "pass")
Passes = Callable[[str], bool]  # whether an item id passes the request's filters


class _Ids:
    """Unique 32-hex-digit answer ids: 16 random digits drawn once per process, then a count.

    A uuid4 per answer reads os.urandom each time, about 25 us here: a tenth of an answer.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():  # a new process (a forked worker) draws its own prefix
            self._prefix, self._count, self._pid = os.urandom(8).hex(), itertools.count(), (
                os.getpid())
        return f"{self._prefix}{next(self._count):016x}"


new_id = _Ids()


class RecommendationError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(slots=True)
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
    context: dict[str, str] = field(default_factory=dict)  # logged with the answer


MAX_CONTEXT = 32


def parse_context(raw: Any, where: str = "context") -> dict[str, str]:
    """The request's context (device, page, ...): up to 32 short string values by name.

    It does not change the ranking; it is logged with the answer so that outcomes can be
    read by context."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_CONTEXT:
        raise RecommendationError(where, f"a map of at most {MAX_CONTEXT} names to strings")
    for name, value in raw.items():
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise RecommendationError(where, "names are strings of 1 to 64 characters")
        if not isinstance(value, str) or len(value) > 1000:
            raise RecommendationError(f"{where}.{name}", "a string of at most 1000 characters")
    return dict(raw)


@dataclass
class Answer:
    recommendation_id: str
    model_version: str | None
    template: str
    items: list[Slot]
    _counts: dict[str, int] | None = field(default=None, init=False, repr=False)

    def counts(self) -> dict[str, int]:
        if self._counts is None:
            self._counts = self._count()
        return self._counts

    def _count(self) -> dict[str, int]:
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
                "items": [{"item_id": slot.item_id, "score": slot.score,
                           "position": slot.position,
                           "recommendation_source": slot.recommendation_source}
                          for slot in self.items], **self.counts()}


class NeedsScan(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """The answer needs a pass over the whole catalog, and the caller asked for none.

    Raised by `Recommender.recommend(..., scan=False)`: a caller on an event loop answers
    the common case at once and hands this one to a thread.
    """


class LoadedModel:
    """A bundle plus what serving derives from it once: the fold-in, heads, catalog arrays."""

    def __init__(self, bundle: ModelBundle, version: str | None, head_cache_size: int = 50_000):
        self.bundle, self.version = bundle, version
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
        norms = np.linalg.norm(bundle.item_factors, axis=1, keepdims=True)
        self.unit_items = bundle.item_factors / np.maximum(norms, 1e-12)
        self.scorer = BatchScorer(bundle.item_factors)
        self.heads = CandidateCache(bundle.candidates, bundle.user_factors, bundle.item_factors,
                                    head_cache_size)
        self.head_size = max(self.heads.k, HEAD_SIZE)
        self.popular = list(zip(bundle.item_ids[bundle.popular].tolist(),
                                bundle.popular_scores.tolist(), strict=True))
        self.field_names = {name for fields in bundle.catalog.values() for name in fields}
        self.paths = dict.fromkeys(PATHS, 0)  # how the model tier was filled, since loading
        self._paths_lock = threading.Lock()
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._mask_lock = threading.Lock()

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
    def _trained_items(self, key: str | None) -> np.ndarray:
        """Indices of the items the model was trained on for this user (none if unknown)."""
        model = self.model
        row = model.bundle.user_index.get(key) if model is not None and key else None
        if row is None:
            return np.empty(0, dtype=np.int32)
        # union-attr: only reached with a model loaded (the caller checked)
        ui = model.bundle.user_items  # type: ignore[union-attr]
        return ui.indices[ui.indptr[row]:ui.indptr[row + 1]]

    def _seen(self, key: str | None, history: list[Interaction]) -> set[str]:
        """Item ids the user interacted with: in training and in the log."""
        seen = {event.item_id for event in history}
        trained = self._trained_items(key)
        if len(trained):
            # union-attr: only reached with a model loaded (the caller checked)
            seen.update(self.model.bundle.item_ids[trained].tolist())  # type: ignore[union-attr]
        return seen

    def _new_pairs(self, history: list[Interaction]) -> list[tuple[int, float]]:
        """(item index, weight) of the events after the model's cutoff, to fold in."""
        model = self.model
        if model is None:
            return []
        pairs = []
        for event in history:
            weight = self.weights.get(event.type)
            if weight is None or event.timestamp <= model.cutoff_ms:
                continue
            index = model.bundle.item_index.get(event.item_id)
            if index is not None:
                pairs.append((index, weight))
        return pairs

    def _user_vector(self, key: str, version: int,
                     new: list[tuple[int, float]]) -> np.ndarray | None:
        model = self.model
        assert model is not None
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
                vector = model.fold_in(np.fromiter(weights.keys(), dtype=np.int64),
                                       np.fromiter(weights.values(), dtype=np.float64))
        with self._lock:
            self._vectors[key] = (version, vector)
            if len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
        return vector

    # --- tiers ----------------------------------------------------------------------------
    def recommend(self, req: Request, scan: bool = True) -> Answer:
        """The template's chain of tiers; with scan=False, NeedsScan instead of a catalog pass."""
        if req.template not in TEMPLATES:
            raise RecommendationError("template", f"must be one of {', '.join(TEMPLATES)}")
        key = self.state.user_key(self.tenant, req.user_id, req.session_id)
        version = self.state.version(self.tenant, key) if key is not None else 0
        history = self.state.history(self.tenant, key)  # after the version: never newer
        passes = self._filter(req.rules, history)
        excluded = set(req.exclude_ids)
        recent = {event.item_id for event in history} if req.exclude_seen else set()
        lower: list[set[str]] = []

        def blocked() -> set[str]:
            """Excluded and seen items: built once, only when a lower tier runs."""
            if not lower:
                seen = self._seen(key, history) if req.exclude_seen else set()
                lower.append(excluded | seen)
            return lower[0]

        slots: list[Slot] = []
        taken: set[str] = set()
        paths: list[str] = []  # counted once the answer is complete (NeedsScan reruns it)

        def add(candidates: list[tuple[str, float]], source: str, skip: set[str]) -> None:
            for item_id, score in candidates:
                if len(slots) >= req.num_results:
                    return
                if item_id in taken or item_id in skip or (
                        passes is not None and not passes(item_id)):
                    continue
                taken.add(item_id)
                slots.append(Slot(item_id, round(float(score), 6), len(slots) + 1, source))

        n = req.num_results
        model = self.model
        if req.template == "personalized":
            if key is not None and model is not None:
                source = MODEL_PERSONALIZED if model.personalized else MODEL_NON_PERSONALIZED
                skip = excluded | recent
                add(self._personalized(key, version, history, n, skip, passes, req, scan,
                                       paths), source, skip)
            if len(slots) < n:
                add(self._popular(), MODEL_FALLBACK, blocked())
        elif req.template == "popular":
            add(self._popular(), MODEL_NON_PERSONALIZED, blocked())
        elif req.template == "similar_items":
            if not req.item_id:
                raise RecommendationError("item_id", "required by the similar_items template")
            skip = blocked() | {req.item_id}
            add(self._similar(req.item_id, n, skip, passes, req.rules, scan),
                MODEL_PERSONALIZED, skip)
        elif req.template == "recently_viewed":
            recent_first = list(dict.fromkeys(e.item_id for e in reversed(history)))
            add([(item, 0.0) for item in recent_first], MODEL_PERSONALIZED,
                blocked() - set(recent_first))
        if (req.fill_with_random or req.template == "filter_based") and len(slots) < n:
            add(self._random(n - len(slots), taken | blocked(), passes, scan), FALLBACK,
                blocked())
        version_served = model.version if model is not None else None
        if model is not None:
            for path in paths:
                model.count(path)
        return Answer(new_id(), version_served, req.template, slots)

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

    def _filter(self, rules: list[Rule], history: list[Interaction]) -> Passes | None:
        """A predicate on item ids for the rules; None when there are none (nothing to call)."""
        if not rules:
            return None
        types: dict[str, set[str]] = {}
        if any(r.source == "interactions" for r in rules):
            for event in history:
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
            vector = None
            if key is not None:
                version = self.state.version(self.tenant, key)
                new = self._new_pairs(self.state.history(self.tenant, key))
                vector = self._user_vector(key, version, new)
            if vector is not None and known:
                idx = np.fromiter((model.bundle.item_index[i] for i in known), dtype=np.int64)
                values = model.bundle.item_factors[idx] @ vector
                scored = [(known[j], float(values[j])) for j in np.argsort(-values, kind="stable")]
                if not model.personalized:
                    source = MODEL_NON_PERSONALIZED
            else:
                popularity = dict(model.popular)
                scored = sorted(((i, popularity[i]) for i in known if i in popularity),
                                key=lambda pair: -pair[1])
                source = MODEL_FALLBACK
        ranked = {i for i, _ in scored}
        slots = [Slot(i, round(score, 6), n + 1, source) for n, (i, score) in enumerate(scored)]
        slots += [Slot(i, 0.0, len(slots) + n + 1, FALLBACK)
                  for n, i in enumerate(i for i in given if i not in ranked)]
        version_served = model.version if model is not None else None
        return Answer(new_id(), version_served, "ranking", slots)

    def _personalized(self, key: str, version: int, history: list[Interaction], n: int,
                      skip: set[str], passes: Passes | None, req: Request, scan: bool,
                      paths: list[str]) -> list[tuple[str, float]]:
        """The model's best n for the user, from the head of the user's ranking when it can
        fill them (kept from training, or from this user's last pass), else from a pass over
        every item with the filters applied. Appends to `paths` which of the three it was."""
        model = self.model
        assert model is not None
        new = self._new_pairs(history)
        scores = None
        head = None
        if req.exclude_seen:
            path = "precomputed"
            if not new:
                head = model.heads.precomputed(model.bundle.user_index.get(key))
            if head is None:
                path, head = "kept", model.heads.get(key, version)
            if head is None:
                scores = self._scores(key, version, new, history, scan, exclude_seen=True)
                if scores is None:
                    return []
                path, head = "pass", head_of(scores, model.head_size)
                model.heads.put(key, version, head)
            picked = self._from_head(head, n, skip, passes)
            if len(picked) >= n or head.complete:
                paths.append(path)
                return picked
        if scores is None:
            scores = self._scores(key, version, new, history, scan, req.exclude_seen)
            if scores is None:
                return []
        paths.append("pass")
        index = model.bundle.item_index
        excluded = [index[i] for i in skip if i in index]
        if excluded:
            scores[excluded] = -np.inf
        item_rules = [r for r in req.rules if r.source == "items"]
        if item_rules:
            scores[~model.item_mask(item_rules)] = -np.inf
        # interaction rules are not in the mask: room for the user's own items to fail them
        picks = top_n_blocked(scores, n + (len(history) if req.rules else 0))
        return list(zip(model.bundle.item_ids[picks].tolist(), scores[picks].tolist(),
                        strict=True))

    def _scores(self, key: str, version: int, new: list[tuple[int, float]],
                history: list[Interaction], scan: bool,
                exclude_seen: bool) -> np.ndarray | None:
        """Every item's score for the user, seen items at -inf when excluded (a catalog pass)."""
        if not scan:
            raise NeedsScan
        model = self.model
        assert model is not None
        vector = self._user_vector(key, version, new)
        if vector is None:
            return None
        scores = model.scorer.score(vector)  # a fresh row: safe to mask in place
        if exclude_seen:
            index = model.bundle.item_index
            scores[self._trained_items(key)] = -np.inf
            scores[[index[e.item_id] for e in history if e.item_id in index]] = -np.inf
        return scores

    def _from_head(self, head: Head, n: int, skip: set[str],
                   passes: Passes | None) -> list[tuple[str, float]]:
        picked: list[tuple[str, float]] = []
        # union-attr: only reached with a model loaded (the caller checked)
        ids = self.model.bundle.item_ids[head.items].tolist()  # type: ignore[union-attr]
        for item_id, score in zip(ids, head.scores.tolist(), strict=True):
            if item_id not in skip and (passes is None or passes(item_id)):
                picked.append((item_id, score))
                if len(picked) >= n:
                    break
        return picked

    def _popular(self) -> list[tuple[str, float]]:
        if self.model is None:
            return self._log_popular()
        return self.model.popular

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

    def _similar(self, item_id: str, n: int, skip: set[str], passes: Passes | None,
                 rules: list[Rule], scan: bool) -> list[tuple[str, float]]:
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
            if sum(1 for i, _ in indexed
                   if i not in skip and (passes is None or passes(i))) >= n:
                return indexed
        if not scan:
            raise NeedsScan
        unit = self.model.unit_items
        scores = unit @ unit[row]
        item_rules = [r for r in rules if r.source == "items"]
        if item_rules:
            scores[~self.model.item_mask(item_rules)] = -np.inf
        picks = top_n(scores, n + len(skip) + len(indexed) + 1)
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

    def _random(self, n: int, exclude: set[str], passes: Passes | None,
                scan: bool = True) -> list[tuple[str, float]]:
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
        if 4 * first >= len(pool):
            orders: list[np.ndarray | None] = [self._rng.permutation(len(pool))]
        else:  # distinct indices in random order, then the whole catalog if they fall short
            sample = np.unique(self._rng.integers(0, len(pool), size=first))
            orders = [self._rng.permutation(sample), None]
        for order in orders:
            if order is None:
                if not scan:
                    raise NeedsScan
                order = self._rng.permutation(len(pool))
            for i in order.tolist():
                item_id = pool[i]
                if item_id in exclude or item_id in chosen or (
                        passes is not None and not passes(item_id)):
                    continue
                chosen.add(item_id)
                picked.append((item_id, 0.0))
                if len(picked) >= n:
                    return picked
        return picked
