"""The tiers an answer is filled from, and each template as a declared list of them.

A tier adds candidates to the answer being filled (a `Draft`) under its source; the slots it
cannot fill fall to the next tier of the template's list. Tier 1 is the template's primary
(the model), tier 2 the popular items, tier 3 random catalog items (with fill_with_random).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sluice.scoring import top_n, top_n_blocked
from sluice.serve.answers import NeedsScan, RecommendationError, RecommendationRequest, Slot
from sluice.serve.candidates import Head, head_of
from sluice.serve.catalog import Passes
from sluice.serve.exploration import explore
from sluice.serve.realtime import Interaction
from sluice.serve.retrieval import ann_head, ann_top
from sluice.vocabulary import (
    FALLBACK,
    FILTER_BASED,
    MODEL_FALLBACK,
    MODEL_NON_PERSONALIZED,
    MODEL_PERSONALIZED,
    PERSONALIZED,
    POPULAR,
    RECENTLY_VIEWED,
    SIMILAR_ATTRIBUTES,
    SIMILAR_ITEMS,
)

if TYPE_CHECKING:
    from sluice.serve.recommender import Recommender

Candidates = list[tuple[str, float]]


@dataclass
class Draft:
    """An answer being filled, tier by tier, with what the tiers share about the request."""

    rec: Recommender
    req: RecommendationRequest
    key: str | None  # the user (or anonymous session) key; None: nobody to personalize for
    version: int
    history: list[Interaction]
    passes: Passes
    scan: bool
    slots: list[Slot] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)  # counted once the answer is complete
    exploration_pool: int = 0  # the pool the model tier explored from (0: no exploration)
    _blocked: set[str] | None = None

    @property
    def wanted(self) -> int:
        return self.req.num_results

    @property
    def ranked(self) -> int:
        """How many of the model's candidates the tier needs: twice n when it explores."""
        return self.wanted * (2 if self.req.exploration > 0 else 1)

    @property
    def short(self) -> bool:
        return len(self.slots) < self.wanted

    @property
    def excluded(self) -> set[str]:
        """The request's exclusions, and the item it asks about: never in its own answer."""
        return set(self.req.exclude_ids) | ({self.req.item_id} if self.req.item_id else set())

    def recent(self) -> set[str]:
        """The items of the logged history, when seen items are excluded."""
        return {e.item_id for e in self.history} if self.req.exclude_seen else set()

    def blocked(self) -> set[str]:
        """Excluded and seen items: built once, only when a lower tier runs."""
        if self._blocked is None:
            seen = (self.rec.users.seen(self.key, self.history) if self.req.exclude_seen
                    else set())
            self._blocked = self.excluded | seen
        return self._blocked

    def add(self, candidates: Candidates, source: str, skip: set[str],
            propensity: float = 1.0) -> None:
        for item_id, score in self._eligible(candidates, skip):  # lazy: stops when full
            if len(self.slots) >= self.wanted:
                return
            self.place(item_id, score, source, propensity)

    def eligible(self, candidates: Candidates, skip: set[str]) -> Candidates:
        """The candidates not yet taken, not skipped and passing the filters, in order."""
        return list(self._eligible(candidates, skip))

    def _eligible(self, candidates: Candidates, skip: set[str]) -> Iterator[tuple[str, float]]:
        return ((item_id, score) for item_id, score in candidates
                if item_id not in self.taken and item_id not in skip
                and (self.passes is None or self.passes(item_id)))

    def place(self, item_id: str, score: float, source: str, propensity: float,
              explored: bool = False) -> None:
        self.taken.add(item_id)
        self.slots.append(Slot(item_id, round(float(score), 6), len(self.slots) + 1, source,
                               propensity, explored))


Tier = Callable[[Draft], None]


def model_tier(draft: Draft) -> None:
    """The model's best items for the user (personalized, or one ranking for everyone)."""
    model = draft.rec.model
    if draft.key is None or model is None:
        return
    source = MODEL_PERSONALIZED if model.personalized else MODEL_NON_PERSONALIZED
    skip = draft.excluded | draft.recent()
    if draft.req.exploration <= 0:
        draft.add(_model_candidates(draft, skip), source, skip)
        return
    placed, draft.exploration_pool = explore(
        draft.eligible(_model_candidates(draft, skip), skip), draft.wanted - len(draft.slots),
        draft.req.exploration, draft.rec.rng)
    for item_id, score, propensity, explored in placed:
        draft.place(item_id, score, source, propensity, explored)


def popular_fallback(draft: Draft) -> None:
    """Popular items where the model falls short."""
    if draft.short:
        draft.add(draft.rec.catalog.popular(), MODEL_FALLBACK, draft.blocked())


