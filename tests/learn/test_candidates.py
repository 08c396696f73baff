"""Kept ranking heads answer exactly as a full pass would, and step aside when they cannot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sluice.bundle import NO_CANDIDATE, ModelBundle
from sluice.filters import parse_conditions
from sluice.learn.candidates import precompute
from sluice.learn.matrix import build
from sluice.learn.models import Cosine, Popularity
from sluice.serve.answers import NeedsScan, RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.vocabulary import MODEL_NON_PERSONALIZED, MODEL_PERSONALIZED
from tests.utils.models import synthetic_bundle

WEIGHTS = {"click": 1.0, "purchase": 4.0}
HEAD = 12


def with_heads(bundle: ModelBundle, k: int = HEAD) -> ModelBundle:
    items = precompute(bundle.user_factors, bundle.item_factors, bundle.user_items, k)
    return dataclasses.replace(bundle, candidates=items)


def recommender(bundle: ModelBundle, state: RealtimeState | None = None) -> Recommender:
    return Recommender("default", LoadedModel(bundle, "1"), state or RealtimeState(), WEIGHTS,
                       seed=3)


def ids(answer) -> list[tuple[str, str]]:
    return [(s.item_id, s.recommendation_source) for s in answer.items]


@pytest.fixture(scope="module")
def plain() -> ModelBundle:
    return synthetic_bundle(items=300, users=60, factors=8, seed=4, heads=0)


@pytest.fixture(scope="module")
def headed(plain, tmp_path_factory) -> ModelBundle:
    made = with_heads(plain)  # and through the .npz round trip serving loads
    return ModelBundle.load(made.save(tmp_path_factory.mktemp("bundle")))


def test_precompute_is_the_top_k_unseen_items_by_dot_product(plain):
    items = precompute(plain.user_factors, plain.item_factors, plain.user_items, 20, batch=7)
    full = plain.user_factors @ plain.item_factors.T
    for u in range(len(plain.user_ids)):
        seen = plain.user_items[u].indices
        full[u, seen] = -np.inf
        expected = np.argsort(-full[u], kind="stable")[:20]
        assert items[u].tolist() == expected.tolist()


def test_precompute_pads_when_fewer_items_are_unseen_than_k():
    user_items = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]], dtype=np.float32))
    rng = np.random.default_rng(0)
    items = precompute(rng.normal(size=(2, 4)).astype(np.float32),
                       rng.normal(size=(3, 4)).astype(np.float32), user_items, 5)
    assert items.shape == (2, 3)  # k is capped at the catalog
    assert items[0].tolist() == [2, NO_CANDIDATE, NO_CANDIDATE]
    assert sorted(items[1].tolist()) == [0, 1, 2]


def test_bundle_round_trip_keeps_the_heads(plain, headed):
    expected = with_heads(plain)
    np.testing.assert_array_equal(headed.candidates, expected.candidates)


@pytest.mark.parametrize("extra", [
    {},
    {"exclude_ids": ["i5", "i17", "i100"]},
    {"num_results": 40},  # more than a head holds: a full pass
    {"rules": parse_conditions([{"field": "color", "op": "eq", "value": "red"}], {"color"})},
    {"exclude_seen": False},
], ids=["plain", "exclude_ids", "longer_than_head", "filter", "seen_allowed"])
def test_heads_answer_exactly_as_a_full_pass(plain, headed, extra):
    fast, full = recommender(headed), recommender(plain)
    for user in plain.user_ids.tolist():
        req = RecommendationRequest(user_id=user, **{"num_results": 10, **extra})
        ours, theirs = fast.recommend(req), full.recommend(req)
        assert ids(ours) == ids(theirs), user
        np.testing.assert_allclose([s.score for s in ours.items],
                                   [s.score for s in theirs.items], atol=2e-6)


def test_a_known_user_without_new_events_needs_no_catalog_pass(headed):
    rec = recommender(headed)
    answer = rec.recommend(RecommendationRequest(user_id="u3", num_results=10), scan=False)
    assert [s.recommendation_source for s in answer.items] == [MODEL_PERSONALIZED] * 10
    with pytest.raises(NeedsScan):  # a head of 12 cannot hold 40 slots
        rec.recommend(RecommendationRequest(user_id="u3", num_results=40), scan=False)
    red_blue = parse_conditions([{"field": "color", "op": "eq", "value": "green"}], {"color"})
    with pytest.raises(NeedsScan):  # nothing in the head passes: the whole catalog is asked
        rec.recommend(
            RecommendationRequest(user_id="u3", num_results=5, rules=red_blue), scan=False)
    # only whole answers are counted
    assert rec.model.paths == {"precomputed": 1, "kept": 0, "ann": 0, "pass": 0}
    rec.recommend(RecommendationRequest(user_id="u3", num_results=40))
    assert rec.model.paths == {"precomputed": 1, "kept": 0, "ann": 0, "pass": 1}


def test_new_events_need_one_pass_then_its_head_serves_until_the_next(plain, headed):
    state = RealtimeState()
    rec, full = recommender(headed, state), recommender(plain, state)
    req = RecommendationRequest(user_id="u8", num_results=8)
    before = ids(rec.recommend(req, scan=False))
    first = before[0][0]
    state.apply([{"event": "interaction", "id": "e1", "tenant": "default", "user": "u8",
                  "item": first, "type": "purchase", "timestamp": 10}])
    with pytest.raises(NeedsScan):
        rec.recommend(req, scan=False)
    after = ids(rec.recommend(req))
    assert first not in {i for i, _ in after} and after == ids(full.recommend(req))
    assert ids(rec.recommend(req, scan=False)) == after  # kept: no second pass
    assert rec.model.paths == {"precomputed": 1, "kept": 1, "ann": 0, "pass": 1}
    state.apply([{"event": "interaction", "id": "e2", "tenant": "default", "user": "u8",
                  "item": after[0][0], "type": "click", "timestamp": 11}])
    with pytest.raises(NeedsScan):
        rec.recommend(req, scan=False)


def test_a_new_visitor_is_scored_once_then_answered_from_the_kept_head(headed):
    state = RealtimeState("session:")
    state.apply([{"event": "interaction", "id": "v1", "tenant": "default", "session": "s1",
                  "item": "i4", "type": "click", "timestamp": 10}])
    rec = recommender(headed, state)
    req = RecommendationRequest(session_id="s1", num_results=5)
    with pytest.raises(NeedsScan):
        rec.recommend(req, scan=False)
    answer = rec.recommend(req)
    assert ids(rec.recommend(req, scan=False)) == ids(answer)
    assert "i4" not in {s.item_id for s in answer.items}


def test_pre_cutoff_events_outside_training_are_still_excluded(headed):
    state = RealtimeState()  # a view the model never trained on, before its cutoff
    top = recommender(headed).recommend(
        RecommendationRequest(user_id="u2", num_results=1)).items[0].item_id
    state.apply([{"event": "interaction", "id": "v", "tenant": "default", "user": "u2",
                  "item": top, "type": "view", "timestamp": -5}])
    answer = recommender(headed, state).recommend(
        RecommendationRequest(user_id="u2", num_results=5), scan=False)
    assert top not in {s.item_id for s in answer.items}


def item_item_bundle() -> tuple[ModelBundle, Cosine]:
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", "click", 1.0) for u in range(40)
            for i in rng.choice(np.arange((u % 4) * 6, (u % 4) * 6 + 6), 3, replace=False)]
    matrix = build(pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type",
                                               "weight"]))
    model = Cosine(neighbours=10).fit(matrix.matrix)
    popularity = Popularity().fit(matrix.matrix)
    bundle = ModelBundle(
        user_ids=matrix.user_ids, item_ids=matrix.item_ids, user_factors=model.user_factors,
        item_factors=model.item_factors, user_items=matrix.matrix, popular=popularity.order,
        popular_scores=popularity.item_factors[popularity.order, 0],
        meta={"cutoff_ms": 0, **model.serving_meta()})
    return bundle, model


def test_item_item_folds_new_events_in_as_its_own_history():
    bundle, model = item_item_bundle()
    assert bundle.meta["fold_in"] == "history"
    state = RealtimeState("session:")
    state.apply([{"event": "interaction", "id": f"c{n}", "tenant": "default", "session": "s",
                  "item": item, "type": t, "timestamp": 10 + n}
                 for n, (item, t) in enumerate([("i0", "click"), ("i1", "purchase")])])
    answer = recommender(bundle, state).recommend(
        RecommendationRequest(session_id="s", num_results=5))
    expected_vector = model.fold_in(np.array([bundle.item_index["i0"],
                                              bundle.item_index["i1"]]), np.array([1.0, 4.0]))
    scores = model.scores(expected_vector[None, :])[0]
    for seen in ("i0", "i1"):
        scores[bundle.item_index[seen]] = -np.inf
    np.testing.assert_allclose([s.score for s in answer.items],
                               np.sort(scores)[::-1][:5], atol=1e-5)
    for slot in answer.items:  # each item at its own score (ties may come in any order)
        assert slot.score == pytest.approx(scores[bundle.item_index[slot.item_id]], abs=1e-5)
    assert scores[bundle.item_index[answer.items[0].item_id]] > 0
    assert all(int(s.item_id[1:]) < 6 for s in answer.items[:2])  # the same taste


def test_a_popularity_champion_labels_its_slots_non_personalized():
    bundle, _ = item_item_bundle()
    popularity = Popularity().fit(bundle.user_items)
    champion = dataclasses.replace(
        bundle, user_factors=popularity.user_factors, item_factors=popularity.item_factors,
        meta={"cutoff_ms": 0, **popularity.serving_meta()})
    answer = recommender(champion).recommend(RecommendationRequest(user_id="u0", num_results=4))
    assert {s.recommendation_source for s in answer.items} == {MODEL_NON_PERSONALIZED}
    counts = [s.score for s in answer.items]
    assert counts == sorted(counts, reverse=True)
    assert answer.counts()["non_personalized_count"] == 4


def test_an_unknown_fold_in_is_refused_by_name(plain):
    with pytest.raises(ValueError, match="fold_in"):
        LoadedModel(dataclasses.replace(plain, meta={"fold_in": "magic"}), "1")
