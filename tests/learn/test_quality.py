"""Bootstrap intervals, beyond-accuracy measures, the gate's decision rule and the holdout
fallback, on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sluice.learn import gate, quality
from sluice.learn.configuration import Configuration, differences
from sluice.learn.evaluation import Scored, decisive_split, per_user_split
from tests.utils.marts import taste_history


def scored(ndcg: list[float] | np.ndarray, top: np.ndarray | None = None,
           n_items: int = 10) -> Scored:
    ndcg = np.asarray(ndcg, dtype=np.float64)
    if top is None:
        top = np.full((len(ndcg), 2), -1)
    return Scored(np.arange(len(ndcg)), {"ndcg_at_10": ndcg}, top, n_items)


def test_a_constant_has_a_zero_width_interval():
    found = quality.bootstrap({"x": np.full(50, 0.25)})["x"]
    assert (found.mean, found.low, found.high) == (0.25, 0.25, 0.25)


def test_a_mean_of_coin_flips_gets_the_normal_width_and_is_seeded():
    values = np.tile([0.0, 1.0], 200)  # 400 users, mean 0.5, standard error 0.025
    found = quality.bootstrap({"x": values}, resamples=2000)["x"]
    assert found.mean == 0.5
    assert found.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.008)
    assert found.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.008)
    again = quality.bootstrap({"x": values}, resamples=2000)["x"]
    assert (again.low, again.high) == (found.low, found.high)
    other = quality.bootstrap({"x": values}, resamples=2000, seed=1)["x"]
    assert (other.low, other.high) != (found.low, found.high)


def test_a_narrower_confidence_is_a_narrower_interval():
    values = np.random.default_rng(0).random(300)
    wide = quality.bootstrap({"x": values}, confidence=0.99)["x"]
    narrow = quality.bootstrap({"x": values}, confidence=0.8)["x"]
    assert wide.low < narrow.low < narrow.high < wide.high


def test_paired_differences_cancel_what_users_share():
    rng = np.random.default_rng(3)
    base = rng.random(200)  # users differ a lot; the candidate adds 0.01 to every one
    assert quality.paired(base + 0.01, base).low == pytest.approx(0.01)
    unpaired = quality.bootstrap({"a": base + 0.01, "b": base})
    assert unpaired["a"].low < unpaired["b"].high  # the two intervals overlap


def test_coverage_interval_brackets_the_share_shown():
    top = np.array([[0, 1], [2, 3], [0, 1], [4, -1]])
    assert quality.coverage_interval(top, 10).mean == 0.5
    # 300 users, lists drawn from a long tail: resampling misses rare items, and the
    # interval is corrected for that bias so that it holds the observed share
    rng = np.random.default_rng(4)
    chance = 1.0 / np.arange(1, 401)
    top = np.array([rng.choice(400, 10, replace=False, p=chance / chance.sum())
                    for _ in range(300)])
    found = quality.coverage_interval(top, 400)
    assert found.mean == len(np.unique(top)) / 400
    assert found.low < found.mean < found.high <= 1.0


def test_novelty_popularity_bias_and_diversity_by_hand():
    # 4 users x 10 items: item 0 is had by all four, items 1-9 by user 0 only
    seen = sp.csr_matrix(np.array([[1] * 10, [1] + [0] * 9, [1] + [0] * 9, [1] + [0] * 9]))
    lists = Scored(np.array([0, 1]), {}, np.array([[0, -1], [1, 2]]), 10)
    found = quality.beyond_accuracy(lists, seen)
    assert found["novelty"][0] == 0.0                       # -log2(4/4)
    assert found["novelty"][1] == pytest.approx(2.0)        # -log2(1/4) for both
    assert list(found["popularity_bias"]) == [1.0, 0.0]      # item 0 is the top 10% (1 item)
    assert np.isnan(found["intra_list_diversity"][0])        # one item: no pair
    assert found["intra_list_diversity"][1] == pytest.approx(0.0)  # same single user


def test_segments_split_users_by_history_and_by_what_came_after():
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]))
    lists = Scored(np.array([0, 1]), {"ndcg_at_10": np.array([0.0, 1.0])},
                   np.full((2, 1), -1), 6)
    masks = quality.segments(lists, seen, test_counts=np.array([3, 1]))
    assert list(masks["history_1_4"]) == [True, False]
    assert list(masks["history_5_19"]) == [False, True]
    assert list(masks["mostly_after_cutoff"]) == [True, False]


def test_the_gate_refuses_a_gain_inside_the_interval_and_names_both_numbers():
    rng = np.random.default_rng(5)
    champion = rng.random(600)
    noisy = champion + rng.normal(0.0, 0.2, 600)  # no gain, much noise
    decision = gate.decide("ndcg_at_10", scored(noisy), None,
                           gate.ChampionScore("3", None, scored(champion), "on its holdout"))
    assert not decision.promoted
    assert decision.difference_low < 0 < decision.difference_high
    assert f"{noisy.mean():.4f} vs champion v3 {champion.mean():.4f}" in decision.reason
    assert "95% sign-flip interval" in decision.reason and "does not beat it" in decision.reason
    lifted = gate.decide("ndcg_at_10", scored(champion * 1.2), None,
                         gate.ChampionScore("3", None, scored(champion), "x"),
                         gate.Rule(min_lift=0.1))
    assert lifted.promoted and "beats it (needs the interval above zero or lift 10%)" in (
        lifted.reason)
    noise = rng.normal(0, 5, 600)
    noisy_lift = gate.decide("ndcg_at_10", scored(champion * 1.2 + noise - noise.mean()),
                             None, gate.ChampionScore("3", None, scored(champion), "x"),
                             gate.Rule(min_lift=0.1))
    assert noisy_lift.promoted and noisy_lift.difference_low < 0
    assert "beats it on its lift alone: the interval includes zero" in noisy_lift.reason


def test_the_gate_refuses_a_model_that_does_not_beat_popularity():
    popular = np.full(400, 0.3)
    decision = gate.decide("ndcg_at_10", scored(popular - 0.01), scored(popular), None)
    assert not decision.promoted and decision.serve_popularity
    assert "does not beat popularity; popularity is served" in decision.reason
    better = gate.decide("ndcg_at_10", scored(popular + 0.05), scored(popular), None)
    assert better.promoted and better.reason.startswith("no champion yet")


def test_comparisons_need_the_same_users():
    with pytest.raises(ValueError, match="same users"):
        gate.compare("ndcg_at_10", scored([0.1, 0.2]), scored([0.1]), "x", gate.Rule())


def test_too_few_users_in_the_time_holdout_switch_to_a_per_user_split():
    # 300 users over 20 days, then 60 new users alone in the last 10 days: the time
    # holdout (last 10%, even 30%) is nearly all theirs, and they have no training history
    early = taste_history(users=300, per_user=6, days=20)
    late = taste_history(users=60, per_user=12, days=10, start=pd.Timestamp("2024-01-21"),
                         user_prefix="late")
    frame = pd.concat([early, late], ignore_index=True)
    held = decisive_split(frame, "time", 0.1, 1, min_users=200, widen_to=0.3)
    assert held.split.protocol == "per_user"
    assert len(held.relevant) >= 200
    assert "fewer than evaluation.min_users (200)" in held.split.note
    assert "switched to a per-user temporal split" in held.split.note
    enough = decisive_split(frame, "time", 0.1, 1, min_users=3, widen_to=0.3)
    assert enough.split.protocol == "time" and "as configured" in enough.split.note


def test_a_wider_window_is_used_when_it_is_enough():
    frame = taste_history(users=100, per_user=10, days=30)
    narrow = decisive_split(frame, "time", 0.02, 1, min_users=10_000, widen_to=0.3)
    assert narrow.split.protocol == "per_user"  # nothing reaches 10,000: the most users
    users_at_30 = len(decisive_split(frame, "time", 0.3, 1, 1, 0.3).relevant)
    wide = decisive_split(frame, "time", 0.02, 1, min_users=users_at_30, widen_to=0.3)
    assert wide.split.protocol == "time" and "widened to the last 30%" in wide.split.note
    assert len(wide.relevant) == users_at_30


def test_per_user_split_holds_out_each_users_latest_fraction():
    frame = taste_history(users=20, per_user=10)
    split = per_user_split(frame, 0.2)
    assert (split.test.groupby("user_id", observed=True).size() == 2).all()
    last_train = split.train.groupby("user_id", observed=True)["event_at"].max()
    first_test = split.test.groupby("user_id", observed=True)["event_at"].min()
    assert (last_train <= first_test[last_train.index]).all()


def test_a_lift_interval_resamples_users_in_pairs():
    base = np.random.default_rng(2).random(300) + 0.1
    found = quality.ratio(base * 2.0, base)
    assert found.mean == pytest.approx(2.0)
    assert found.low == pytest.approx(2.0) and found.high == pytest.approx(2.0)
    noisy = quality.ratio(base * 2.0 + np.random.default_rng(3).normal(0, 0.3, 300), base)
    assert noisy.low < noisy.mean < noisy.high


def test_the_paired_interval_agrees_with_scipy_and_the_normal_interval():
    from scipy import stats

    rng = np.random.default_rng(11)
    champion = rng.random(2000)
    candidate = np.clip(champion + rng.normal(0.01, 0.15, 2000), 0, 1)
    ours = quality.paired(candidate, champion, resamples=4000, confidence=0.95)
    difference = candidate - champion
    theirs = stats.bootstrap((difference,), np.mean, n_resamples=4000, confidence_level=0.95,
                             method="percentile", random_state=3).confidence_interval
    half = stats.norm.ppf(0.975) * difference.std(ddof=1) / np.sqrt(len(difference))
    width = theirs.high - theirs.low
    assert ours.mean == pytest.approx(difference.mean())
    for low, high in ((theirs.low, theirs.high),
                      (difference.mean() - half, difference.mean() + half)):
        assert abs(ours.low - low) < 0.05 * width and abs(ours.high - high) < 0.05 * width


def ties_and_skew(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-user differences like two ALS seeds' NDCG@10: half of them ties, the rest skewed,
    each sign as likely (no difference)."""
    spread = np.where(rng.random(n) < 0.5, 0.0, rng.standard_exponential(n) ** 2 * 0.05)
    return spread * rng.choice([-1.0, 1.0], n)


