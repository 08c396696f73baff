"""The fallback chain, the counts, seen-item exclusion and ALS fold-in, on a real small model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sluice.bundle import ModelBundle
from sluice.learn.matrix import build
from sluice.learn.models import ALS, Popularity
from sluice.serve.answers import RecommendationError, RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.vocabulary import FALLBACK, MODEL_FALLBACK, MODEL_NON_PERSONALIZED, MODEL_PERSONALIZED

WEIGHTS = {"click": 1.0, "purchase": 4.0}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ModelBundle:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(150):
        group = u % 3
        for i in rng.choice(np.arange(group * 10, group * 10 + 10), size=5, replace=False):
            rows.append((f"u{u}", f"i{i}", "click", 1.0))
    rows += [("u0", "i40", "click", 1.0)]  # a rarely seen item
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type", "weight"])
    matrix = build(frame)
    model = ALS(factors=4, iterations=20, regularization=0.1, alpha=2.0).fit(matrix.matrix)
    popularity = Popularity().fit(matrix.matrix)
    made = ModelBundle(
        user_ids=matrix.user_ids, item_ids=matrix.item_ids, user_factors=model.user_factors,
        item_factors=model.item_factors, user_items=matrix.matrix, popular=popularity.order,
        popular_scores=popularity.item_factors[popularity.order, 0],
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 1_000},
        catalog={f"i{i}": {"color": "red" if i % 2 else "blue"} for i in range(50)},
    )
    # what serving loads went through the .npz round trip
    return ModelBundle.load(made.save(tmp_path_factory.mktemp("bundle")))


def recommender(bundle: ModelBundle | None, state: RealtimeState | None = None) -> Recommender:
    model = LoadedModel(bundle, "7") if bundle is not None else None
    return Recommender("default", model, state or RealtimeState(), WEIGHTS, seed=1)


def check(answer) -> list[str]:
    counts = answer.counts()
    sources = [s.recommendation_source for s in answer.items]
    assert counts["personalized_count"] == counts["model_personalized_count"]
    assert counts["non_personalized_count"] == (
        counts["model_non_personalized_count"] + counts["model_fallback_count"])
    assert counts["total"] == len(answer.items) == (
        counts["personalized_count"] + counts["non_personalized_count"]
        + counts["fallback_count"])
    assert counts["model_personalized_count"] == sources.count(MODEL_PERSONALIZED)
    ids = [s.item_id for s in answer.items]
    assert len(ids) == len(set(ids))
    return sources


def test_known_user_personalized_then_popular_then_random(bundle):
    answer = recommender(bundle).recommend(RecommendationRequest(user_id="u1", num_results=48))
    sources = check(answer)
    n_items = len(bundle.item_ids)
    seen = 5
    assert sources.count(MODEL_PERSONALIZED) == n_items - seen
    # catalog-only items fill the rest, as far as the 50-item catalog less the seen 5 goes
    assert len(sources) == 50 - seen
    assert sources.count(FALLBACK) == (50 - seen) - (n_items - seen)
    assert sources == sorted(sources, key=[MODEL_PERSONALIZED, MODEL_FALLBACK, FALLBACK].index)


def test_personalized_slots_follow_the_users_taste(bundle):
    answer = recommender(bundle).recommend(RecommendationRequest(user_id="u3", num_results=5))
    group_items = {f"i{i}" for i in range(0, 10)}  # u3 is in group 0
    assert sum(s.item_id in group_items for s in answer.items) >= 4


def test_seen_items_are_excluded_unless_asked_not_to(bundle):
    seen = set(bundle.item_ids[bundle.user_items[bundle.user_index["u2"]].indices].tolist())
    ids = {s.item_id for s in recommender(bundle).recommend(
        RecommendationRequest(user_id="u2", num_results=30)).items}
    assert not ids & seen
    ids = {s.item_id for s in recommender(bundle).recommend(
        RecommendationRequest(user_id="u2", num_results=30, exclude_seen=False)).items}
    assert ids & seen


def test_unknown_user_gets_popular_then_random_only_if_asked(bundle):
    answer = recommender(bundle).recommend(RecommendationRequest(user_id="ghost", num_results=40))
    sources = check(answer)
    assert MODEL_PERSONALIZED not in sources
    assert sources[: len(bundle.item_ids)] == [MODEL_FALLBACK] * len(bundle.item_ids)
    assert FALLBACK in sources
    strict = recommender(bundle).recommend(
        RecommendationRequest(user_id="ghost", num_results=40, fill_with_random=False))
    assert FALLBACK not in check(strict)
    assert len(strict.items) == len(bundle.item_ids)


def test_no_model_yet_answers_from_random_items_seen_in_the_log():
    state = RealtimeState()
    state.apply([{"event": "item", "id": f"e{i}", "tenant": "default", "item": f"x{i}",
                  "timestamp": 1_700_000_000_000, "fields": {}} for i in range(5)])
    answer = recommender(None, state).recommend(RecommendationRequest(user_id="u1", num_results=3))
    assert check(answer) == [FALLBACK] * 3
    assert answer.model_version is None


def test_popular_template_is_non_personalized(bundle):
    answer = recommender(bundle).recommend(RecommendationRequest(template="popular", num_results=5))
    assert check(answer) == [MODEL_NON_PERSONALIZED] * 5
    assert [s.item_id for s in answer.items] == bundle.item_ids[bundle.popular[:5]].tolist()


def test_similar_items_needs_an_item_and_excludes_it(bundle):
    with pytest.raises(RecommendationError) as err:
        recommender(bundle).recommend(RecommendationRequest(template="similar_items"))
    assert err.value.field == "item_id"
    answer = recommender(bundle).recommend(
        RecommendationRequest(template="similar_items", item_id="i3", num_results=5))
    ids = [s.item_id for s in answer.items]
    assert "i3" not in ids
    assert sum(i in {f"i{k}" for k in range(10)} for i in ids) >= 4


def test_unknown_template_is_refused(bundle):
    with pytest.raises(RecommendationError) as err:
        recommender(bundle).recommend(RecommendationRequest(template="nope"))
    assert err.value.field == "template"


def test_realtime_events_exclude_items_and_move_the_vector(bundle):
    state = RealtimeState()
    rec = recommender(bundle, state)
    before = rec.recommend(RecommendationRequest(user_id="u1", num_results=10))
    top = before.items[0].item_id
    state.apply([{"event": "interaction", "id": "rt1", "tenant": "default", "user": "u1",
                  "item": "i25", "type": "purchase", "timestamp": 2_000}])
    after = rec.recommend(RecommendationRequest(user_id="u1", num_results=10))
    assert "i25" not in {s.item_id for s in after.items}
    assert [s.score for s in after.items] != [s.score for s in before.items]
    assert top in {s.item_id for s in after.items} or top == "i25"


def test_a_session_joined_to_a_user_carries_its_history(bundle):
    state = RealtimeState("session:")
    state.apply([
        {"event": "interaction", "id": "a1", "tenant": "default", "session": "s9",
         "item": "i21", "type": "click", "timestamp": 2_000},
        {"event": "interaction", "id": "a2", "tenant": "default", "session": "s9",
         "user": "newbie", "item": "i22", "type": "click", "timestamp": 3_000},
    ])
    assert [e.item_id for e in state.history("default", "newbie")] == ["i21", "i22"]
    assert state.user_key("default", None, "s9") == "newbie"
    answer = recommender(bundle, state).recommend(
        RecommendationRequest(user_id="newbie", num_results=5))
    assert check(answer) == [MODEL_PERSONALIZED] * 5
    assert not {"i21", "i22"} & {s.item_id for s in answer.items}


def test_replayed_event_ids_apply_once():
    state = RealtimeState()
    event = {"event": "interaction", "id": "dup", "tenant": "default", "user": "u",
             "item": "i1", "type": "click", "timestamp": 1}
    assert state.apply([event, dict(event)]) == 1
    assert len(state.history("default", "u")) == 1


def test_fold_in_matches_implicits_own_user_solve(bundle):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=4, regularization=0.1, alpha=2.0)
    model.item_factors = bundle.item_factors.copy()
    model.user_factors = bundle.user_factors.copy()
    row = bundle.user_items[bundle.user_index["u4"]]
    ours = LoadedModel(bundle, "1")
    from sluice.learn.model_base import als_fold_in

    mine = als_fold_in(bundle.item_factors, ours.gram, row.indices, row.data, alpha=2.0)
    model.cg_steps = 50  # converge the conjugate-gradient solve to the exact one
    theirs = model.recalculate_user(0, sp.csr_matrix(row))
    np.testing.assert_allclose(mine, np.asarray(theirs).ravel(), rtol=1e-3, atol=1e-4)


def test_similar_items_come_from_the_trained_index_first(bundle):
    import dataclasses

    n = len(bundle.item_ids)
    i3 = bundle.item_index["i3"]
    picks = [bundle.item_index[i] for i in ("i7", "i40", "i3", "i21")]
    similar = sp.csr_matrix((np.array([0.9, 0.8, 1.0, 0.7], np.float32),
                             (np.full(4, i3), picks)), shape=(n, n))
    indexed = dataclasses.replace(bundle, similar=similar)
    answer = recommender(indexed).recommend(
        RecommendationRequest(template="similar_items", item_id="i3", num_results=6))
    ids = [s.item_id for s in answer.items]
    assert ids[:3] == ["i7", "i40", "i21"]  # the index, best first, without the item itself
    assert "i3" not in ids and len(ids) == 6  # factor cosine fills the rest
    from sluice.filters import parse_conditions

    red = parse_conditions([{"field": "color", "op": "eq", "value": "red"}], {"color"})
    filtered = recommender(indexed).recommend(
        RecommendationRequest(template="similar_items", item_id="i3", num_results=3, rules=red))
    assert [s.item_id for s in filtered.items][:2] == ["i7", "i21"]  # i40 is blue: filtered out
    assert all(int(s.item_id[1:]) % 2 == 1 for s in filtered.items)
