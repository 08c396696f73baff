"""The Personalize-compatible intake, called with the real boto3 client on a real server."""

from __future__ import annotations

import json
import time

import httpx
import orjson
import pytest
from botocore.exceptions import ClientError

from sluice.intake.eventlog import segments
from tests.utils.auth import WRITE, boto_client
from tests.utils.factories import environment

ARN = "arn:aws:personalize:us-east-1:000000000000:dataset/{}/ITEMS"


REAL_SERVER = True  # the real boto3 clients call it over HTTP


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """A home with a tracker for tenant "shop", created by the CLI before the server starts."""
    home = tmp_path_factory.mktemp("personalize")
    from cli.main import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_HOME", str(home))
        assert main(["trackers", "create", "shop"]) == 0
    return environment(home)


@pytest.fixture(scope="module")
def shop_id(server) -> str:
    trackers = json.loads((server["home"] / "trackers.json").read_text())
    return next(k for k, v in trackers.items() if v == "shop")


def logged(home) -> list[dict]:
    return [orjson.loads(line) for path in segments(home / "raw")
            for line in path.read_bytes().splitlines()]


def test_put_events_lands_as_internal_interactions(server):
    events = boto_client(server["base"], "personalize-events")
    sent_at = time.time()
    events.put_events(
        trackingId="demo-tracking-id", userId="alice", sessionId="sess-1",
        eventList=[
            {"eventId": "pe-1", "eventType": "purchase", "eventValue": 19.5, "itemId": "i1",
             "sentAt": sent_at, "properties": json.dumps({"numberOfRatings": 3}),
             "recommendationId": "rec-9"},
            {"eventId": "pe-2", "eventType": "click", "itemId": "i2", "sentAt": sent_at,
             "impression": ["i2", "i3", "i4"]},
        ])
    found = {e["id"]: e for e in logged(server["home"])}
    purchase = found["pe-1"]
    assert purchase["event"] == "interaction"
    assert (purchase["tenant"], purchase["user"], purchase["session"]) == (
        "default", "alice", "sess-1")
    assert (purchase["type"], purchase["value"], purchase["ranking"]) == (
        "purchase", 19.5, "rec-9")
    assert purchase["fields"] == {"number_of_ratings": 3}
    assert abs(purchase["timestamp"] - sent_at * 1000) < 2
    impression = found["pe-2:impression"]
    assert impression["event"] == "ranking"
    assert [i["id"] for i in impression["items"]] == ["i2", "i3", "i4"]
    assert found["pe-2"]["ranking"] == "pe-2:impression"


def test_a_created_tracker_writes_into_its_tenant(server, shop_id):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId=shop_id, sessionId="s", eventList=[
        {"eventId": "shop-1", "eventType": "click", "itemId": "x", "sentAt": time.time()}])
    found = {e["id"]: e for e in logged(server["home"])}
    assert found["shop-1"]["tenant"] == "shop"


def test_unknown_tracker_is_resource_not_found(server):
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.ResourceNotFoundException) as err:
        events.put_events(trackingId="nope", sessionId="s", eventList=[
            {"eventType": "click", "itemId": "x", "sentAt": time.time()}])
    assert "trackingId" in str(err.value)


@pytest.mark.parametrize(("event", "field"), [
    ({"eventType": "click", "itemId": "x", "sentAt": 1, "properties": "{not json"},
     "eventList[0].properties"),
    ({"eventType": "click", "itemId": "x", "sentAt": 1, "properties": "[1, 2]"},
     "eventList[0].properties"),
    ({"eventType": "click", "sentAt": 1}, "eventList[0].itemId"),
    ({"eventType": "click", "itemId": "x", "sentAt": 1,
      "properties": json.dumps({"nested": {"a": 1}})}, "eventList[0].properties"),
])
def test_invalid_input_names_the_field_and_writes_nothing(server, event, field):
    events = boto_client(server["base"], "personalize-events")
    event = {**event, "sentAt": time.time()}
    before = len(logged(server["home"]))
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[event])
    assert field in str(err.value)
    assert len(logged(server["home"])) == before


def test_a_bad_event_rejects_the_whole_call(server):
    events = boto_client(server["base"], "personalize-events")
    before = len(logged(server["home"]))
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
            {"eventType": "click", "itemId": "ok", "sentAt": time.time()},
            {"eventType": "click", "sentAt": time.time()}])
    assert "eventList[1].itemId" in str(err.value)
    assert len(logged(server["home"])) == before


