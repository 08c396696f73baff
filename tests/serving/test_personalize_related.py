"""GetRecommendations by itemId (a related-items campaign, as Personalize calls it), with the
real boto3 client on a real server holding a small champion: the item asked about is never
in its own answer, and a userId given with the itemId filters the related items for that
user (Personalize's related-items recipes take userId for that), rather than turning the
call into the user's personalized list."""

from __future__ import annotations

import pytest

from tests.utils.auth import boto_client
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.waits import wait_until

REAL_SERVER = True  # the real boto3 clients call it over HTTP

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"
ITEMS = 60


@pytest.fixture(scope="module")
def bundle():
    return synthetic_bundle(items=ITEMS, users=10, heads=0)


@pytest.fixture(scope="module")
def server_env(tmp_path_factory, bundle):
    home = tmp_path_factory.mktemp("related")
    env = environment(home)
    register_champion(bundle, env["MLFLOW_TRACKING_URI"], home / "artifacts")
    return env


@pytest.fixture(scope="module")
def runtime(server):
    client = boto_client(server["base"], "personalize-runtime")
    wait_until(lambda: client.get_recommendations(campaignArn=CAMPAIGN, itemId="i0",
                                                  numResults=5)["itemList"],
               "the champion in serving",
               until=lambda got: got and got[0]["reason"] == ["model_personalized"])
    return client


def _ids(answer: dict) -> list[str]:
    return [item["itemId"] for item in answer["itemList"]]


def test_the_item_asked_about_is_never_in_its_own_answer(runtime):
    # every other item of the catalog: the model's neighbours, then whatever fills the rest
    got = _ids(runtime.get_recommendations(campaignArn=CAMPAIGN, itemId="i3",
                                           numResults=ITEMS))
    assert "i3" not in got
    assert len(got) == len(set(got)) == ITEMS - 1


def test_a_user_given_with_the_item_filters_its_related_items(runtime, bundle):
    seen = set(bundle.item_ids[bundle.user_items[0].indices].tolist())  # user u0's items
    assert seen
    related = _ids(runtime.get_recommendations(campaignArn=CAMPAIGN, itemId="i3",
                                               numResults=ITEMS))
    for_user = runtime.get_recommendations(campaignArn=CAMPAIGN, itemId="i3", userId="u0",
                                           numResults=10)
    assert _ids(for_user) == [i for i in related if i not in seen][:10]
    assert {r for item in for_user["itemList"] for r in item["reason"]} == {
        "model_personalized"}
