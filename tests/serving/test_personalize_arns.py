"""Which campaign a campaignArn or recommenderArn names, with the real boto3 client on a real
server: `<campaign|recommender>/<dataset group>` chooses the template by the ids given, and a
last part names one of the templates (built in, or configured) and selects it; an ARN naming a
template that does not exist is a campaign that does not exist (ResourceNotFoundException,
listing the ARNs that do), never another template's answer."""

from __future__ import annotations

import pytest

from sluice.vocabulary import TEMPLATES
from tests.utils.auth import aws_refusal, runtime_with_catalog
from tests.utils.factories import environment

REAL_SERVER = True  # the real boto3 clients call it over HTTP

ARN = "arn:aws:personalize:us-east-1:000000000000:"
CAMPAIGN = ARN + "campaign/default"
DATASET = ARN + "dataset/default/ITEMS"
CATALOG = {"book-1": {"category": "books", "price": 5}, "book-2": {"category": "books"},
           "song-1": {"category": "music", "price": 30}, "song-2": {"category": "music"}}
# a configured template: the books of the catalog, whatever else the chain would give
CONFIG = {"templates": {"books_only": {"base": "popular", "filters": [
    {"field": "category", "op": "eq", "value": "books"}]}}}


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    return environment(tmp_path_factory.mktemp("arns"), **CONFIG)


@pytest.fixture(scope="module")
def runtime(server):
    return runtime_with_catalog(server["base"], DATASET, CAMPAIGN, CATALOG)


def _ids(answer: dict, key: str = "itemList") -> set[str]:
    return {item["itemId"] for item in answer[key]}


@pytest.mark.parametrize("member", ["campaignArn", "recommenderArn"])
def test_the_last_part_selects_a_configured_template(runtime, member):
    kind = "campaign" if member == "campaignArn" else "recommender"
    every = runtime.get_recommendations(**{member: f"{ARN}{kind}/default"}, userId="u1",
                                        numResults=10)
    books = runtime.get_recommendations(**{member: f"{ARN}{kind}/default/books_only"},
                                        userId="u1", numResults=10)
    assert _ids(every) >= set(CATALOG)
    assert _ids(books) == {"book-1", "book-2"}


def test_a_ranking_campaign_of_a_configured_template_ranks_within_its_filters(runtime):
    ranked = runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN + "/books_only", userId="u1",
        inputList=["song-1", "book-1", "song-2", "book-2"])
    assert _ids(ranked, "personalizedRanking") == {"book-1", "book-2"}
    plain = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId="u1",
                                             inputList=["song-1", "book-1"])
    assert [i["itemId"] for i in plain["personalizedRanking"]] == ["song-1", "book-1"]


@pytest.mark.parametrize(("member", "arn"), [
    ("campaignArn", CAMPAIGN + "/no_such_template"),
    ("recommenderArn", ARN + "recommender/default/similar_attribute"),  # a typo
    ("recommenderArn", ARN + "recommender/default/"),
    ("campaignArn", CAMPAIGN + "/books_only/similar_attributes"),
])
def test_an_arn_naming_no_template_is_a_campaign_that_does_not_exist(runtime, member, arn):
    # before, each of these answered as another template did (by the ids given)
    for call in (lambda: runtime.get_recommendations(**{member: arn}, itemId="book-1"),
                 lambda: runtime.get_recommendations(**{member: arn}, userId="u1")):
        status, code, message = aws_refusal(call)
        assert (status, code) == (404, "ResourceNotFoundException")
        kind = member.removesuffix("Arn")
        assert message.startswith(f"{member}: no {kind} {arn!r}: dataset group 'default' has "
                                  f"{ARN}{kind}/default (the template chosen by the ids given) "
                                  f"and {ARN}{kind}/default/TEMPLATE for TEMPLATE one of ")
        listed = message.rsplit("one of ", 1)[1].split(", ")
        assert listed[:len(TEMPLATES)] == list(TEMPLATES) and "books_only" in listed


def test_a_ranking_campaign_naming_no_template_does_not_exist(runtime):
    status, code, message = aws_refusal(lambda: runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN + "/no_such_template", userId="u1", inputList=["book-1"]))
    assert (status, code) == (404, "ResourceNotFoundException")
    assert "no campaign" in message and "books_only" in message


@pytest.mark.parametrize(("member", "arn"), [
    ("campaignArn", ARN + "recommender/default"),
    ("recommenderArn", CAMPAIGN),
    ("campaignArn", ARN + "dataset/default/ITEMS"),
])
def test_an_arn_of_another_kind_names_no_campaign(runtime, member, arn):
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        **{member: arn}, userId="u1"))
    assert (status, code) == (404, "ResourceNotFoundException")
    assert message.startswith(f"{member}: no {member.removesuffix('Arn')} {arn!r}: {member} "
                              "names a")


def test_a_key_of_another_tenant_is_refused_before_the_template_is_looked_up(server, runtime):
    from tests.utils.auth import headers

    answer = server["http"].post("/personalize/recommendations", headers=headers("read", "shop"),
                                 json={"campaignArn": CAMPAIGN + "/no_such_template",
                                       "userId": "u1"})
    assert (answer.status_code, answer.headers["x-amzn-ErrorType"]) == (
        403, "AccessDeniedException")
    assert "books_only" not in answer.text