def test_what_botocore_would_send_unchecked_is_still_refused(server):
    # botocore validates on the client; a raw caller gets the same answer from the server
    r = httpx.post(f"{server['base']}/personalize/events", headers=WRITE, json={
        "trackingId": "demo-tracking-id", "sessionId": "s",
        "eventList": [{"eventType": "click", "itemId": "x", "sentAt": time.time()}] * 11})
    assert r.status_code == 400
    assert r.headers["x-amzn-ErrorType"] == "InvalidInputException"
    assert "eventList" in r.json()["message"]


def test_retried_events_without_ids_get_the_same_id(server):
    events = boto_client(server["base"], "personalize-events")
    call = {"trackingId": "demo-tracking-id", "sessionId": "retry", "eventList": [
        {"eventType": "click", "itemId": "i7", "sentAt": 1_767_225_600.25}]}
    events.put_events(**call)
    events.put_events(**call)
    ids = [e["id"] for e in logged(server["home"]) if e.get("session") == "retry"]
    assert len(ids) == 2 and ids[0] == ids[1]  # the log keeps both; ingest keeps one


def test_put_items_and_users(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_items(datasetArn=ARN.format("shop"), items=[
        {"itemId": "sku-1", "properties": json.dumps({"genreName": ["a", "b"], "price": 9.5})}])
    events.put_users(datasetArn=ARN.format("shop").replace("ITEMS", "USERS"), users=[
        {"userId": "bob", "properties": json.dumps({"ageGroup": "30s"})}])
    found = logged(server["home"])
    item = next(e for e in found if e["event"] == "item" and e["item"] == "sku-1")
    assert item["tenant"] == "shop"
    assert item["fields"] == {"genre_name": ["a", "b"], "price": 9.5}
    user = next(e for e in found if e["event"] == "user" and e["user"] == "bob")
    assert user["fields"] == {"age_group": "30s"}
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.put_items(datasetArn=ARN.format("no-such-group"), items=[{"itemId": "x"}])
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_items(datasetArn=ARN.format("shop"), items=[
            {"itemId": "x", "properties": "not json"}])
    assert "items[0].properties" in str(err.value)


# --- the Personalize developer guide's own examples -----------------------------------------
GUIDE_SENT_AT = 1553631760  # the guide's sentAt: epoch seconds


def _interaction(home, session: str) -> dict:
    return next(e for e in logged(home) if e["event"] == "interaction"
                and e.get("session") == session)


def test_the_guides_sdk_form_lands_with_the_item_and_value_in_properties(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", userId="user123", sessionId="guide-sdk",
                      eventList=[{"sentAt": GUIDE_SENT_AT, "eventType": "like", "properties":
                                  json.dumps({"itemId": "choc-panama", "eventValue": 4,
                                              "numRatings": 0})}])
    event = _interaction(server["home"], "guide-sdk")
    assert (event["item"], event["value"], event["type"]) == ("choc-panama", 4.0, "like")
    assert event["timestamp"] == GUIDE_SENT_AT * 1000
    assert event["fields"] == {"num_ratings": 0}


def test_the_guides_cli_form_with_string_values_lands_as_numbers(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", userId="user123", sessionId="guide-cli",
                      eventList=[{"sentAt": GUIDE_SENT_AT, "eventType": "like", "properties":
                                  json.dumps({"itemId": "choc-panama", "eventValue": "4",
                                              "numRatings": "13"})}])
    event = _interaction(server["home"], "guide-cli")
    assert (event["item"], event["value"]) == ("choc-panama", 4.0)
    assert event["fields"] == {"num_ratings": 13}


def test_impression_and_recommendation_id_may_come_in_properties(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="guide-props", eventList=[
        {"sentAt": GUIDE_SENT_AT, "eventType": "click", "itemId": "i1", "eventValue": 2.0,
         "properties": json.dumps({"eventValue": "2", "recommendationId": "rec-1",
                                   "impression": ["i1", "i2"]})}])
    event = _interaction(server["home"], "guide-props")
    assert (event["ranking"], event["value"]) == ("rec-1", 2.0)
    ranking = next(e for e in logged(server["home"]) if e["event"] == "ranking"
                   and e.get("session") == "guide-props")
    assert [i["id"] for i in ranking["items"]] == ["i1", "i2"]


def test_an_impression_in_properties_may_be_written_as_the_schema_field_a_b_c(server):
    # IMPRESSION is the interactions schema's field, `a|b|c` as in a bulk file's cell
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="guide-pipes", eventList=[
        {"sentAt": GUIDE_SENT_AT, "eventType": "click", "properties": json.dumps(
            {"itemId": "i2", "impression": "i1|i2|i3"})},
        {"sentAt": GUIDE_SENT_AT, "eventType": "click", "itemId": "i9",
         "impression": ["i8", "i9"], "properties": json.dumps({"impression": "i8|i9"})}])
    rankings = [e for e in logged(server["home"]) if e["event"] == "ranking"
                and e.get("session") == "guide-pipes"]
    assert [[i["id"] for i in r["items"]] for r in rankings] == [["i1", "i2", "i3"], ["i8", "i9"]]


