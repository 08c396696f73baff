"""A model is served only whole: inconsistent bundles are refused at load, the previous
champion (or the popular and random tiers) keeps answering, and /ready says why."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import scipy.sparse as sp

from sluice.bundle import BundleError, ModelBundle
from tests.serving.test_faults import _service, seed_log
from tests.utils.models import register_champion, synthetic_bundle


def _nan_factors(b: ModelBundle) -> None:
    b.item_factors[3, 1] = np.nan


def _short_item_factors(b: ModelBundle) -> None:
    b.item_factors = b.item_factors[:-5]


def _wide_user_factors(b: ModelBundle) -> None:
    b.user_factors = np.hstack([b.user_factors, b.user_factors])


def _int_factors(b: ModelBundle) -> None:
    b.user_factors = b.user_factors.astype(np.int64)


def _popular_beyond_items(b: ModelBundle) -> None:
    b.popular = b.popular + len(b.item_ids)


def _inf_popular_scores(b: ModelBundle) -> None:
    b.popular_scores[0] = np.inf


def _candidates_for_fewer_users(b: ModelBundle) -> None:
    b.candidates = b.candidates[:-1]


def _user_items_beyond_items(b: ModelBundle) -> None:
    b.user_items = sp.csr_matrix(np.ones((len(b.user_ids), len(b.item_ids) + 3), np.float32))


@pytest.mark.parametrize(("corrupt", "named"), [
    (_nan_factors, "item_factors holds NaN"), (_short_item_factors, "item_factors has"),
    (_wide_user_factors, "columns"), (_int_factors, "user_factors is int64"),
    (_popular_beyond_items, "popular points outside"),
    (_inf_popular_scores, "popular_scores holds NaN or infinite"),
    (_candidates_for_fewer_users, "candidates"),
    (_user_items_beyond_items, "user_items (does not match|points outside)|sparse array"),
])
def test_an_inconsistent_bundle_is_refused_at_load_naming_the_problem(tmp_path, corrupt, named):
    bundle = synthetic_bundle()
    assert ModelBundle.load(bundle.save(tmp_path / "good")).check()
    corrupt(bundle)
    with pytest.raises(BundleError, match=named):
        bundle.check()
    if corrupt is not _int_factors:  # save() writes factors as float32 whatever they were
        with pytest.raises(BundleError, match=named):
            ModelBundle.load(bundle.save(tmp_path / "bad"))


def test_a_bad_champion_keeps_the_previous_one_and_says_why(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    broken = synthetic_bundle(seed=1)
    _nan_factors(broken)
    register_champion(broken, uri, artifacts)
    seed_log(tmp_path)
    service = _service(tmp_path, uri)
    try:
        assert not service.ready  # no whole model yet: popular and random tiers answer
        assert "NaN" in service.models["default"].error
        answer = service.recommend(service.request(user_id="u1", num_results=3))
        assert {s.recommendation_source for s in answer.items} <= {"model_fallback", "fallback"}
        good = register_champion(synthetic_bundle(seed=2), uri, artifacts)
        service.refresh_models()
        assert service.ready and service.models["default"].version == good
        bad = synthetic_bundle(seed=3)
        _short_item_factors(bad)
        register_champion(bad, uri, artifacts)
        service.refresh_models()
        status = service.models["default"]
        assert service.ready and status.version == good  # still the whole one
        assert "item_factors has" in status.error
        answer = service.recommend(service.request(user_id="u3", num_results=5))
        assert answer.model_version == good
        assert all(np.isfinite(s.score) for s in answer.items)
    finally:
        service.stop()


def test_a_registry_error_is_reported_as_itself(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    version = register_champion(synthetic_bundle(), uri, tmp_path / "artifacts")
    service = _service(tmp_path, uri)
    try:
        assert service.models["default"].version == version
        with sqlite3.connect(tmp_path / "mlflow" / "mlflow.db") as con:
            con.execute("drop table registered_model_aliases")
        service.refresh_models()
        error = service.models["default"].error
        assert error and "registered_model_aliases" in error, error
        assert "no models:/" not in error
        assert service.models["default"].version == version  # still serving what it had
    finally:
        service.stop()


def test_finite_checks_see_each_value_whatever_the_sum():
    """The check sums in float64 instead of masking every value: opposite infinities (whose
    sum is NaN) and a lone NaN are refused, the largest finite float32 values are not."""
    bundle = synthetic_bundle()
    bundle.item_factors[:] = np.finfo(np.float32).max  # finite; a float32 sum would overflow
    bundle.item_factors[0, 0] = np.finfo(np.float32).min
    assert bundle.check() is bundle
    bundle.item_factors[1, 0], bundle.item_factors[2, 0] = np.inf, -np.inf
    with pytest.raises(BundleError, match="item_factors holds NaN or infinite"):
        bundle.check()
    bundle.item_factors[1, 0] = bundle.item_factors[2, 0] = 1.0
    bundle.user_factors[-1, -1] = np.nan
    with pytest.raises(BundleError, match="user_factors holds NaN or infinite"):
        bundle.check()
