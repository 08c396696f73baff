"""The model contract: every family passes the same tests by supplying `_get_model()`.

Like implicit's `RecommenderBaseTestMixin`: shapes, dot-product scoring, seen items left out,
a known taste recovered on a tiny synthetic matrix, fold-in, and the `.npz` bundle round trip
that serving loads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from sluice.bundle import ModelBundle
from sluice.learn.models import (
    ALS,
    BM25,
    BPR,
    EASE,
    LMF,
    MODELS,
    TFIDF,
    Cosine,
    Model,
    Popularity,
    make_model,
)
from sluice.learn.similar import SimilarItems
from sluice.settings import MODEL_ALGORITHMS, ModelConfig

GROUPS, PER_GROUP, USERS, PICKS = 3, 20, 180, 8


def taste_matrix(seed: int = 0) -> sp.csr_matrix:
    """Users in three taste groups, each picking PICKS of its group's PER_GROUP items."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(USERS):
        group = u % GROUPS
        picks = rng.choice(PER_GROUP, size=PICKS, replace=False) + group * PER_GROUP
        rows += [u] * PICKS
        cols += picks.tolist()
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                         shape=(USERS, GROUPS * PER_GROUP))


def group_of(item: int) -> int:
    return item // PER_GROUP


class ModelContract:
    """Mixed into one test class per family; `_get_model` returns an unfitted model."""

    def _get_model(self) -> Model:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    def data(self) -> sp.csr_matrix:
        return taste_matrix()

    @pytest.fixture(scope="class")
    def fitted(self, data) -> Model:
        return self._get_model().fit(data)

    def test_registered_by_name(self):
        model = self._get_model()
        assert MODELS[model.name] is type(model)

    def test_params_rebuild_the_same_model(self):
        model = self._get_model()
        json.dumps(model.params())  # MLflow params and bundle meta need plain values
        again = make_model(model.name, **model.params())
        assert type(again) is type(model) and again.params() == model.params()

    def test_fit_shapes(self, fitted, data):
        n_users, n_items = data.shape
        assert fitted.user_factors.shape[0] == n_users
        assert fitted.item_factors.shape[0] == n_items
        assert fitted.user_factors.shape[1] == fitted.item_factors.shape[1]

    def test_factors_are_finite_float32(self, fitted):
        for factors in (fitted.user_factors, fitted.item_factors):
            assert factors.dtype == np.float32
            assert np.isfinite(factors).all()
            assert factors.flags["C_CONTIGUOUS"]

    def test_scores_are_the_dot_product(self, fitted):
        users = np.arange(7)
        scores = fitted.scores(fitted.user_factors[users])
        assert scores.shape == (7, fitted.item_factors.shape[0])
        assert np.isfinite(scores).all()
        np.testing.assert_allclose(scores, fitted.user_factors[users] @ fitted.item_factors.T,
                                   rtol=1e-5, atol=1e-6)

    def test_recommend_leaves_seen_items_out(self, fitted, data):
        users = np.arange(30)
        picks = fitted.recommend(users, data, n=10)
        assert picks.shape == (30, 10)
        for u, row in zip(users, picks, strict=True):
            assert not set(row.tolist()) & set(data[u].indices.tolist())
            assert len(set(row.tolist())) == 10

    def test_recommend_batch_matches_one_by_one(self, fitted, data):
        batch = fitted.recommend(np.arange(12), data, n=5)
        single = np.vstack([fitted.recommend(np.array([u]), data, n=5) for u in range(12)])
        scores = fitted.scores(fitted.user_factors[:12])
        # ties may order differently; the scores of the picks must not
        np.testing.assert_allclose(np.take_along_axis(scores, batch, 1),
                                   np.take_along_axis(scores, single, 1), rtol=1e-6)

    def test_recommend_whole_catalog_when_seen_kept(self, fitted, data):
        n_items = data.shape[1]
        picks = fitted.recommend(np.array([0]), data, n=n_items + 5, exclude_seen=False)
        assert sorted(picks[0].tolist()) == list(range(n_items))

    def test_known_taste_is_recovered(self, fitted, data):
        picks = fitted.recommend(np.arange(USERS), data, n=5)
        in_group = np.mean([group_of(i) == u % GROUPS for u, row in enumerate(picks)
                            for i in row])
        assert in_group >= 0.9, f"only {in_group:.0%} of the top-5 match the user's taste"

    def test_fold_in_has_the_factor_size(self, fitted, data):
        row = data[5]
        vector = fitted.fold_in(row.indices, row.data)
        assert vector.shape == (fitted.item_factors.shape[1],)
        assert np.isfinite(vector).all()
        empty = fitted.fold_in(np.array([], dtype=np.int64), np.array([], dtype=np.float32))
        assert empty.shape == vector.shape and np.isfinite(empty).all()

    def test_fold_in_of_a_new_history_follows_its_taste(self, fitted):
        history = np.array([0, 3, 5, 8, 11])  # group 0 items, as a new user
        scores = fitted.scores(fitted.fold_in(history, np.ones(len(history)))[None, :])[0]
        scores[history] = -np.inf
        top = np.argsort(-scores)[:5]
        assert sum(group_of(i) == 0 for i in top) >= 4

    def test_serving_fold_in_is_the_models_fold_in(self, fitted, data):
        from sluice.serve.model import LoadedModel

        meta = fitted.serving_meta()
        assert {"alpha", "regularization", "fold_in"} <= set(meta)
        popularity = Popularity().fit(data)
        served = LoadedModel(ModelBundle(
            user_ids=np.array([f"u{u}" for u in range(data.shape[0])]),
            item_ids=np.array([f"i{i}" for i in range(data.shape[1])]),
            user_factors=fitted.user_factors, item_factors=fitted.item_factors,
            user_items=data, popular=popularity.order,
            popular_scores=popularity.item_factors[popularity.order, 0], meta=meta), "1")
        for row in (data[9], data[0]):
            np.testing.assert_allclose(served.fold_in(row.indices, row.data.astype(np.float64)),
                                       fitted.fold_in(row.indices, row.data),
                                       rtol=1e-4, atol=1e-5)

    def test_bundle_round_trip_scores_the_same(self, fitted, data, tmp_path):
        popularity = Popularity().fit(data)
        made = ModelBundle(
            user_ids=np.array([f"u{u}" for u in range(data.shape[0])]),
            item_ids=np.array([f"i{i}" for i in range(data.shape[1])]),
            user_factors=fitted.user_factors, item_factors=fitted.item_factors,
            user_items=data, popular=popularity.order,
            popular_scores=popularity.item_factors[popularity.order, 0],
            meta={"algorithm": fitted.name, "params": fitted.params(), "cutoff_ms": 1,
                  **fitted.serving_meta()},
            similar=SimilarItems(5).fit(data).matrix,
        )
        loaded = ModelBundle.load(made.save(tmp_path / "b"))
        assert loaded.meta["algorithm"] == fitted.name
        assert loaded.meta["alpha"] == pytest.approx(fitted.serving_meta()["alpha"])
        np.testing.assert_array_equal(loaded.user_factors, fitted.user_factors)
        np.testing.assert_array_equal(loaded.item_factors, fitted.item_factors)
        np.testing.assert_allclose(loaded.user_factors[:4] @ loaded.item_factors.T,
                                   fitted.scores(fitted.user_factors[:4]), rtol=1e-5)
        assert (loaded.similar != made.similar).nnz == 0
        rebuilt = make_model(loaded.meta["algorithm"], **loaded.meta["params"])
        assert type(rebuilt) is type(fitted)

    def test_empty_rows_and_columns_still_score(self):
        data = taste_matrix().tolil()
        data[3, :] = 0
        data = sp.csr_matrix(sp.hstack([data.tocsr(), sp.csr_matrix((USERS, 2))]),
                             dtype=np.float32)
        data.eliminate_zeros()
        model = self._get_model().fit(data)
        assert model.item_factors.shape[0] == data.shape[1]
        assert np.isfinite(model.scores(model.user_factors[[3]])).all()

    def test_same_data_same_factors(self, fitted, data):
        if not fitted.deterministic:
            pytest.skip(f"{fitted.name} trains with hogwild SGD")
        again = self._get_model().fit(data)
        np.testing.assert_array_equal(again.item_factors, fitted.item_factors)