@pytest.mark.parametrize(("top", "inner", "field"), [
    ({"itemId": "a"}, {"itemId": "b"}, "eventList[0].itemId"),
    ({"itemId": "a", "eventValue": 5}, {"eventValue": "4"}, "eventList[0].eventValue"),
    ({"itemId": "a", "recommendationId": "r1"}, {"recommendationId": "r2"},
     "eventList[0].recommendationId"),
])
def test_a_value_given_twice_must_agree(server, top, inner, field):
    events = boto_client(server["base"], "personalize-events")
    before = len(logged(server["home"]))
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
            {"sentAt": GUIDE_SENT_AT, "eventType": "click", **top,
             "properties": json.dumps(inner)}])
    assert field in str(err.value) and "send it once" in str(err.value)
    assert len(logged(server["home"])) == before


def _sent_as(client, old: bytes, new: bytes) -> None:
    """The client's body with `old` written as `new` before it is signed: what an SDK that
    passes the value through as it was given sends (the JS SDK v3's serializeFloat returns
    a string as it is; botocore cannot serialize one)."""
    def rewrite(request, **_):
        assert old in request.body
        request.data = request.body.replace(old, new)
    client.meta.events.register("before-sign.personalize-events.PutEvents", rewrite)


@pytest.mark.parametrize("sent", [b"true", b'"true"', b'"4"', b'["4"]'])
def test_an_event_value_that_is_no_json_number_is_malformed_as_aws_answers(server, sent):
    # boto3 sends eventValue=True as `true` (bool is an int to its validation); the others
    # come from SDKs that do not check types: the restJson1 protocol refuses each of them,
    # before reading the call, as a SerializationException
    events = boto_client(server["base"], "personalize-events")
    value: object = True
    if sent != b"true":
        value = 0.5
        _sent_as(events, b'"eventValue": 0.5', b'"eventValue": ' + sent)
    before = len(logged(server["home"]))
    with pytest.raises(ClientError) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="typed", eventList=[
            {"sentAt": GUIDE_SENT_AT, "eventType": "click", "itemId": "i1",
             "eventValue": value}])
    response = err.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
        400, "SerializationException")
    assert response["Error"]["Message"].startswith(
        'eventList[0].eventValue: float member: expected a JSON number (or "NaN", "Infinity", '
        '"-Infinity"), got ')
    assert len(logged(server["home"])) == before


def test_an_event_value_nan_is_read_as_the_protocol_writes_it_and_refused_as_not_finite(server):
    events = boto_client(server["base"], "personalize-events")  # botocore sends "NaN"
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="nan", eventList=[
            {"sentAt": GUIDE_SENT_AT, "eventType": "click", "itemId": "i1",
             "eventValue": float("nan")}])
    assert "eventList[0].eventValue: must be finite" in str(err.value)


