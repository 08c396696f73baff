"""Serving folds a user's new events in with the recency boost exactly as training weighs the
whole history: the same user vector as the ALS solve on the retrained matrix's row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sluice.bundle import ModelBundle
from sluice.learn.matrix import build
from sluice.learn.model_base import als_fold_in, als_gram
from sluice.learn.models import ALS, Popularity
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import Interaction
from sluice.serve.users import UserVectors
from sluice.settings import MatrixConfig
from tests.utils.marts import WEIGHTS, taste_history

BOOST = MatrixConfig(recency_boost=8.0, recency_half_life=3.0)
ALPHA, REG = 0.5, 1.0


def ms(at: pd.Timestamp) -> int:
    return int(at.value // 1_000_000)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    history = taste_history(users=60, per_user=10)
    cutoff = history["event_at"].iloc[int(len(history) * 0.8)]
    trained_part = history[history["event_at"] <= cutoff]
    trained = build(trained_part, config=BOOST).for_model("als")
    model = ALS(factors=8, iterations=10, regularization=REG, alpha=ALPHA).fit(trained.matrix)
    popularity = Popularity().fit(trained.matrix)
    bundle = ModelBundle(
        user_ids=trained.user_ids, item_ids=trained.item_ids, user_factors=model.user_factors,
        item_factors=model.item_factors, user_items=trained.matrix, popular=popularity.order,
        popular_scores=popularity.item_factors[popularity.order, 0],
        meta={**model.serving_meta(), "cutoff_ms": ms(trained_part["event_at"].max()),
              "matrix": BOOST.model_dump()},
        recent=trained.recent)
    loaded = ModelBundle.load(bundle.save(tmp_path_factory.mktemp("bundle")))
    later = history[(history["event_at"] > cutoff)
                    & history["item_id"].isin(set(trained.item_ids))]
    later = later[later["event_at"].map(ms) > loaded.meta["cutoff_ms"]]
    return LoadedModel(loaded, "1"), trained_part, later


def retrained_vector(model: LoadedModel, frame: pd.DataFrame, user: str) -> np.ndarray:
    """The ALS solve on `user`'s row of a matrix built from the whole history."""
    whole = build(frame, np.array([user]), model.bundle.item_ids,
                  config=BOOST).for_model("als").matrix
    gram = als_gram(model.bundle.item_factors, REG)
    return als_fold_in(model.bundle.item_factors, gram, whole.indices, whole.data, ALPHA)


def events(frame: pd.DataFrame) -> list[Interaction]:
    return [Interaction(r.item_id, r.interaction_type, ms(r.event_at))
            for r in frame.itertuples(index=False)]


def test_a_trained_users_new_events_give_the_retrained_vector(served):
    model, trained_part, later = served
    users = UserVectors(model, WEIGHTS)
    checked = 0
    for user, new in later.groupby("user_id", observed=True):
        if user not in model.bundle.user_index:
            continue
        old = trained_part[trained_part["user_id"] == user]
        # the realtime history, in arrival order shuffled: serving orders it by time
        arrived = events(pd.concat([old, new]).sample(frac=1.0, random_state=1))
        got = users.vector(user, 1, users.new_pairs(arrived))
        expected = retrained_vector(model, pd.concat([old, new]), user)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked >= 20
    # and the boost matters: without it the same history gives another vector
    plain = build(pd.concat([old, new]), np.array([user]), model.bundle.item_ids).matrix
    unboosted = als_fold_in(model.bundle.item_factors, als_gram(model.bundle.item_factors, REG),
                            plain.indices, plain.data, ALPHA)
    assert not np.allclose(got, unboosted, rtol=1e-2)


def test_a_new_users_events_are_boosted_as_training_would(served):
    model, _, later = served
    new = later.head(6).assign(user_id="newcomer")
    users = UserVectors(model, WEIGHTS)
    got = users.vector("newcomer", 1, users.new_pairs(events(new)))
    np.testing.assert_allclose(got, retrained_vector(model, new, "newcomer"), rtol=1e-4,
                               atol=1e-5)


def test_a_bundle_from_before_the_boost_folds_in_without_it(served):
    model, _, _ = served
    meta = {k: v for k, v in model.bundle.meta.items() if k != "matrix"}
    old = ModelBundle(
        user_ids=model.bundle.user_ids, item_ids=model.bundle.item_ids,
        user_factors=model.bundle.user_factors, item_factors=model.bundle.item_factors,
        user_items=model.bundle.user_items, popular=model.bundle.popular,
        popular_scores=model.bundle.popular_scores, meta=meta)
    assert LoadedModel(old, "1").matrix.recency_boost == 0.0