class TestALS(ModelContract):
    def _get_model(self) -> Model:
        return ALS(factors=8, iterations=10, regularization=0.1, alpha=2.0)


class TestBPR(ModelContract):
    def _get_model(self) -> Model:
        return BPR(factors=8, learning_rate=0.05, iterations=200, regularization=0.01,
                   num_threads=1)


class TestLMF(ModelContract):
    def _get_model(self) -> Model:
        return LMF(factors=8, learning_rate=1.0, iterations=40, regularization=0.6, neg_prop=10,
                   num_threads=1)


class TestCosine(ModelContract):
    def _get_model(self) -> Model:
        return Cosine(neighbours=20)


class TestBM25(ModelContract):
    def _get_model(self) -> Model:
        return BM25(neighbours=20)


class TestTFIDF(ModelContract):
    def _get_model(self) -> Model:
        return TFIDF(neighbours=20)


class TestEASE(ModelContract):
    def _get_model(self) -> Model:
        return EASE(l2=10.0)


def test_ease_refuses_a_catalog_too_large_for_its_item_solve():
    with pytest.raises(ValueError, match="model.ease.max_items"):
        EASE(max_items=10).fit(taste_matrix())


def test_ease_weights_have_a_zero_diagonal_and_solve_the_closed_form():
    data = taste_matrix()
    model = EASE(l2=10.0).fit(data)
    weights = model.item_factors.T.astype(np.float64)
    assert np.allclose(np.diag(weights), 0.0)
    # off the diagonal, (XtX + l2 I) W = XtX - diag(mu), so (XtX + l2 I) W - XtX is diagonal
    x = data.toarray().astype(np.float64)
    gram = x.T @ x
    residual = (gram + 10.0 * np.eye(len(gram))) @ weights - gram
    assert np.allclose(residual - np.diag(np.diag(residual)), 0.0, atol=1e-3)