def test_put_items_properties_follow_the_same_rule(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_items(datasetArn=ARN.format("shop"), items=[
        {"itemId": "sku-9", "properties": json.dumps({"itemId": "sku-9", "price": "3.5",
                                                      "zip": "02134"})}])
    item = next(e for e in logged(server["home"]) if e["event"] == "item"
                and e["item"] == "sku-9")
    assert item["fields"] == {"price": 3.5, "zip": "02134"}  # a leading zero stays text
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_items(datasetArn=ARN.format("shop"), items=[
            {"itemId": "sku-9", "properties": json.dumps({"itemId": "other"})}])
    assert "items[0].itemId" in str(err.value)


@pytest.mark.parametrize(("properties", "field"), [
    ('{"itemId": "x", "count": 123456789012345678901234567890}', "properties.count"),
    ('{"itemId": "x", "score": NaN}', "eventList[0].properties"),
    ('{"itemId": "x", "score": Infinity}', "eventList[0].properties"),
])
def test_wide_integers_and_nan_in_properties_are_refused_by_field(server, properties, field):
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
            {"sentAt": GUIDE_SENT_AT, "eventType": "click", "properties": properties}])
    assert field in str(err.value)


def test_a_dataset_arn_naming_a_parent_directory_is_reported_against_the_arn(server):
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_items(datasetArn=ARN.format(".."), items=[{"itemId": "x"}])
    assert str(err.value).split(": ", 1)[1].startswith("datasetArn")


@pytest.mark.parametrize("tracking_id", [12345, ["a"], {"a": 1}, True])
def test_a_tracking_id_that_is_not_a_string_is_malformed(server, tracking_id):
    # a string member of another JSON type: the protocol refuses it before the tracker is
    # looked up (tests/serving/test_personalize_types.py has every member)
    r = httpx.post(f"{server['base']}/personalize/events", headers=WRITE, json={
        "trackingId": tracking_id, "sessionId": "s",
        "eventList": [{"eventType": "click", "itemId": "x", "sentAt": GUIDE_SENT_AT}]})
    assert r.status_code == 400
    assert r.headers["x-amzn-ErrorType"] == "SerializationException"
    assert r.json()["message"].startswith("trackingId: string member: expected a JSON string")


@pytest.mark.parametrize(("body", "field"), [
    (b'{"event": "item", "id": "wide-1", "item": "i1", "timestamp": 1767225600000, '
     b'"fields": [{"name": "n", "value": 123456789012345678901234567890}]}', "fields.n"),
    (b'{"event": "interaction", "id": "wide-2", "item": "i1", "user": "u", "type": "rate", '
     b'"timestamp": 1767225600000, "value": 123456789012345678901234567890}', "value"),
])
def test_a_wide_integer_in_a_native_event_field_is_refused_not_rounded(server, body, field):
    r = httpx.post(f"{server['base']}/v1/events", headers={**WRITE, "content-type":
                                                           "application/json"}, content=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == field


# --- botocore's model, member by member (an adversarial review with the real clients) -------
def test_two_identical_events_are_stored_once_as_personalize_keeps_one(server):
    # the guide: "If you record two events with exactly the same timestamp and identical
    # properties, Amazon Personalize keeps only one of the events"; without eventId the id
    # Sluice derives from the content is the same, so ingest keeps one
    events = boto_client(server["base"], "personalize-events")
    click = {"eventType": "click", "itemId": "twice", "sentAt": GUIDE_SENT_AT}
    events.put_events(trackingId="demo-tracking-id", sessionId="twice", eventList=[click, click])
    ids = [e["id"] for e in logged(server["home"]) if e.get("session") == "twice"]
    assert len(ids) == 2 and len(set(ids)) == 1
    other = {**click, "metricAttribution": {"eventAttributionSource": "email"}}
    events.put_events(trackingId="demo-tracking-id", sessionId="twice", eventList=[other])
    ids = [e["id"] for e in logged(server["home"]) if e.get("session") == "twice"]
    assert len(set(ids)) == 2  # a different attribution is a different event


def test_metric_attribution_is_kept_as_a_field(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
        {"eventId": "attributed-1", "eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT,
         "metricAttribution": {"eventAttributionSource": "email campaign 12"}}])
    found = {e["id"]: e for e in logged(server["home"])}
    assert found["attributed-1"]["fields"] == {"event_attribution_source": "email campaign 12"}


@pytest.mark.parametrize("source", ["   ", "a" * 1025, "caf\u00e9", "tab\there"])
def test_an_attribution_source_outside_the_model_is_refused(server, source):
    events = boto_client(server["base"], "personalize-events")
    before = len(logged(server["home"]))
    with pytest.raises(events.exceptions.InvalidInputException) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
            {"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT,
             "metricAttribution": {"eventAttributionSource": source}}])
    assert "eventList[0].metricAttribution.eventAttributionSource" in str(err.value)
    assert len(logged(server["home"])) == before