def popular_tier(draft: Draft) -> None:
    draft.add(draft.rec.catalog.popular(), MODEL_NON_PERSONALIZED, draft.blocked())


def similar_tier(draft: Draft) -> None:
    item_id = _item_id(draft, SIMILAR_ITEMS)
    skip = draft.blocked() | {item_id}
    draft.add(_similar_candidates(draft, item_id, skip), MODEL_PERSONALIZED, skip)


def recently_viewed_tier(draft: Draft) -> None:
    """The user's own history, most recent first (seen items are the point here)."""
    recent_first = list(dict.fromkeys(e.item_id for e in reversed(draft.history)))
    draft.add([(item, 0.0) for item in recent_first], MODEL_PERSONALIZED,
              draft.blocked() - set(recent_first))


def random_tier(draft: Draft) -> None:
    """Random catalog items for the slots still empty (the primary of filter_based)."""
    if draft.short:
        catalog = draft.rec.catalog
        # a uniform draw: 1 / catalog size is the propensity before filters (a lower bound)
        draft.add(catalog.random(draft.wanted - len(draft.slots), draft.taken | draft.blocked(),
                                 draft.passes, draft.scan), FALLBACK, draft.blocked(),
                  1.0 / max(1, len(catalog.items())))


def random_fill(draft: Draft) -> None:
    """The random tier, when the request allows it (fill_with_random)."""
    if draft.req.fill_with_random:
        random_tier(draft)


def attributes_tier(draft: Draft) -> None:
    """The item's neighbours by its fields (a new item's from its live fields)."""
    _attributes_of(draft, _item_id(draft, SIMILAR_ATTRIBUTES))


def cold_attributes_tier(draft: Draft) -> None:
    """similar_items of an item with too few interactions: its attribute neighbours first."""
    item_id = _item_id(draft, SIMILAR_ITEMS)
    model = draft.rec.model
    if model is None or model.attributes is None:
        return
    in_log = draft.rec.state.tenant(draft.rec.tenant).held.count(item_id)
    row = model.bundle.item_index.get(item_id)
    if row is not None and draft.rec.trained_in_log is not None:
        in_log -= int(draft.rec.trained_in_log[row])  # counted in the trained users already
    interactions = model.attributes.trained_interactions(item_id) + max(in_log, 0)
    if interactions < model.attributes.cold_below:
        _attributes_of(draft, item_id)


def _attributes_of(draft: Draft, item_id: str) -> None:
    skip = draft.blocked() | {item_id}
    draft.add(attribute_candidates(draft, item_id, skip), MODEL_NON_PERSONALIZED, skip)


CHAINS: dict[str, tuple[Tier, ...]] = {
    PERSONALIZED: (model_tier, popular_fallback, random_fill),
    SIMILAR_ITEMS: (cold_attributes_tier, similar_tier, random_fill),
    SIMILAR_ATTRIBUTES: (attributes_tier, random_fill),
    POPULAR: (popular_tier, random_fill),
    FILTER_BASED: (random_tier,),
    RECENTLY_VIEWED: (recently_viewed_tier, random_fill),
}


# --- the model tier: from a ranking head when it can fill the answer, else a catalog pass ---
def _model_candidates(draft: Draft, skip: set[str]) -> Candidates:
    """The model's best n for the user, from the head of the user's ranking when it can
    fill them (kept from training, or from this user's last pass), else from a pass with the
    filters applied: over the approximate index's candidates for a large catalog (when it
    has the bundle's index), over every item otherwise. Appends to `draft.paths` which it was."""
    model, req = draft.rec.model, draft.req
    assert model is not None and draft.key is not None
    new = draft.rec.users.new_pairs(draft.history)
    scores = None
    if req.exclude_seen:
        path, head = "precomputed", None
        if not new:
            head = model.heads.precomputed(model.bundle.user_index.get(draft.key))
        if head is None:
            path, head = "kept", model.heads.get(draft.key, draft.version)
        if head is None:
            vector = _vector(draft, new)
            if vector is None:
                return []
            path, head = "ann", ann_head(draft, vector)
            if head is None:
                scores = _scores(draft, vector)
                path, head = "pass", head_of(scores, model.head_size)
            model.heads.put(draft.key, draft.version, head)
        picked = _from_head(draft, head, skip)
        if len(picked) >= draft.ranked or head.complete:
            draft.paths.append(path)
            return picked
    if scores is None:
        vector = _vector(draft, new)
        if vector is None:
            return []
        found = ann_top(draft, vector, skip)
        if found is not None:
            draft.paths.append("ann")
            return found
        scores = _scores(draft, vector)
    draft.paths.append("pass")
    return _top_of_pass(draft, scores, skip)