def test_the_sign_flip_interval_holds_its_level_where_the_percentile_bootstrap_does_not():
    rng = np.random.default_rng(7)
    draws, shift = 1000, 0.03
    flip_above = bootstrap_above = below_shift = above_shift = 0
    for _ in range(draws):
        drawn = ties_and_skew(25, rng)
        seed = int(rng.integers(1 << 30))
        flip_above += quality.signflip(drawn, seed=seed).low > 0
        bootstrap_above += quality.paired(drawn, np.zeros(25), seed=seed).low > 0
        around = quality.signflip(drawn + shift, seed=seed)  # a true difference of `shift`
        below_shift += around.high < shift
        above_shift += around.low > shift
    # 2.5% nominal each side: 25 of 1,000 expected, standard deviation about 5
    assert flip_above <= 35 and below_shift <= 35 and above_shift <= 35  # 26, 27, 26
    assert bootstrap_above >= 40  # the percentile bootstrap's too many promotions: 58


def test_the_sign_flip_interval_is_its_test_inverted():
    rng = np.random.default_rng(8)
    rejected = 0
    for case in range(60):
        drawn = ties_and_skew(120, rng) + (case % 4) * 0.01  # none to a clear lift
        found = quality.signflip(drawn, resamples=500, seed=case)
        flips = np.vstack(list(quality._flips(120, 500, case)))
        sums = (1.0 - 2.0 * flips) @ drawn
        p = (1 + np.sum(sums >= drawn.sum() - 1e-12)) / 501  # the one-sided test, directly
        assert (p <= 0.025) == (found.low > 0)
        rejected += p <= 0.025
        assert found.low <= found.mean <= found.high
        champion = np.full(120, 0.5)
        decision = gate.decide("ndcg_at_10", scored(champion + drawn), None,
                               gate.ChampionScore("3", None, scored(champion), "x"),
                               gate.Rule(resamples=500, seed=case))
        assert decision.promoted == (decision.difference_low > 0)  # what it says, it did
        assert (f"{decision.difference_low:+.4f} to {decision.difference_high:+.4f}"
                in decision.reason)
    assert 10 < rejected < 50  # both outcomes were checked (17 of 60)