def test_an_event_type_as_long_as_the_model_allows_is_accepted(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
        {"eventId": "long-type", "eventType": "t" * 256, "itemId": "i1", "sentAt": GUIDE_SENT_AT}])
    assert {e["id"]: e for e in logged(server["home"])}["long-type"]["type"] == "t" * 256
    with pytest.raises(events.exceptions.InvalidInputException, match="eventList.0..eventType"):
        events.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
            {"eventType": "t" * 257, "itemId": "i1", "sentAt": GUIDE_SENT_AT}])


def test_the_properties_of_an_event_without_an_item_are_kept(server):
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="seen-only", eventList=[
        {"eventType": "view", "sentAt": GUIDE_SENT_AT, "impression": ["i1", "i2"],
         "properties": json.dumps({"device": "tv"})}])
    ranking = next(e for e in logged(server["home"]) if e.get("session") == "seen-only")
    assert ranking["event"] == "ranking" and ranking["fields"] == {"device": "tv"}


def test_a_tracking_id_longer_than_the_model_allows_is_invalid_input(server):
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.InvalidInputException, match="trackingId: length"):
        events.put_events(trackingId="t" * 257, sessionId="s", eventList=[
            {"eventType": "click", "itemId": "x", "sentAt": GUIDE_SENT_AT}])


@pytest.mark.parametrize(("call", "arn"), [
    ("put_items", ARN.format("shop").replace("ITEMS", "USERS")),
    ("put_users", ARN.format("shop")),
    ("put_items", "arn:aws:personalize:us-east-1:000000000000:dataset/shop"),
])
def test_put_items_and_users_need_the_arn_of_their_own_dataset(server, call, arn):
    events = boto_client(server["base"], "personalize-events")
    entries = {"items": [{"itemId": "x"}]} if call == "put_items" else {"users": [{"userId": "x"}]}
    before = len(logged(server["home"]))
    with pytest.raises(events.exceptions.InvalidInputException, match="datasetArn: expected"):
        getattr(events, call)(datasetArn=arn, **entries)
    assert len(logged(server["home"])) == before


def test_operations_sluice_does_not_serve_are_refused_by_name(server):
    events = boto_client(server["base"], "personalize-events")
    runtime = boto_client(server["base"], "personalize-runtime")
    calls = {
        "PutActions": lambda: events.put_actions(
            datasetArn=ARN.format("shop").replace("ITEMS", "ACTIONS"), actions=[{"actionId": "a"}]),
        "PutActionInteractions": lambda: events.put_action_interactions(
            trackingId="demo-tracking-id", actionInteractions=[
                {"actionId": "a", "sessionId": "s", "timestamp": GUIDE_SENT_AT, "eventType": "x"}]),
        "GetActionRecommendations": lambda: runtime.get_action_recommendations(
            campaignArn="arn:aws:personalize:us-east-1:000000000000:campaign/default", userId="u"),
    }
    for operation, call in calls.items():
        with pytest.raises(ClientError) as err:
            call()
        error = err.value.response["Error"]
        assert error["Code"] == "InvalidInputException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error["Message"].startswith(f"{operation}: not supported")


@pytest.mark.parametrize(("method", "path"), [("POST", "nothing"), ("GET", "events"),
                                              ("PUT", "recommendations")])
def test_any_other_path_or_method_answers_in_the_aws_shape(server, method, path):
    r = httpx.request(method, f"{server['base']}/personalize/{path}", headers=WRITE, json={})
    assert r.status_code == 404
    assert r.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert r.json()["message"].startswith(f"no Personalize operation {method} /personalize/{path}")


def test_an_item_description_as_long_as_personalize_takes_is_accepted(server):
    # Personalize's textual item fields hold 20,000 characters
    events = boto_client(server["base"], "personalize-events")
    text = "a long description " * 1052  # 19,988 characters
    events.put_items(datasetArn=ARN.format("shop"), items=[
        {"itemId": "described", "properties": json.dumps({"description": text})}])
    item = next(e for e in logged(server["home"]) if e["event"] == "item"
                and e["item"] == "described")
    assert item["fields"]["description"] == text
    with pytest.raises(events.exceptions.InvalidInputException,
                       match=r"items\[0\]\.properties\.description"):
        events.put_items(datasetArn=ARN.format("shop"), items=[
            {"itemId": "described", "properties": json.dumps({"description": "x" * 20_001})}])


