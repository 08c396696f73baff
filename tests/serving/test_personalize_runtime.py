"""GetRecommendations and GetPersonalizedRanking member by member, as botocore's
`personalize-runtime` model has them, called with the real boto3 client on a real server:
what the model allows is served (or refused by name when Sluice does not serve it), never
silently ignored."""

from __future__ import annotations

import json

import pytest

from tests.utils.auth import aws_refusal, boto_client, logged_context, runtime_with_catalog
from tests.utils.waits import log_lines, wait_until

REAL_SERVER = True  # the real boto3 clients call it over HTTP

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"
DATASET = "arn:aws:personalize:us-east-1:000000000000:dataset/default/ITEMS"
GENRE = "arn:aws:personalize:us-east-1:000000000000:filter/genre"  # config: Items.CATEGORY
CATALOG = {"book-1": {"category": "books", "tags": ["paper", "new"], "price": 12.5},
           "book-2": {"category": "books"}, "song-1": {"category": "music"}}


@pytest.fixture(scope="module")
def runtime(server):
    """The runtime client, once the server has folded in a small catalog sent by PutItems."""
    return runtime_with_catalog(server["base"], DATASET, CAMPAIGN, CATALOG)


def test_metadata_columns_return_each_items_values(runtime):
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u1", numResults=10,
                                         metadataColumns={"ITEMS": ["CATEGORY", "TAGS", "price"]})
    metadata = {item["itemId"]: item["metadata"] for item in answer["itemList"]}
    assert metadata["book-1"] == {"CATEGORY": "books", "TAGS": "paper|new", "price": "12.5"}
    assert metadata["book-2"] == {"CATEGORY": "books"}  # a value the item lacks is left out
    plain = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u1", numResults=10)
    assert all("metadata" not in item for item in plain["itemList"])


@pytest.mark.parametrize(("columns", "field"), [
    ({"ITEMS": ["NO_SUCH_COLUMN"]}, "metadataColumns.ITEMS[0]"),
    ({"USERS": ["AGE"]}, "metadataColumns"),
    ({"ITEMS": [f"C{n}" for n in range(11)]}, "metadataColumns.ITEMS"),
])
def test_metadata_columns_sluice_cannot_return_are_refused_by_name(runtime, columns, field):
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", metadataColumns=columns))
    assert (status, code) == (400, "InvalidInputException")
    assert message.startswith(f"{field}: ")


def test_promotions_are_refused_not_ignored(runtime):
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", promotions=[
            {"name": "books", "percentPromotedItems": 50, "filterArn": GENRE,
             "filterValues": {"CATEGORIES": '"books"'}}]))
    assert (status, code) == (400, "InvalidInputException")
    assert message.startswith("promotions: not supported")


def test_personalized_ranking_applies_its_filter_and_returns_metadata(runtime):
    ranked = runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN, userId="u1", inputList=["song-1", "book-1", "book-2", "unknown"],
        filterArn=GENRE, filterValues={"CATEGORIES": '"books"'},
        metadataColumns={"ITEMS": ["CATEGORY"]})["personalizedRanking"]
    assert sorted(item["itemId"] for item in ranked) == ["book-1", "book-2"]
    assert all(item["metadata"] == {"CATEGORY": "books"} for item in ranked)


def test_personalized_ranking_logs_its_context_with_the_answer(runtime, server):
    answer = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId="u1",
                                              inputList=["book-1"], context={"DEVICE": "tv"})
    marker = b'"id":' + json.dumps(answer["recommendationId"]).encode()
    line = wait_until(lambda: next((line for line in log_lines(server["home"])
                                    if marker in line), None), "the ranking in the raw log")
    assert json.loads(line)["fields"]["context.DEVICE"] == "tv"


@pytest.mark.parametrize(("more", "field"), [
    ({"recommenderArn": "arn:aws:personalize:us-east-1:000000000000:recommender/default"},
     "recommenderArn"),
    ({"filterValues": {"CATEGORIES": '"books"'}}, "filterValues"),
    ({"filterArn": GENRE, "filterValues": {"-+-": '"books"'}}, "filterValues"),
    ({"filterArn": GENRE, "filterValues": {"C" * 51: '"books"'}}, "filterValues"),
    ({"context": {"::": "tv"}}, "context"),
])
def test_runtime_parameters_outside_the_model_are_refused_by_name(runtime, more, field):
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", **more))
    assert (status, code) == (400, "InvalidInputException")
    assert message.startswith(f"{field}: ")


def test_a_request_without_a_campaign_names_both_arns(runtime):
    _, code, message = aws_refusal(lambda: runtime.get_recommendations(userId="u1"))
    assert code == "InvalidInputException"
    assert message == "campaignArn: required: campaignArn or recommenderArn"


def test_a_context_as_large_as_the_model_allows_is_logged_and_ingested(runtime, server,
                                                                        tmp_path):
    from sluice.warehouse.ingest import Ingestor

    context = {f"{n:03d}" + "K" * 147: "v" * 1000 for n in range(150)}  # 150 names of 150
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u1", numResults=2,
                                         context=context)
    assert logged_context(server["home"], answer) == context
    report = Ingestor(tmp_path / "warehouse.duckdb", server["home"] / "raw",
                      tmp_path / "landing").run()
    assert report.rows_quarantined == 0
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", context={**context, "one_more": "v"}))
    assert (status, code) == (400, "InvalidInputException") and message.startswith("context:")


@pytest.mark.parametrize("value", [
    "books",  # unquoted: Personalize's filterValues hold quoted strings, "books"
    ",".join(f'"v{n}"' for n in range(101)),  # IN takes at most 100 values
])
def test_a_filter_value_that_cannot_be_read_is_refused_naming_that_value(runtime, value):
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", filterArn=GENRE, filterValues={"CATEGORIES": value}))
    assert (status, code) == (400, "InvalidInputException")
    assert message.startswith("filterValues.CATEGORIES: ")


def test_a_categorical_value_sent_by_put_items_as_a_b_is_a_list_as_in_a_bulk_file(runtime,
                                                                                  server):
    # Personalize's categorical fields take several values as `a|b`, by PutItems as in a CSV
    events = boto_client(server["base"], "personalize-events")
    events.put_items(datasetArn=DATASET, items=[
        {"itemId": "both-1", "properties": json.dumps({"category": "books|music"})}])
    music = wait_until(lambda: runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="u1", numResults=10, filterArn=GENRE,
        filterValues={"CATEGORIES": '"music"'}, metadataColumns={"ITEMS": ["CATEGORY"]}),
        "the new item in serving", until=lambda answer: "both-1" in {
            item["itemId"] for item in answer["itemList"]})
    assert {item["itemId"]: item["metadata"]["CATEGORY"] for item in music["itemList"]} == {
        "song-1": "music", "both-1": "books|music"}
    item = next(e for e in log_lines(server["home"]) if b'"both-1"' in e)
    assert json.loads(item)["fields"] == {"category": ["books", "music"]}


def test_a_template_that_needs_an_item_names_the_itemid_member(runtime):
    # the similar_attributes recommender answers for an item: without itemId, that member
    status, code, message = aws_refusal(lambda: runtime.get_recommendations(
        recommenderArn="arn:aws:personalize:us-east-1:000000000000:recommender/default/"
                       "similar_attributes", userId="u1"))
    assert (status, code) == (400, "InvalidInputException")
    assert message.startswith("itemId: ")