class TestPopularity(ModelContract):
    def _get_model(self) -> Model:
        return Popularity()

    def test_known_taste_is_recovered(self, fitted, data):
        counts = np.asarray((data > 0).sum(axis=0)).ravel()
        assert counts[fitted.order[0]] == counts.max()
        assert list(fitted.order) == sorted(range(len(counts)), key=lambda i: (-counts[i], i))

    def test_fold_in_of_a_new_history_follows_its_taste(self, fitted):
        scores = fitted.scores(fitted.fold_in(np.array([0]), np.ones(1))[None, :])[0]
        assert np.argmax(scores) == fitted.order[0]  # everyone gets the popular items


def test_item_item_refuses_a_catalog_too_large_to_serve_dense():
    with pytest.raises(ValueError, match="max_dense_cells"):
        Cosine(max_dense_cells=1000).fit(taste_matrix())


def test_unknown_family_and_bad_params_are_named():
    with pytest.raises(ValueError, match="unknown 'svd'"):
        make_model("svd")
    with pytest.raises(ValueError, match="bad parameters"):
        make_model("bpr", alpha=2.0)


def test_similar_items_are_the_same_taste_and_never_the_item():
    index = SimilarItems(neighbours=6).fit(taste_matrix())
    for item in (0, 25, 59):
        ids, scores = index.query(item, 5)
        assert item not in ids
        assert len(ids) == 5 and np.all(np.diff(scores) <= 0)
        assert all(group_of(i) == group_of(item) for i in ids)
    assert index.matrix.getnnz(axis=1).max() <= 6


@pytest.mark.parametrize("algorithm", MODEL_ALGORITHMS)
def test_every_configurable_algorithm_builds_from_config(algorithm):
    config = ModelConfig(algorithm=algorithm)
    model = make_model(algorithm, **config.params())
    assert model.name == algorithm and set(model.params()) >= set(config.params())