def test_ten_items_whose_properties_botocore_escapes_to_megabytes_are_accepted(server):
    # 10 x 28,000 characters outside the BMP (within the model's 32,000): botocore writes
    # each as two \uXXXX escapes, 12 bytes, so the body is about 3.4 MB
    events = boto_client(server["base"], "personalize-events")
    properties = json.dumps({f"note{n}": "\U0001F600" * 4000 for n in range(7)},
                            ensure_ascii=False)
    assert len(properties) <= 32_000
    events.put_items(datasetArn=ARN.format("shop"), items=[
        {"itemId": f"emoji-{n}", "properties": properties} for n in range(10)])
    stored = {e["item"] for e in logged(server["home"]) if e["event"] == "item"}
    assert {f"emoji-{n}" for n in range(10)} <= stored


def test_a_parameter_repeated_in_properties_must_agree(server):
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.InvalidInputException,
                       match=r"eventList\[0\]\.properties\.userId: differs"):
        events.put_events(trackingId="demo-tracking-id", userId="alice", sessionId="s",
                          eventList=[{"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT,
                                      "properties": json.dumps({"userId": "mallory"})}])
    events.put_events(trackingId="demo-tracking-id", userId="alice", sessionId="same-user",
                      eventList=[{"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT,
                                  "properties": json.dumps({"userId": "alice", "rating": 2})}])
    event = _interaction(server["home"], "same-user")
    assert (event["user"], event["fields"]) == ("alice", {"rating": 2})


def test_a_null_property_of_an_event_is_a_field_without_a_value(server):
    # an optional schema field the application has no value for, as JSON serializers write it
    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", sessionId="null-field", eventList=[
        {"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT,
         "properties": json.dumps({"device": None, "rating": 2})}])
    assert _interaction(server["home"], "null-field")["fields"] == {"rating": 2}
    # an item's fields are merged by name: a null could not clear one, so it is refused
    with pytest.raises(events.exceptions.InvalidInputException,
                       match=r"items\[0\]\.properties\.genre: null"):
        events.put_items(datasetArn=ARN.format("shop"), items=[
            {"itemId": "sku-null", "properties": json.dumps({"genre": None})}])


def test_derived_ids_of_events_without_attribution_are_those_of_earlier_releases():
    # a call retried across an upgrade must get the id it got before, or it is stored twice
    from sluice.intake import personalize

    events = personalize.put_events({"trackingId": "t", "sessionId": "s", "eventList": [
        {"eventType": "click", "itemId": "i7", "sentAt": 1_767_225_600.25}]}, "default")
    assert events[0]["id"] == "pe-c97658255efbfb18c44f63991b9b6f5d"


@pytest.mark.parametrize("item", [{"itemId": "i1"}, {}])
def test_an_event_id_as_long_as_the_model_allows_keeps_its_impression(server, item):
    # the impression's list gets an id of its own, which must fit the 256-character id rule too
    events = boto_client(server["base"], "personalize-events")
    session = f"long-id-{len(item)}"
    call = {"trackingId": "demo-tracking-id", "sessionId": session, "eventList": [
        {"eventId": session.ljust(256, "e"), "eventType": "view", "sentAt": GUIDE_SENT_AT,
         "impression": ["i1", "i2"], **item}]}
    events.put_events(**call)
    events.put_events(**call)  # retried: the same ids
    found = [e for e in logged(server["home"]) if e.get("session") == session]
    rankings = {e["id"]: e for e in found if e["event"] == "ranking"}
    assert len(rankings) == 1 and all(len(i) <= 256 for i in rankings)
    ranking = next(iter(rankings.values()))
    assert [i["id"] for i in ranking["items"]] == ["i1", "i2"]
    if item:
        assert {e["ranking"] for e in found if e["event"] == "interaction"} == {ranking["id"]}