def test_a_real_lift_is_promoted_as_often_as_the_percentile_bootstrap_promotes_it():
    rng = np.random.default_rng(9)
    flip = bootstrap = 0
    for _ in range(200):
        drawn = ties_and_skew(400, rng)
        drawn += 0.12 * drawn.std()  # a small lift: about two standard errors on 400 users
        seed = int(rng.integers(1 << 30))
        flip += quality.signflip(drawn, seed=seed).low > 0
        bootstrap += quality.paired(drawn, np.zeros(400), seed=seed).low > 0
    assert flip >= 100 and flip >= bootstrap - 10  # 135 and 129 when written


def test_a_couple_of_dozen_users_promote_nothing_whatever_the_interval():
    champion = np.zeros(25)
    candidate = champion.copy()
    candidate[:4] = 1.0  # 4 users better, 21 ties, none worse: a sign test's p is 1/16
    assert quality.paired(candidate, champion).low > 0  # the percentile bootstrap says yes
    anyone = gate.Rule(min_users=1)
    loose = gate.decide("ndcg_at_10", scored(candidate), None,
                        gate.ChampionScore("3", None, scored(champion), "x"), anyone)
    assert not loose.promoted and loose.difference_low == 0  # the sign-flip test does not
    candidate[:8] = 1.0  # 8 better: p 1/256, which the sign-flip test promotes on its own
    clear = gate.decide("ndcg_at_10", scored(candidate), None,
                        gate.ChampionScore("3", None, scored(champion), "x"), anyone)
    assert clear.promoted and clear.difference_low > 0
    decision = gate.decide("ndcg_at_10", scored(candidate), None,
                           gate.ChampionScore("3", None, scored(champion), "x"))
    assert not decision.promoted and decision.users == 25
    assert decision.reason.startswith(
        "25 users evaluated, fewer than evaluation.gate_min_users (100): too few to decide")
    assert "vs champion v3" in decision.reason and "95% sign-flip interval" in decision.reason
    assert decision.reason.endswith("champion v3 stays")
    first = gate.decide("ndcg_at_10", scored(candidate), scored(champion), None)
    assert not first.promoted and not first.serve_popularity
    assert "vs popularity" in first.reason and "nothing is promoted" in first.reason


