"""Matrix building (event value, decay, BM25/TF-IDF), the two split protocols and the metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sluice.bundle import ModelBundle
from sluice.learn.evaluation import (
    NO_SCORE,
    evaluate,
    evaluate_ranker,
    leave_last_out_split,
    make_split,
    per_user_split,
    relevant_items,
    time_split,
)
from sluice.learn.gate import bundle_ranker
from sluice.learn.matrix import build, config_params
from sluice.learn.models import ALS, Cosine, Popularity
from sluice.settings import MatrixConfig
from tests.utils.marts import taste_history
from tests.utils.ranking import evaluate_scorer, model_scorer

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2024-03-01")
NO_BOOST = {"recency_boost": 0.0}  # the recency boost (on by default) has its own tests


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type", "event_at",
                                       "event_value", "weight"])


def test_id_maps_are_arrays_and_weights_sum():
    m = build(frame([("b", "x", "click", T0, None, 1.0), ("a", "y", "purchase", T0, None, 4.0),
                     ("a", "y", "click", T0, None, 1.0)]))
    assert isinstance(m.user_ids, np.ndarray) and m.user_ids.tolist() == ["a", "b"]
    assert m.item_ids.tolist() == ["x", "y"]
    assert m.matrix.toarray().tolist() == [[0.0, 5.0], [1.0, 0.0]]


def test_event_value_multiplies_the_configured_types_only():
    rows = frame([("a", "x", "purchase", T0, 3.0, 4.0), ("a", "y", "click", T0, 2.0, 1.0),
                  ("a", "z", "purchase", T0, None, 4.0)])
    every = build(rows, config=MatrixConfig(use_event_value=True, **NO_BOOST)).matrix.toarray()
    assert every.tolist() == [[12.0, 2.0, 4.0]]  # a missing value keeps the type weight
    some = build(rows, config=MatrixConfig(use_event_value=True, event_value_types=["purchase"],
                                           **NO_BOOST)).matrix.toarray()
    assert some.tolist() == [[12.0, 1.0, 4.0]]
    assert build(rows, config=MatrixConfig(**NO_BOOST)).matrix.toarray().tolist() == [
        [4.0, 1.0, 4.0]]


def test_half_life_decay_halves_per_half_life_before_the_latest_event():
    rows = frame([("a", "x", "click", T0, None, 1.0), ("a", "y", "click", T0 + 10 * DAY, None, 1.0),
                  ("a", "z", "click", T0 + 20 * DAY, None, 1.0)])
    decayed = build(rows, config=MatrixConfig(half_life_days=10.0, **NO_BOOST)).matrix.toarray()
    np.testing.assert_allclose(decayed, [[0.25, 0.5, 1.0]], rtol=1e-6)
    later = build(rows, config=MatrixConfig(half_life_days=10.0, **NO_BOOST),
                  reference=T0 + 30 * DAY).matrix.toarray()
    np.testing.assert_allclose(later, [[0.125, 0.25, 0.5]], rtol=1e-6)


@pytest.mark.parametrize("weighting", ["bm25", "tfidf"])
def test_bm25_and_tfidf_reweight_but_keep_every_cell(weighting):
    history = taste_history(users=40, per_user=6)
    plain = build(history).matrix
    weighted = build(history, config=MatrixConfig(weighting=weighting)).matrix
    assert weighted.shape == plain.shape
    assert (weighted.indptr == plain.indptr).all() and (weighted.indices == plain.indices).all()
    assert (weighted.data > 0).all() and not np.allclose(weighted.data, plain.data)


def test_config_params_are_flat_and_prefixed():
    params = config_params(MatrixConfig(event_value_types=["a", "b"], weighting="bm25"))
    assert params["matrix.weighting"] == "bm25"
    assert params["matrix.event_value_types"] == "a,b"
    assert set(params) == {f"matrix.{k}" for k in MatrixConfig.model_fields}


def test_time_split_holds_out_the_latest_part():
    history = taste_history(users=50, per_user=10)
    split = time_split(history, 0.2)
    assert split.train["event_at"].max() < split.cutoff <= split.test["event_at"].min()
    assert len(split.test) == pytest.approx(0.2 * len(history), abs=2)


def test_leave_last_out_holds_out_each_users_latest():
    rows = frame([("a", "x", "click", T0, None, 1.0), ("a", "y", "click", T0 + DAY, None, 1.0),
                  ("a", "z", "click", T0 + 2 * DAY, None, 1.0),
                  ("b", "x", "click", T0 + 5 * DAY, None, 1.0),   # only one: kept for training
                  ("c", "y", "click", T0 + 3 * DAY, None, 1.0),
                  ("c", "x", "click", T0 + DAY, None, 1.0)])
    split = leave_last_out_split(rows, 1)
    assert sorted(map(tuple, split.test[["user_id", "item_id"]].to_numpy())) == [
        ("a", "z"), ("c", "y")]
    assert len(split.train) == 4 and split.protocol == "leave_last_out"
    two = make_split(rows, "leave_last_out", leave_out=2)
    assert sorted(two.test["item_id"]) == ["y", "z"]  # c has only two: kept whole
    with pytest.raises(ValueError, match="protocol"):
        make_split(rows, "random")


def test_metrics_on_a_hand_computed_ranking():
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0]], dtype=np.float32))
    scores = np.array([[9.0, 5.0, 4.0, 3.0, 2.0]], dtype=np.float32)  # item 0 is seen
    metrics = evaluate_scorer(lambda users: scores[users], seen, {0: np.array([2, 4])},
                              k_values=(2, 4))
    # ranking without the seen item: 1, 2, 3, 4 -> hits at ranks 2 and 4
    assert metrics["precision_at_2"] == pytest.approx(0.5)
    assert metrics["recall_at_2"] == pytest.approx(0.5)
    assert metrics["hit_rate_at_2"] == 1.0
    assert metrics["ndcg_at_2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert metrics["map_at_2"] == pytest.approx((1 / 2) / 2)
    assert metrics["recall_at_4"] == 1.0
    assert metrics["map_at_4"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert metrics["catalog_coverage"] == pytest.approx(2 / 5)


def test_items_a_model_cannot_score_are_never_hits():
    seen = sp.csr_matrix((1, 3), dtype=np.float32)
    scores = np.array([[-np.inf, -np.inf, 1.0]], dtype=np.float32)
    metrics = evaluate_scorer(lambda users: scores[users], seen, {0: np.array([0])}, (2,))
    assert metrics["hit_rate_at_2"] == 0.0 and metrics["catalog_coverage"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("family", [Cosine, Popularity])
def test_a_bundle_scores_like_its_model_on_the_same_split(family):
    history = taste_history(users=60, per_user=8)
    split = time_split(history, 0.2)
    train = build(split.train)
    relevant = relevant_items(train, split.test)
    model = family().fit(train.matrix)
    bundle = ModelBundle(train.user_ids, train.item_ids, model.user_factors, model.item_factors,
                         train.matrix, np.arange(3), np.ones(3, dtype=np.float32),
                         meta=model.serving_meta())
    direct = evaluate(model, train, relevant)
    via_bundle = evaluate_ranker(bundle_ranker(bundle, train), len(train.item_ids), relevant)
    assert via_bundle == pytest.approx(direct)


def test_the_fast_top_k_and_the_numpy_path_agree():
    history = taste_history(users=80, per_user=10)
    split = time_split(history, 0.2)
    train = build(split.train)
    relevant = relevant_items(train, split.test)
    model = ALS(factors=6, iterations=5).fit(train.matrix)
    fast = evaluate(model, train, relevant, (5, 10))
    slow = evaluate_scorer(model_scorer(model), train.matrix, relevant, (5, 10))
    assert fast == pytest.approx(slow)


def test_a_bundle_never_recommends_items_it_does_not_know():
    history = taste_history(users=60, per_user=8)
    train = build(history)
    known = train.item_ids[:30]  # the bundle was trained on half the catalog
    part = build(history[history["item_id"].isin(known)], train.user_ids, known)
    model = Cosine().fit(part.matrix)
    bundle = ModelBundle(part.user_ids, part.item_ids, model.user_factors, model.item_factors,
                         part.matrix, np.arange(3), np.ones(3, dtype=np.float32),
                         meta=model.serving_meta())
    ids, scores = bundle_ranker(bundle, train)(np.arange(10), 40)
    picked = ids[scores > NO_SCORE]
    assert len(picked) and set(train.item_ids[picked]) <= set(known)


def test_categorical_ids_and_row_order_change_nothing():
    history = taste_history(users=40, per_user=6)
    history.loc[::3, "event_at"] = T0  # many ties in time
    shuffled = history.sample(frac=1.0, random_state=3)
    categorical = shuffled.astype({"user_id": "category", "item_id": "category"})
    plain, coded = build(history), build(categorical)
    assert plain.user_ids.tolist() == coded.user_ids.tolist() == sorted(plain.user_ids)
    assert plain.item_ids.tolist() == coded.item_ids.tolist()
    assert (plain.matrix != coded.matrix).nnz == 0

    def held(split):
        return sorted(zip(split.test["user_id"].astype(str), split.test["item_id"].astype(str),
                          strict=True))

    assert held(leave_last_out_split(history)) == held(leave_last_out_split(categorical))


def test_one_item_twice_at_one_instant_is_split_the_same_in_any_row_order():
    """A click and a purchase of one item in the same millisecond: which one is held out
    must not depend on the order the warehouse returns rows in (DuckDB and PostgreSQL
    differ), or the same marts train different models."""
    at = pd.Timestamp("2026-01-01")
    rows = [("u1", "i1", at, "click", 1.0), ("u1", "i1", at, "purchase", 4.0),
            ("u1", "i2", at - pd.Timedelta("1h"), "click", 1.0),
            ("u1", "i3", at - pd.Timedelta("2h"), "click", 1.0)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_at", "interaction_type",
                                        "weight"])
    backwards = frame.iloc[::-1].reset_index(drop=True)

    def held(split):
        return sorted(split.test[["item_id", "interaction_type"]].itertuples(index=False))

    for split in (lambda f: leave_last_out_split(f), lambda f: per_user_split(f, 0.5)):
        assert held(split(frame)) == held(split(backwards))
        assert len(held(split(frame))) in (1, 2)


def test_the_popular_ranker_matches_the_numpy_path():
    history = taste_history(users=80, per_user=10)
    split = time_split(history, 0.2)
    train = build(split.train)
    relevant = relevant_items(train, split.test)
    model = Popularity().fit(train.matrix)
    fast = evaluate(model, train, relevant, (5, 10))
    counts = model.item_factors[:, 0].copy()
    counts += np.linspace(0, 0.5, len(counts), dtype=np.float32)[::-1]  # ties broken as stable
    model.item_factors = counts[:, None]
    slow = evaluate_scorer(model_scorer(model), train.matrix, relevant, (5, 10))
    assert fast == pytest.approx(slow)
