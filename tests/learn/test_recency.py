"""The recency boost of the training matrix: each user's latest events weigh more, by their
position in the user's own history, and its boosted part is kept per cell for serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sluice.learn.matrix import boosted, build, shifted_weights
from sluice.settings import MatrixConfig
from tests.utils.marts import taste_history

T0 = pd.Timestamp("2024-03-01")
BOOST = MatrixConfig(recency_boost=4.0, recency_half_life=2.0)


def rows(*events: tuple[str, str, float, float]) -> pd.DataFrame:
    """(user, item, minutes after T0, type weight) per event."""
    return pd.DataFrame(
        [(u, i, "click", T0 + pd.Timedelta(minutes=m), None, w) for u, i, m, w in events],
        columns=["user_id", "item_id", "interaction_type", "event_at", "event_value", "weight"])


def test_each_users_latest_events_weigh_more_by_rank_not_by_date():
    # a rates three films a minute apart; b rated one long ago and one a year later: rank is
    # what counts, so b's old film weighs like a's second latest
    history = rows(("a", "x", 0, 1.0), ("a", "y", 1, 1.0), ("a", "z", 2, 1.0),
                   ("b", "x", 0, 2.0), ("b", "y", 525_600, 2.0))
    built = build(history, config=BOOST).for_model("als")
    decay = [0.5, 0.5 ** 0.5, 1.0]  # 0.5 ** (events after it / 2)
    np.testing.assert_allclose(built.matrix.toarray(), [
        [1 + 4 * decay[0], 1 + 4 * decay[1], 1 + 4 * decay[2]],
        [2 * (1 + 4 * decay[1]), 2 * (1 + 4 * decay[2]), 0.0]], rtol=1e-6)
    # the boosted part per stored cell, in the matrix's own order
    np.testing.assert_allclose(built.recent, [decay[0], decay[1], decay[2], 2 * decay[1],
                                              2 * decay[2]], rtol=1e-6)
    plain = build(history, config=MatrixConfig(recency_boost=0.0))
    assert plain.recent is None
    np.testing.assert_allclose(built.matrix.data - 4.0 * built.recent, plain.matrix.data,
                               rtol=1e-6)


def test_one_item_twice_sums_each_events_own_boost():
    built = build(rows(("a", "x", 0, 1.0), ("a", "y", 1, 1.0), ("a", "x", 2, 1.0)),
                  config=BOOST).for_model("als")
    # x: the oldest (two after it) and the latest event; y: one after it
    np.testing.assert_allclose(built.matrix.toarray(),
                               [[(1 + 4 * 0.5) + (1 + 4), 1 + 4 * 0.5 ** 0.5]], rtol=1e-6)


def test_new_events_reweigh_a_trained_row_as_training_on_the_longer_history_would():
    history = taste_history(users=30, per_user=8)
    first = history.groupby("user_id").head(5)  # each user's first five events, in time order
    whole = build(history, config=BOOST).for_model("als")
    trained = build(first, whole.user_ids, whole.item_ids, config=BOOST).for_model("als")
    for row in range(len(whole.user_ids)):
        cells = slice(trained.matrix.indptr[row], trained.matrix.indptr[row + 1])
        later = history[history["user_id"] == whole.user_ids[row]].iloc[5:]
        shifted = dict(zip(trained.matrix.indices[cells], shifted_weights(
            trained.matrix.data[cells].astype(np.float64),
            trained.recent[cells].astype(np.float64), len(later), BOOST), strict=True))
        items = pd.Index(whole.item_ids).get_indexer(later["item_id"])
        for item, weight in zip(items, boosted(later["weight"].to_numpy(), BOOST), strict=True):
            shifted[item] = shifted.get(item, 0.0) + weight
        expected = whole.matrix[row].toarray().ravel()
        got = np.zeros_like(expected)
        got[list(shifted)] = list(shifted.values())
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_only_the_boosted_families_train_on_the_boost():
    built = build(taste_history(users=20, per_user=6), config=BOOST)
    plain = build(taste_history(users=20, per_user=6), config=MatrixConfig(recency_boost=0.0))
    # every other reader (EASE, item-item, popularity, the similar-items index) gets the
    # plain weights; ALS, the configured family, the boosted ones, made once
    assert built.for_model("ease") is built and built.for_model("cosine") is built
    np.testing.assert_allclose(built.matrix.toarray(), plain.matrix.toarray())
    als = built.for_model("als")
    assert als is built.for_model("als") and als.for_model("als") is als
    assert (als.matrix.data > built.matrix.data).all()
    wider = build(taste_history(users=20, per_user=6),
                  config=MatrixConfig(recency_boost=4.0, recency_models=["als", "ease"]))
    assert wider.for_model("ease") is not wider
    with pytest.raises(ValueError, match="unknown algorithms"):
        MatrixConfig(recency_models=["als", "svd"])


def test_a_tuned_boost_trains_on_its_own_weights():
    built = build(taste_history(users=20, per_user=6), config=BOOST)
    tuned = built.for_model("als", 1.0)
    assert tuned.boost == 1.0 and tuned is built.for_model("als", 1.0)
    np.testing.assert_allclose(tuned.matrix.data, built.matrix.data + built.recent, rtol=1e-6)
    assert built.for_model("als", 0.0) is built  # a boost of 0 is the plain matrix
    assert built.for_model("als").boost == BOOST.recency_boost


def test_bm25_reweighting_keeps_no_boosted_part():
    built = build(taste_history(users=40, per_user=6),
                  config=MatrixConfig(recency_boost=4.0, weighting="bm25"))
    assert built.recent is None and built.for_model("als") is built
    assert (built.matrix.data > 0).all()


def test_the_boost_is_configured_within_range():
    with pytest.raises(ValueError):
        MatrixConfig(recency_boost=-1.0)
    with pytest.raises(ValueError):
        MatrixConfig(recency_half_life=0.0)