def test_every_answer_carries_a_request_id_as_aws_answers_do(server):
    # applications log response["ResponseMetadata"]["RequestId"], of answers and errors alike
    events = boto_client(server["base"], "personalize-events")
    runtime = boto_client(server["base"], "personalize-runtime")
    answered = events.put_events(trackingId="demo-tracking-id", sessionId="rid", eventList=[
        {"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT}])
    ids = [answered["ResponseMetadata"]["RequestId"], runtime.get_recommendations(
        campaignArn="arn:aws:personalize:us-east-1:000000000000:campaign/default",
        userId="u1", numResults=1)["ResponseMetadata"]["RequestId"]]
    for call in (lambda: events.put_events(trackingId="demo-tracking-id", sessionId="rid",
                                           eventList=[{"eventType": "click", "sentAt": 1}]),
                 lambda: events.put_items(datasetArn=ARN.format("shop"), items=[
                     {"itemId": "big", "properties": json.dumps({"a": "\u00e9" * 31_000})}] * 10),
                 lambda: runtime.get_action_recommendations(campaignArn="arn:aws:personalize:"
                                                            "us-east-1:0:campaign/default")):
        with pytest.raises(ClientError) as err:
            call()
        ids.append(err.value.response["ResponseMetadata"]["RequestId"])
    assert all(ids) and len(set(ids)) == len(ids)


def test_a_call_botocore_retries_after_it_was_stored_is_ingested_once(server, tmp_path):
    # the answer lost after the write: botocore's own retry sends the same request again
    from sluice.warehouse.db import connect
    from sluice.warehouse.ingest import Ingestor

    events = boto_client(server["base"], "personalize-events")
    seen: list[int] = []

    def retry_once(attempts: int, **_) -> float | None:
        seen.append(attempts)
        return 0 if attempts == 1 else None

    events.meta.events.register("needs-retry.personalize-events.PutEvents", retry_once)
    answer = events.put_events(trackingId="demo-tracking-id", userId="r", sessionId="retried",
                               eventList=[
        {"eventType": "click", "itemId": "i1", "sentAt": GUIDE_SENT_AT},
        {"eventType": "click", "itemId": "i2", "sentAt": GUIDE_SENT_AT + 1,
         "impression": ["i1", "i2"]},
        {"eventType": "view", "sentAt": GUIDE_SENT_AT + 2, "impression": ["i3"]}])
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1 and seen == [1, 2]
    assert len([e for e in logged(server["home"]) if e.get("session") == "retried"]) == 8
    Ingestor(tmp_path / "warehouse.duckdb", server["home"] / "raw", tmp_path / "landing").run()
    con = connect(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        stored = con.execute("select event_type, count(*) from raw.events "
                             "where session_id = 'retried' group by 1 order by 1").fetchall()
    finally:
        con.close()
    assert stored == [("interaction", 2), ("ranking", 2)]


def test_events_that_differ_only_by_what_was_shown_are_all_stored(server, tmp_path):
    # two carousels seen in one second, and a click on an item both showed: four events
    from sluice.warehouse.db import connect
    from sluice.warehouse.ingest import Ingestor

    events = boto_client(server["base"], "personalize-events")
    events.put_events(trackingId="demo-tracking-id", userId="c", sessionId="carousels",
                      eventList=[
        {"eventType": "view", "sentAt": GUIDE_SENT_AT, "impression": ["a", "b"],
         "recommendationId": "rec-A"},
        {"eventType": "view", "sentAt": GUIDE_SENT_AT, "impression": ["c", "d"],
         "recommendationId": "rec-B"},
        {"eventType": "view", "sentAt": GUIDE_SENT_AT, "impression": ["e"]},
        {"eventType": "click", "sentAt": GUIDE_SENT_AT, "itemId": "a",
         "recommendationId": "rec-A"},
        {"eventType": "click", "sentAt": GUIDE_SENT_AT, "itemId": "a",
         "recommendationId": "rec-B"}])
    Ingestor(tmp_path / "warehouse.duckdb", server["home"] / "raw", tmp_path / "landing").run()
    con = connect(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        stored = con.execute("select event_type, ranking_id, items from raw.events "
                             "where session_id = 'carousels' order by all").fetchall()
    finally:
        con.close()
    assert [(kind, ranking) for kind, ranking, _ in stored] == [
        ("interaction", "rec-A"), ("interaction", "rec-B"), ("ranking", "rec-A"),
        ("ranking", "rec-B"), ("ranking", None)]