def _top_of_pass(draft: Draft, scores: np.ndarray, skip: set[str]) -> Candidates:
    model, req = draft.rec.model, draft.req
    assert model is not None
    excluded = model.bundle.item_index.rows(skip)
    scores[excluded[excluded >= 0]] = -np.inf
    item_rules = [r for r in req.rules if r.source == "items"]
    if item_rules:
        scores[~model.item_mask(item_rules)] = -np.inf
    # interaction rules are not in the mask: room for the user's own items to fail them
    picks = top_n_blocked(scores, draft.ranked + (len(draft.history) if req.rules else 0))
    return list(zip(model.bundle.item_ids[picks].tolist(), scores[picks].tolist(), strict=True))


def _vector(draft: Draft, new: list[tuple[int, float]]) -> np.ndarray | None:
    """The user's vector for a pass (NeedsScan first on the event loop: a pass runs in a
    thread); None when there is no history to build it from."""
    if not draft.scan:
        raise NeedsScan
    assert draft.key is not None
    return draft.rec.users.vector(draft.key, draft.version, new)


def _scores(draft: Draft, vector: np.ndarray) -> np.ndarray:
    """Every item's score for the user, seen items at -inf when excluded (a catalog pass)."""
    model, users = draft.rec.model, draft.rec.users
    assert model is not None
    scores = model.scorer.score(vector)  # a fresh row: safe to mask in place
    if draft.req.exclude_seen:
        scores[users.seen_indices(draft.key, draft.history)] = -np.inf
    return scores


def _from_head(draft: Draft, head: Head, skip: set[str]) -> Candidates:
    picked: Candidates = []
    ids = draft.rec.model.bundle.item_ids[head.items].tolist()  # type: ignore[union-attr]
    limit, passes = draft.ranked, draft.passes
    for item_id, score in zip(ids, head.scores.tolist(), strict=True):
        if item_id not in skip and (passes is None or passes(item_id)):
            picked.append((item_id, score))
            if len(picked) >= limit:
                break
    return picked


def _item_id(draft: Draft, template: str) -> str:
    item_id = draft.req.item_id
    if not item_id:
        raise RecommendationError("item_id", f"required by the {template} template")
    return item_id


def attribute_candidates(draft: Draft, item_id: str, skip: set[str]) -> Candidates:
    """Attribute neighbours: the trained ones, or scored from the item's live fields when it
    arrived or changed after training (the catalog's fields under the live update)."""
    model = draft.rec.model
    if model is None or model.attributes is None:
        return []
    live = draft.rec.state.tenant(draft.rec.tenant).items.get(item_id)
    trained = model.fields.get(item_id)
    fields = None if live is None else {**(trained or {}), **live}
    if fields is not None and fields == trained:  # an item event repeating what was trained
        fields = None
    return model.attributes.neighbours(item_id, fields, draft.wanted + len(skip) + 1,
                                       draft.passes is not None, draft.scan)


# --- similar items: the trained index, then factor cosine ----------------------------------
def _similar_candidates(draft: Draft, item_id: str, skip: set[str]) -> Candidates:
    """The trained similar-items index first (when the bundle has one), then the nearest
    items by factor cosine, so filters or a long answer never run the tier dry."""
    model = draft.rec.model
    if model is None or item_id not in model.bundle.item_index:
        return []
    bundle, passes, n = model.bundle, draft.passes, draft.wanted
    row = bundle.item_index[item_id]
    indexed = _indexed_neighbours(draft, row)
    if indexed and sum(1 for i, _ in indexed
                       if i not in skip and (passes is None or passes(i))) >= n:
        return indexed
    if not draft.scan:
        raise NeedsScan
    scores = model.cosines(row)
    item_rules = [r for r in draft.req.rules if r.source == "items"]
    if item_rules:
        scores[~model.item_mask(item_rules)] = -np.inf
    picks = top_n(scores, n + len(skip) + len(indexed) + 1)
    return indexed + list(zip(bundle.item_ids[picks].tolist(), scores[picks].tolist(),
                              strict=True))


def _indexed_neighbours(draft: Draft, row: int) -> Candidates:
    bundle = draft.rec.model.bundle  # type: ignore[union-attr]
    if bundle.similar is None:
        return []
    start, end = bundle.similar.indptr[row], bundle.similar.indptr[row + 1]
    neighbours = bundle.similar.indices[start:end]
    weights = bundle.similar.data[start:end]
    order = np.argsort(-weights, kind="stable")
    return [(str(bundle.item_ids[neighbours[j]]), float(weights[j])) for j in order
            if neighbours[j] != row]