def test_a_metric_that_is_not_finite_promotes_nothing():
    values = np.full(400, 0.3)
    values[7] = np.nan
    decision = gate.decide("ndcg_at_10", scored(values), None, None)
    assert not decision.promoted
    assert "ndcg_at_10 is not finite for 1 of 400 users" in decision.reason
    champion = np.full(400, 0.2)
    champion[3] = np.inf
    worse = gate.decide("ndcg_at_10", scored(np.full(400, 0.3)), None,
                        gate.ChampionScore("3", None, scored(champion), "x"))
    assert not worse.promoted


def test_a_champion_refit_with_the_candidates_configuration_is_a_refresh():
    same = np.random.default_rng(2).random(300)
    champion = gate.ChampionScore("3", None, scored(same), "refit", same_configuration=True)
    decision = gate.decide("ndcg_at_10", scored(same), None, champion)
    assert decision.promoted and decision.refresh
    assert "+0.0000 to +0.0000" in decision.reason and "refresh" in decision.reason
    other = gate.ChampionScore("3", None, scored(same), "refit")
    assert not gate.decide("ndcg_at_10", scored(same), None, other).promoted
    events = {"weights": {"click": 1.0, "purchase": 4.0}, "event_value_threshold": None}

    def config(params: dict, matrix: dict | None = None, interactions: dict | None = events,
               family: str = "als") -> Configuration:
        return Configuration(family, params, matrix, interactions)

    assert gate.same_configuration(config({"factors": 8, "device": "gpu"}),
                                   config({"factors": 8, "device": "cpu"}))
    assert not gate.same_configuration(config({"factors": 8}), config({"factors": 16}))
    assert not gate.same_configuration(config({}), config({}, family="bpr"))
    assert not gate.same_configuration(
        config({"factors": 8}, {"recency_half_life": 5.0, "recency_boost": 32.0}),
        config({"factors": 8}, {"recency_half_life": 9.0, "recency_boost": 32.0}))
    assert not gate.same_configuration(config({}, {"recency_boost": 16.0}),
                                       config({}, {"recency_boost": 32.0}))


def test_event_weights_and_threshold_are_part_of_the_configuration():
    events = {"weights": {"click": 1.0, "purchase": 4.0}, "event_value_threshold": None}
    mine = Configuration("als", {"factors": 8}, {}, events)
    # read back from JSON, a weight written 4 is 4.0: still the same configuration
    assert not differences(mine, Configuration("als", {"factors": 8}, {}, {
        "weights": {"purchase": 4, "click": 1}, "event_value_threshold": None}))
    heavier = {**events, "weights": {"click": 1.0, "purchase": 8.0}}
    assert differences(mine, Configuration("als", {"factors": 8}, {}, heavier)) == [
        "events.weights click 1, purchase 8 -> click 1, purchase 4"]
    threshold = {**events, "event_value_threshold": 2.5}
    assert differences(mine, Configuration("als", {"factors": 8}, {}, threshold)) == [
        "events.event_value_threshold 2.5 -> none"]
    older = Configuration("als", {"factors": 8}, {}, None)  # a bundle from before the record
    assert differences(mine, older) == ["no record of events.weights and "
                                        "events.event_value_threshold (trained before they "
                                        "were recorded)"]
    assert not gate.same_configuration(mine, older)
    assert differences(mine, Configuration("bpr", {"factors": 16}, {}, events)) == [
        "family bpr -> als", "parameters (factors 16 -> 8)"]


def test_the_reason_says_what_tells_a_tied_champion_from_the_candidate():
    same = np.random.default_rng(2).random(300)
    champion = gate.ChampionScore("3", None, scored(same), "refit",
                                  differs=("events.weights click 1, purchase 8 -> click 1, "
                                           "purchase 4",))
    decision = gate.decide("ndcg_at_10", scored(same), None, champion)
    assert not decision.promoted and not decision.refresh
    assert ("does not beat it (needs the interval above zero); no refresh: events.weights "
            "click 1, purchase 8 -> click 1, purchase 4; the champion scored as refit"
            ) in decision.reason
