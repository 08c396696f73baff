"""Off-policy estimates on a simulation whose truth is known: synthetic users with known click
probabilities, served by the real exploration policy, and a known better and worse candidate."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from sluice.learn.offpolicy import ESTIMATORS, dr_warning, estimate, summary
from sluice.learn.reward import reward_model
from sluice.serve.exploration import explore

USERS, ITEMS, N, SHARE, SEEDS = 2000, 40, 5, 0.2, 20
BIAS = 1 / np.sqrt(np.arange(1, N + 1))  # the chance a slot is looked at, by position


def simulate(seed: int, users: int = USERS, beyond: float = 0.0
             ) -> tuple[pd.DataFrame, dict[str, pd.Series], dict[str, float]]:
    """The logged slots, each candidate's item per slot and each candidate's true CTR. For
    the first `beyond` share of the users the better candidate shows instead their best items
    the policy never shows them (outside the champion's top 2N): slots no log can match."""
    rng = np.random.default_rng(seed)
    draws = random.Random(seed)
    q = rng.beta(1.2, 8, size=(users, ITEMS))  # the true click probability of a seen item
    rows, targets, truth = [], {"better": [], "worse": []}, {"better": [], "worse": []}
    for u in range(users):
        noisy = q[u] + rng.normal(0, 0.08, ITEMS)  # the champion knows the taste roughly
        ranked = [(f"i{i}", float(noisy[i])) for i in np.argsort(-noisy)[:2 * N]]
        placed, pool = explore(ranked, N, SHARE, draws)
        assert pool == N
        for name, pick in (("better", max), ("worse", min)):
            chosen = _candidate(ranked, q[u], pick)
            if name == "better" and u < beyond * users:
                logged_ever = {i for i, _ in ranked}
                chosen = [f"i{i}" for i in np.argsort(-q[u]) if f"i{i}" not in logged_ever][:N]
            targets[name] += chosen
            truth[name] += [q[u, int(i[1:])] * BIAS[k] for k, i in enumerate(chosen)]
        for k, (item_id, _, propensity, _) in enumerate(placed):
            clicked = rng.random() < q[u, int(item_id[1:])] * BIAS[k]
            rows.append((f"r{u}", k + 1, item_id, propensity, clicked))
    logged = pd.DataFrame(rows, columns=["recommendation_id", "position", "item_id",
                                         "propensity", "is_clicked"])
    return (logged, {k: pd.Series(v) for k, v in targets.items()},
            {k: float(np.mean(v)) for k, v in truth.items()})


def _candidate(ranked: list[tuple[str, float]], q: np.ndarray, pick) -> list[str]:
    """A ranking within the policy's support: at position k the champion's k-th item or an
    unused pool item, the one with the highest (better) or lowest (worse) true probability."""
    pool = [i for i, _ in ranked[N:]]
    chosen = []
    for k in range(N):
        best = pick([ranked[k][0], *pool], key=lambda i: q[int(i[1:])])
        if best in pool:
            pool.remove(best)
        chosen.append(best)
    return chosen


def test_every_estimator_ranks_candidates_and_covers_the_truth_in_most_seeds():
    ranked_right, covered = 0, dict.fromkeys(ESTIMATORS, 0)
    for seed in range(SEEDS):
        logged, targets, truth = simulate(seed)
        found = {name: estimate(logged, target, seed=seed) for name, target in targets.items()}
        assert truth["better"] > truth["worse"]
        ranked_right += all(found["better"][f"{e}_ctr"] > found["worse"][f"{e}_ctr"]
                            for e in ESTIMATORS)
        for e in covered:
            covered[e] += sum(found[c][f"{e}_ctr_low"] <= truth[c] <= found[c][f"{e}_ctr_high"]
                              for c in truth)
        assert not found["better"]["small_sample"]
    # measured: ranked right in 20 of 20 seeds, truth covered by 38 of 40 intervals (each of
    # IPS, SNIPS, DR, SNDR)
    assert ranked_right == SEEDS
    for e, hits in covered.items():  # 95% intervals: 38 of 40 expected, 34 leaves room
        assert hits >= 34, (e, hits, covered)


def test_without_exploration_the_served_ranking_is_estimated_by_its_ctr():
    logged, _, _ = simulate(1)
    logged["propensity"] = 1.0  # a deterministic log, the candidate being what it served
    found = estimate(logged, logged["item_id"])
    assert found["snips_ctr"] == found["ips_ctr"] == pytest.approx(logged["is_clicked"].mean())
    # every answer weighs the same: as many effective answers as answers, slots as slots
    assert found["ess"] == pytest.approx(USERS) and found["answers"] == USERS
    assert found["ess_slots"] == pytest.approx(len(logged))
    assert found["match_rate"] == 1.0
    assert found["ips_clicks_per_answer"] == pytest.approx(found["ips_ctr"] * N)


def test_a_small_effective_sample_is_marked_not_hidden():
    logged = pd.DataFrame({"recommendation_id": ["a", "a", "b"], "position": [1, 2, 1],
                           "item_id": ["x", "y", "z"],
                           "propensity": [0.8, 0.04, 0.8], "is_clicked": [True, False, False]})
    found = estimate(logged, pd.Series(["x", "y", "q"]))
    # one answer carries every matching slot: one effective answer, about 1.1 slots
    assert found["small_sample"] and found["ess"] == pytest.approx(1.0)
    assert found["ess_slots"] == pytest.approx((1 / 0.8 + 25) ** 2 / (1 / 0.64 + 625))
    assert found["ips_ctr"] == pytest.approx(1 / 0.8 / 3)


def test_the_small_sample_mark_counts_answers_not_slots():
    # 40 answers of 5 greedy slots each, all matching: 200 slots of one weight, but the
    # bootstrap resamples 40 answers, and 40 answers are a small sample
    logged = pd.DataFrame({"recommendation_id": np.repeat([f"r{n}" for n in range(40)], 5),
                           "position": np.tile(np.arange(1, 6), 40),
                           "item_id": [f"i{k}" for k in range(200)], "propensity": 0.8,
                           "is_clicked": np.arange(200) % 7 == 0})
    found = estimate(logged, logged["item_id"])
    assert found["ess_slots"] == pytest.approx(200) and found["ess"] == pytest.approx(40)
    assert found["small_sample"]
    many = pd.concat([logged.assign(recommendation_id=logged["recommendation_id"] + f"-{c}")
                      for c in range(3)], ignore_index=True)
    assert not estimate(many, many["item_id"])["small_sample"]  # 120 answers


def test_clipped_weights_are_said_and_trade_bias_for_a_narrower_interval():
    others = [f"b{i}" for i in range(10)]  # ten answers of one unclicked slot
    logged = pd.DataFrame({"recommendation_id": ["a", "a", *others],
                           "position": [1, 2] + [1] * 10, "item_id": ["x", "y"] + ["z"] * 10,
                           "propensity": [0.8, 0.04] + [0.8] * 10,
                           "is_clicked": [True, True] + [False] * 10})
    candidate = pd.Series(["x", "y"] + ["q"] * 10)
    found = estimate(logged, candidate, clip=10.0)
    assert found["clip"] == 10.0 and found["clipped_share"] == 0.5  # y's 25 capped, x's not
    assert found["ips_ctr"] == pytest.approx((1 / 0.8 + 10) / 12)
    assert "clip" not in estimate(logged, candidate)  # off by default
    logged, targets, _ = simulate(3)  # pool slots weigh 25, greedy ones 1.25
    plain, capped = (estimate(logged, targets["better"], clip=c) for c in (None, 5.0))

    def width(found: dict) -> float:
        return found["ips_ctr_high"] - found["ips_ctr_low"]

    assert width(capped) < width(plain) and capped["ips_ctr"] < plain["ips_ctr"]
    assert 0 < capped["clipped_share"] < 1 and capped["ess"] > plain["ess"]


def test_a_propensity_outside_zero_one_is_refused():
    logged = pd.DataFrame({"recommendation_id": ["a"], "position": [1], "item_id": ["x"],
                           "propensity": [0.0], "is_clicked": [True]})
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        estimate(logged, pd.Series(["x"]))


def test_no_matching_slot_gives_no_estimate_rather_than_a_certain_zero():
    logged = pd.DataFrame({"recommendation_id": ["a", "a", "b"], "position": [1, 2, 1],
                           "item_id": ["x", "y", "z"],
                           "propensity": [0.8, 0.05, 0.8], "is_clicked": [True, False, True]})
    found = estimate(logged, pd.Series(["q", "q", "q"]))
    assert found["match_rate"] == 0.0 and found["ess"] == 0.0 and found["small_sample"]
    assert not {"ips_ctr", "snips_ctr", "snips_ctr_low"} & set(found)


def test_snips_leaves_resamples_without_a_matching_slot_out_of_its_interval():
    # 2 matching slots, both clicked, among 1,000 answers: SNIPS is 1 in every resample that
    # draws either of them; about e^-2 = 13.5% of resamples draw neither (undefined, not 0)
    ids = [f"r{n}" for n in range(1000)]
    logged = pd.DataFrame({"recommendation_id": ids, "position": 1,
                           "item_id": ["x"] * 2 + ["y"] * 998,
                           "propensity": 0.5, "is_clicked": [True] * 2 + [False] * 998})
    found = estimate(logged, pd.Series(["x"] * 1000), bootstraps=2000)
    assert found["snips_ctr"] == found["snips_ctr_low"] == found["snips_ctr_high"] == 1.0
    assert found["ips_ctr_low"] == 0.0 < found["ips_ctr"] == pytest.approx(4 / 1000)


def test_dr_corrects_its_reward_model_with_the_logged_clicks():
    logged, targets, truth = simulate(2)
    found = estimate(logged, targets["better"], seed=2)
    assert found["dr_ctr_low"] <= truth["better"] <= found["dr_ctr_high"]
    assert found["sndr_ctr_low"] <= truth["better"] <= found["sndr_ctr_high"]
    # DR is the model's guess of the candidate's item plus the weighted residual of the click
    q_logged, q_target = reward_model(logged, targets["better"], seed=2)
    weight = (logged["item_id"] == targets["better"]).to_numpy() / logged["propensity"]
    correction = weight * (logged["is_clicked"] - q_logged)
    assert found["dm_ctr"] == pytest.approx(q_target.mean())
    assert found["dr_ctr"] == pytest.approx(found["dm_ctr"] + correction.mean())
    assert found["dr_clicks_per_answer"] == pytest.approx(found["dr_ctr"] * N)
    # with every weight 1 and every slot matched, DR's correction is the clicks' own residual:
    # DR is the logged click-through, whatever the model guessed
    logged["propensity"] = 1.0
    served = estimate(logged, logged["item_id"])
    assert served["dr_ctr"] == pytest.approx(logged["is_clicked"].mean())
    assert served["dm_ctr"] != pytest.approx(served["dr_ctr"])


def test_the_reward_model_of_a_slot_never_reads_its_own_click():
    logged, targets, _ = simulate(4)
    q_logged, q_target = reward_model(logged, targets["better"], seed=4)
    flipped = logged.copy()
    first = flipped["recommendation_id"] == flipped["recommendation_id"].iloc[0]
    flipped.loc[first, "is_clicked"] = ~flipped.loc[first, "is_clicked"]
    again, again_target = reward_model(flipped, targets["better"], seed=4)
    # the answer's own slots keep their values: they come from the other half of the answers
    assert np.array_equal(again[first.to_numpy()], q_logged[first.to_numpy()])
    assert not np.array_equal(again, q_logged)  # the other half's model did read the change
    # an item's lift: an item clicked everywhere reads higher than its position's rate
    popular = logged.assign(is_clicked=logged["is_clicked"] | (logged["item_id"] == "i7"))
    lifted, _ = reward_model(popular, targets["better"], seed=4)
    shown = (logged["item_id"] == "i7").to_numpy()
    assert np.all(lifted[shown] > q_logged[shown])


def test_with_one_answer_there_is_nothing_to_fit_on_and_dr_is_ips():
    logged = pd.DataFrame({"recommendation_id": ["a", "a"], "position": [1, 2],
                           "item_id": ["x", "y"], "propensity": [0.8, 0.05],
                           "is_clicked": [True, True]})
    found = estimate(logged, pd.Series(["x", "q"]))
    assert found["dm_ctr"] == 0.0 and found["dr_ctr"] == found["ips_ctr"] == 1 / 0.8 / 2


def _candidate_logged_five_times() -> tuple[pd.DataFrame, dict]:
    """2,000 one-slot answers at propensity 0.5, about 10% clicked; the candidate's item x was
    logged in 5 of them, never clicked. The log and the candidate's estimates."""
    rng = np.random.default_rng(0)
    items = np.array([f"i{k}" for k in rng.integers(0, 1000, 2000)], dtype=object)
    items[:5] = "x"
    logged = pd.DataFrame({"recommendation_id": [f"r{k}" for k in range(2000)], "position": 1,
                           "item_id": items, "propensity": 0.5,
                           "is_clicked": (rng.random(2000) < 0.1) & (items != "x")})
    return logged, estimate(logged, pd.Series(["x"] * 2000))


def test_dr_s_interval_carries_the_reward_model_s_own_sampling_error():
    # 2,000 answers of one slot; the candidate's item was logged 5 times, never clicked: DR is
    # almost all the reward model's guess, the position's click-through fitted on the log.
    # Held fixed, that guess would vary with nothing; refitted on each resample, DR's interval
    # is about as wide as the logged click-through's own.
    logged, found = _candidate_logged_five_times()
    assert found["ips_ctr"] == 0.0 and found["dr_ctr"] == pytest.approx(found["dm_ctr"], abs=0.002)
    ctr = logged["is_clicked"].mean()
    binomial = 2 * 1.96 * np.sqrt(ctr * (1 - ctr) / len(logged))
    measured = found["dr_ctr_high"] - found["dr_ctr_low"]  # 0.032 against 0.028
    assert 0.5 * binomial < measured < 2 * binomial
    assert found["dr_ctr_low"] < found["dr_ctr"] < found["dr_ctr_high"]


def test_dr_matching_almost_nothing_is_marked_as_resting_on_the_reward_model():
    # 2,000 one-slot answers, the candidate's item logged in 5 of them: DR is the model's guess
    logged, found = _candidate_logged_five_times()
    assert found["matched_slots"] == 5 and found["ess"] == pytest.approx(5)
    assert found["support"] == pytest.approx(5 * 2 / 2000)  # 5 weights of 2 over 2,000 slots
    assert found["dr_on_model"] and found["dr_ctr"] == pytest.approx(found["dm_ctr"], abs=0.002)
    warning = dr_warning(found)
    assert warning is not None and warning.startswith(
        "DR rests on the reward model: only 5 logged slots match (ESS 5 answers, under the "
        "minimum 100) and they correct about 0.5% of the candidate's slots (under the minimum "
        "85%") and "treat DR and SNDR" in warning and f"{found['dr_ctr']:.4f}" in warning
    assert warning in summary(found)  # the run's log line says it


def test_dr_with_ample_matching_slots_is_not_marked():
    logged, targets, truth = simulate(0)
    found = estimate(logged, targets["better"])
    assert found["ess"] > 100 and found["matched_slots"] == int(
        (logged["item_id"] == targets["better"]).sum()) > 1000
    # every candidate item is one the policy could show there: the weights average about 1
    assert found["support"] == pytest.approx(1.0, abs=0.1)
    assert not found["dr_on_model"] and dr_warning(found) is None
    assert "rests on the reward model" not in summary(found)


def test_dr_outside_the_logs_support_is_marked_though_its_effective_sample_is_large():
    # for three users in four the candidate shows items the policy never shows them: no slot
    # can match there, DR is the model's guess on those slots whatever the ESS of the rest
    logged, targets, truth = simulate(0, beyond=0.75)
    found = estimate(logged, targets["better"])
    assert found["ess"] > 100 and not found["small_sample"]
    assert found["support"] < 0.5 and found["dr_on_model"]
    assert (f"(ESS {found['ess']:.0f} answers) and they correct about {found['support']:.0%} of "
            "the candidate's slots (under the minimum 85%: the rest is the model's guess)") in (
        dr_warning(found) or "")
    assert not estimate(logged, targets["better"], min_support=found["support"] / 2)[
        "dr_on_model"]  # the threshold is the caller's (evaluation.off_policy_min_support)


def test_a_clip_that_cuts_most_of_the_correction_marks_dr():
    # the worse candidate shows mostly pool items (weight 25), clipped at 5: a fifth of their
    # correction is left, and DR keeps the reward model's guess for the rest
    logged, targets, _ = simulate(0)
    plain, capped = (estimate(logged, targets["worse"], clip=c) for c in (None, 5.0))
    assert not plain["dr_on_model"] and plain["support"] == pytest.approx(1.0, abs=0.1)
    assert capped["ess"] > 100 and capped["support"] < 0.5 and capped["dr_on_model"]


def test_the_reward_model_knows_which_items_the_candidate_shows_the_user():
    # the better candidate shows each user the items of highest click probability among those
    # the policy could show: logged items it shows read higher than the same position's rest
    logged, targets, truth = simulate(6)
    q_logged, _ = reward_model(logged, targets["better"], seed=6)
    group = logged["recommendation_id"]
    shown = set(zip(group, targets["better"], strict=True))  # (answer, item) the candidate lists
    listed = np.array([(r, i) in shown for r, i in zip(group, logged["item_id"], strict=True)])
    first = (logged["position"] == 1).to_numpy()
    assert q_logged[first & listed].mean() > q_logged[first & ~listed].mean()
    # which makes its guess alone (DM) closer to the truth than item and position alone
    plain = estimate(logged, targets["better"], seed=6)
    assert abs(plain["dm_ctr"] - truth["better"]) < 0.015  # item and position alone: 0.028 low


def test_the_candidate_s_guess_at_a_slot_does_not_depend_on_what_the_policy_drew_there():
    # DR is unbiased only if q of the candidate's item is a fact of the user and the slot:
    # another logged item at a slot (another exploration draw) leaves that slot's q unchanged
    logged, targets, _ = simulate(7)
    _, q_target = reward_model(logged, targets["better"], seed=7)
    drawn = logged.copy()
    first = (drawn["recommendation_id"] == drawn["recommendation_id"].iloc[0]).to_numpy()
    drawn.loc[first, "item_id"] = drawn.loc[first, "item_id"].to_numpy()[::-1]
    _, again = reward_model(drawn, targets["better"], seed=7)
    assert np.array_equal(again[first], q_target[first])


def test_estimates_and_bounds_stay_within_what_a_click_through_can_be():
    # 30 users, the worse candidate: few of its slots are clicked, so DR's correction
    # (w * (c - q) over unclicked matches) pulls its value and its bootstrap's low tail below
    # zero; a click-through lies in [0, 1], so they are reported at 0, not as a negative rate
    logged, targets, truth = simulate(3, users=30)
    found = estimate(logged, targets["worse"])
    for name in ESTIMATORS:
        for tail in ("", "_low", "_high"):
            assert 0.0 <= found[f"{name}_ctr{tail}"] <= 1.0, (name, tail)
        assert found[f"{name}_ctr_low"] <= found[f"{name}_ctr"] <= found[f"{name}_ctr_high"]
    assert found["dr_ctr"] == found["dr_ctr_low"] == 0.0 < found["dr_ctr_high"]
    assert found["dr_clicks_per_answer_low"] == 0.0 and truth["worse"] > 0
