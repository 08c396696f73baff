"""Exploration in the model tier: the share of slots explored, their propensities, the counts,
the logged event, and the config bounds."""

from __future__ import annotations

from collections import Counter

import pytest

from sluice.serve.answer_log import recommendation_event as _event
from sluice.serve.answers import RecommendationRequest
from sluice.settings import TemplateConfig
from sluice.vocabulary import MODEL_PERSONALIZED
from tests.serve.test_recommender import bundle, check, recommender  # noqa: F401  (the fixture)

SHARE = 0.3


def test_without_exploration_every_slot_has_propensity_one(bundle):  # noqa: F811
    answer = recommender(bundle).recommend(RecommendationRequest(user_id="u1", num_results=8))
    assert [s.propensity for s in answer.items if s.recommendation_source ==
            MODEL_PERSONALIZED] == [1.0] * 8
    assert answer.exploration_pool == 0 and not any(s.explored for s in answer.items)


def test_explored_slots_keep_the_model_source_and_their_exact_propensities(bundle):  # noqa: F811
    rec, n = recommender(bundle), 4
    greedy = [s.item_id for s in rec.recommend(RecommendationRequest(
        user_id="u3", num_results=2 * n)).items]
    at: Counter[tuple[int, str]] = Counter()
    answers = 3000
    for _ in range(answers):
        answer = rec.recommend(RecommendationRequest(user_id="u3", num_results=n,
                                                     exploration=SHARE))
        assert check(answer) == [MODEL_PERSONALIZED] * n  # the counts relationships hold
        assert answer.exploration_pool == n
        for s in answer.items:
            if s.explored:
                assert s.item_id in greedy[n:] and s.propensity == pytest.approx(SHARE / n)
            else:
                assert s.item_id == greedy[s.position - 1]
                assert s.propensity == pytest.approx(1 - SHARE)
            at[s.position, s.item_id] += 1
    for (position, item_id), seen in at.items():  # the frequencies match the propensities
        expected = (1 - SHARE) if item_id == greedy[position - 1] else SHARE / n
        assert abs(seen / answers - expected) < 4 * (expected * (1 - expected) / answers) ** .5


def test_too_short_a_pool_means_no_exploration(bundle):  # noqa: F811
    # u1 has 26 unseen trained items: 20 greedy slots leave a pool of 6, too short to draw from
    answer = recommender(bundle).recommend(RecommendationRequest(
        user_id="u1", num_results=20, exploration=SHARE))
    assert answer.exploration_pool == 0 and {s.propensity for s in answer.items} == {1.0}


def test_the_logged_event_carries_propensities_and_the_pool(bundle):  # noqa: F811
    request = RecommendationRequest(user_id="u3", num_results=4, exploration=SHARE)
    answer = recommender(bundle).recommend(request)
    event = _event(request, answer)
    assert [i["propensity"] for i in event["items"]] == [s.propensity for s in answer.items]
    assert event["fields"]["exploration_share"] == SHARE
    assert event["fields"]["exploration_pool"] == 4
    assert answer.as_dict()["items"][0]["propensity"] == answer.items[0].propensity


@pytest.mark.parametrize("share", [0.01, 0.31, -0.1])
def test_a_share_outside_off_or_5_to_30_percent_is_refused(share):
    with pytest.raises(ValueError, match="exploration.share|share"):
        TemplateConfig(exploration={"share": share})
    assert TemplateConfig(exploration={"share": 0.05}).exploration.share == 0.05


def test_ingest_keeps_the_propensity_and_explored_flag_of_each_slot(bundle):  # noqa: F811
    from sluice.intake.events import EventError, parse_event

    request = RecommendationRequest(user_id="u3", num_results=4, exploration=SHARE)
    event = _event(request, recommender(bundle).recommend(request))
    parsed = parse_event(event, allow_internal=True)
    assert [i["propensity"] for i in parsed["items"]] == [i["propensity"] for i in event["items"]]
    assert [i.get("explored", False) for i in parsed["items"]] == [
        i.get("explored", False) for i in event["items"]]
    event["items"][0]["propensity"] = 1.5
    with pytest.raises(EventError, match=r"items\[0\].propensity"):
        parse_event(event, allow_internal=True)
