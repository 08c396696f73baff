"""Recommendation answers: each template runs its declared list of tiers (sluice.serve.tiers),
and every slot says where it came from (sluice.serve.answers)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from sluice.filters import Rule, allowed
from sluice.serve.answers import Answer, RecommendationError, RecommendationRequest, Slot, new_id
from sluice.serve.attributes import trained_log_counts
from sluice.serve.catalog import Catalog, Passes
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import Interaction, RealtimeState
from sluice.serve.tiers import CHAINS, Draft
from sluice.serve.users import UserVectors
from sluice.vocabulary import (
    FALLBACK,
    MODEL_FALLBACK,
    MODEL_NON_PERSONALIZED,
    MODEL_PERSONALIZED,
    TEMPLATES,
)


class Recommender:
    """Answers one tenant's requests from its model (maybe none yet) and the real-time state."""

    def __init__(self, tenant: str, model: LoadedModel | None, state: RealtimeState,
                 weights: dict[str, float], seed: int | None = None, cache_size: int = 50_000):
        self.tenant, self.model, self.state, self.weights = tenant, model, state, weights
        self.users = UserVectors(model, weights, cache_size)
        self.catalog = Catalog(tenant, model, state, seed)
        self.rng = random.Random(seed)  # the exploration draws
        # per model item, its interactions in the log the model trained on (the cold check
        # counts the trained ones once, through the bundle): counted once, at load
        self.trained_in_log = (trained_log_counts(model, state.held(tenant))
                               if model is not None and model.attributes is not None else None)

    def recommend(self, req: RecommendationRequest, scan: bool = True) -> Answer:
        """The template's chain of tiers; with scan=False, NeedsScan instead of a catalog pass."""
        chain = CHAINS.get(req.template)
        if chain is None:
            raise RecommendationError("template", f"must be one of {', '.join(TEMPLATES)}")
        key = self.state.user_key(self.tenant, req.user_id, req.session_id)
        version = self.state.version(self.tenant, key) if key is not None else 0
        history = self.state.history(self.tenant, key)  # after the version: never newer
        draft = Draft(self, req, key, version, history, self._filter(req.rules, history), scan)
        for tier in chain:
            tier(draft)
        model = self.model
        if model is not None:  # counted once the answer is complete (NeedsScan reruns it)
            for path in draft.paths:
                model.count(path)
        return Answer(new_id(), model.version if model is not None else None, req.template,
                      draft.slots, draft.exploration_pool)

    def known_fields(self) -> set[str]:
        names = set(self.model.field_names) if self.model is not None else set()
        for fields in list(self.state.tenant(self.tenant).items.values()):
            names.update(fields)
        return names

    def fields(self, item_id: str) -> dict[str, Any]:
        live = self.state.tenant(self.tenant).items.get(item_id)
        if live is not None:
            return live
        return self.model.fields.get(item_id, {}) if self.model is not None else {}

    def _filter(self, rules: list[Rule], history: list[Interaction]) -> Passes:
        """A predicate on item ids for the rules; None when there are none (nothing to call)."""
        if not rules:
            return None
        types: dict[str, set[str]] = {}
        if any(r.source == "interactions" for r in rules):
            for event in history:
                types.setdefault(event.item_id, set()).add(event.type)
        return lambda item_id: allowed(rules, self.fields(item_id), types.get(item_id, set()))

    def rank(self, req: RecommendationRequest, item_ids: list[str]) -> Answer:
        """Reorder `item_ids` for the user; items the model cannot score keep their order, last.
        Items the request's filter rules out are left out (as Personalize does)."""
        given = list(dict.fromkeys(item_ids))
        if req.rules:
            key = self.state.user_key(self.tenant, req.user_id, req.session_id)
            passes = self._filter(req.rules, self.state.history(self.tenant, key))
            given = [i for i in given if passes is None or passes(i)]
        scored, source = self._ranked(req, given) if self.model is not None else ([], "")
        ranked = {i for i, _ in scored}
        slots = [Slot(i, round(score, 6), n + 1, source) for n, (i, score) in enumerate(scored)]
        slots += [Slot(i, 0.0, len(slots) + n + 1, FALLBACK)
                  for n, i in enumerate(i for i in given if i not in ranked)]
        version_served = self.model.version if self.model is not None else None
        return Answer(new_id(), version_served, "ranking", slots)

    def _ranked(self, req: RecommendationRequest,
                given: list[str]) -> tuple[list[tuple[str, float]], str]:
        """The items the model can score, best first, and the source of their slots."""
        model = self.model
        assert model is not None
        rows = model.bundle.item_index.rows(given)
        known = [i for i, row in zip(given, rows.tolist(), strict=True) if row >= 0]
        key = self.state.user_key(self.tenant, req.user_id, req.session_id)
        vector = None
        if key is not None:
            version = self.state.version(self.tenant, key)
            new = self.users.new_pairs(self.state.history(self.tenant, key))
            vector = self.users.vector(key, version, new)
        if vector is None or not known:
            popularity = dict(model.popular)
            return sorted(((i, popularity[i]) for i in known if i in popularity),
                          key=lambda pair: -pair[1]), MODEL_FALLBACK
        values = model.bundle.item_factors[rows[rows >= 0]] @ vector
        scored = [(known[j], float(values[j])) for j in np.argsort(-values, kind="stable")]
        return scored, MODEL_PERSONALIZED if model.personalized else MODEL_NON_PERSONALIZED
