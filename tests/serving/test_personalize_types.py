"""Each Personalize operation reads its body as the restJson1 protocol does
(sluice/intake/restjson.py): a member of another JSON type than its shape in botocore's model
is a 400 SerializationException naming the member, with the values of Smithy's
malformed-request protocol tests (smithy-aws-protocol-tests/model/restJson1/malformedRequests:
malformed-integer, -float, -timestamp-body, -list, -map, -request-body); a value of the right
type outside the model's limits stays an InvalidInputException. Raw bodies to a real server
(boto3 cannot send a wrong type), and the real boto3 clients for what they send."""

from __future__ import annotations

import copy
import json
import time

import httpx
import pytest

from sluice.intake import restjson
from tests.utils.auth import READ, WRITE, boto_client

REAL_SERVER = True  # raw HTTP and the real boto3 clients against a real uvicorn

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"
DATASET = "arn:aws:personalize:us-east-1:000000000000:dataset/default/{}"
GENRE = "arn:aws:personalize:us-east-1:000000000000:filter/genre"
NOW = int(time.time())
# each operation's body, in which a test writes one member as the JSON text it gives
BODIES = {
    "/personalize/events": {"trackingId": "demo-tracking-id", "sessionId": "types", "eventList": [
        {"eventType": "click", "itemId": "i1", "sentAt": NOW, "eventValue": 1.5}]},
    "/personalize/items": {"datasetArn": DATASET.format("ITEMS"), "items": [{"itemId": "i1"}]},
    "/personalize/users": {"datasetArn": DATASET.format("USERS"), "users": [{"userId": "u1"}]},
    "/personalize/recommendations": {"campaignArn": CAMPAIGN, "userId": "u1"},
    "/personalize/personalize-ranking": {"campaignArn": CAMPAIGN, "userId": "u1",
                                         "inputList": ["i1"]},
}


def _post(server, path: str, content: str) -> httpx.Response:
    headers = READ if path.endswith(("recommendations", "ranking")) else WRITE
    return server["http"].post(path, content=content.encode(),
                               headers={**headers, "content-type": "application/json"})


def _with(path: str, member: str, value: str) -> str:
    """The operation's body with `member` (a path of keys; a number indexes a list) set to
    `value`, written as the JSON text given."""
    body = copy.deepcopy(BODIES[path])
    keys = [int(k) if k.isdigit() else k for k in member.split(".")]
    target = body
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = "$V"
    return json.dumps(body).replace('"$V"', value)


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["__type"] == response.headers["x-amzn-ErrorType"], response.text
    return response.status_code, body["__type"], body["message"]


# --- the shapes are botocore's ---------------------------------------------------------------

def _from_botocore(shape) -> restjson.Shape:
    kind = shape.type_name
    if kind == "structure":
        return restjson.Shape(kind, members={name: _from_botocore(member)
                                             for name, member in shape.members.items()})
    if kind == "list":
        return restjson.Shape(kind, item=_from_botocore(shape.member))
    if kind == "map":
        assert shape.key.type_name == "string"
        return restjson.Shape(kind, item=_from_botocore(shape.value))
    if kind == "timestamp":  # no format: restJson1's epoch seconds
        assert "timestampFormat" not in shape.serialization
    return restjson.Shape(kind)


@pytest.mark.parametrize(("service", "operation"), list(restjson.OPERATIONS))
def test_each_operations_shapes_are_botocores(service, operation):
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    assert model.protocol == "rest-json" and "timestampFormat" not in model.metadata
    shape = model.operation_model(operation).input_shape
    assert restjson.OPERATIONS[(service, operation)] == _from_botocore(shape)


# --- malformed: a SerializationException naming the member -----------------------------------

_INTEGER = ['"123"', "true", "1.001", '"Infinity"', '"-Infinity"', '"NaN"',  # malformed-integer
            "-9223372000000000000", "9223372000000000000", "123000000000000000000000",
            "2147483648", "-2147483649", "1.0", "1e2", "[5]"]
_FLOAT = ['"123"', "true", '"4"', '"nan"', '["4"]', "{}"]  # malformed-float; "nan": not the word
_TIMESTAMP = ['"1985-04-12T23:20:50.52Z"', '"1985-04-12T23:20:50Z"',  # malformed-timestamp-body
              '"1996-12-19T16:39:57-08:00"', '"1515531081.1234"', '"1515531081"', "true",
              '"Infinity"', '"-Infinity"', '"NaN"', '"Tue, 29 Apr 2014 18:30:38 GMT"']
_MALFORMED = [
    *(("/personalize/recommendations", "numResults", v, "numResults") for v in _INTEGER),
    *(("/personalize/events", "eventList.0.eventValue", v, "eventList[0].eventValue")
      for v in _FLOAT),
    *(("/personalize/events", "eventList.0.sentAt", v, "eventList[0].sentAt")
      for v in _TIMESTAMP),
    # strings: an id, an ARN, properties given as a number, a boolean, a list or an object
    ("/personalize/events", "trackingId", "12345", "trackingId"),
    ("/personalize/events", "trackingId", "true", "trackingId"),
    ("/personalize/events", "sessionId", '["s"]', "sessionId"),
    ("/personalize/events", "userId", "7", "userId"),
    ("/personalize/events", "eventList.0.eventType", "1", "eventList[0].eventType"),
    ("/personalize/events", "eventList.0.itemId", "42", "eventList[0].itemId"),
    ("/personalize/events", "eventList.0.eventId", "{}", "eventList[0].eventId"),
    ("/personalize/events", "eventList.0.properties", '{"a": 1}', "eventList[0].properties"),
    ("/personalize/events", "eventList.0.recommendationId", "9", "eventList[0].recommendationId"),
    ("/personalize/events", "eventList.0.metricAttribution",
     '{"eventAttributionSource": 5}', "eventList[0].metricAttribution.eventAttributionSource"),
    ("/personalize/items", "datasetArn", "1", "datasetArn"),
    ("/personalize/items", "items.0.itemId", "5", "items[0].itemId"),
    ("/personalize/users", "users.0.properties", "{}", "users[0].properties"),
    ("/personalize/recommendations", "campaignArn", "false", "campaignArn"),
    ("/personalize/recommendations", "userId", "7", "userId"),
    ("/personalize/recommendations", "itemId", "false", "itemId"),
    ("/personalize/recommendations", "filterArn", "[]", "filterArn"),
    ("/personalize/personalize-ranking", "inputList", '["i1", 5]', "inputList[1]"),
    # lists: not an array, or a null item (malformed-list: RestJsonBodyMalformedListNullItem)
    ("/personalize/events", "eventList", '{"eventType": "click"}', "eventList"),
    ("/personalize/events", "eventList.0.impression", '"i1|i2"', "eventList[0].impression"),
    ("/personalize/events", "eventList.0.impression", '["i1", null]',
     "eventList[0].impression[1]"),
    ("/personalize/items", "items", '[null]', "items[0]"),
    ("/personalize/users", "users", '"u1"', "users"),
    ("/personalize/personalize-ranking", "inputList", '"i1"', "inputList"),
    ("/personalize/recommendations", "metadataColumns", '{"ITEMS": "CATEGORY"}',
     "metadataColumns.ITEMS"),
    ("/personalize/recommendations", "promotions", '{"name": "p"}', "promotions"),
    # maps: not an object, or a value of another type or null (malformed-map:
    # RestJsonBodyMalformedMapNullValue)
    ("/personalize/recommendations", "filterValues", '["A"]', "filterValues"),
    ("/personalize/recommendations", "filterValues", '{"A": 1}', "filterValues.A"),
    ("/personalize/recommendations", "filterValues", '{"A": null}', "filterValues.A"),
    ("/personalize/personalize-ranking", "context", '"web"', "context"),
    ("/personalize/personalize-ranking", "context", '{"device": true}', "context.device"),
    ("/personalize/personalize-ranking", "metadataColumns", '["ITEMS"]', "metadataColumns"),
    ("/personalize/personalize-ranking", "metadataColumns", '{"ITEMS": ["A", null]}',
     "metadataColumns.ITEMS[1]"),
    # structures
    ("/personalize/events", "eventList.0", '"click"', "eventList[0]"),
    ("/personalize/events", "eventList.0.metricAttribution", '"source"',
     "eventList[0].metricAttribution"),
    ("/personalize/items", "items.0", '["i1"]', "items[0]"),
    ("/personalize/recommendations", "promotions", '[{"name": "p", "percentPromotedItems": "5"}]',
     "promotions[0].percentPromotedItems"),
    ("/personalize/recommendations", "promotions", '[{"name": "p", "filterValues": {"A": 1}}]',
     "promotions[0].filterValues.A"),
]


@pytest.mark.parametrize(("path", "member", "value", "field"), _MALFORMED)
def test_a_member_of_another_json_type_is_a_serialization_exception(server, path, member,
                                                                     value, field):
    status, code, message = _error(_post(server, path, _with(path, member, value)))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith(f"{field}: "), message


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("body", [
    "[{}]", "10", "null", '"{}"',  # RestJsonTechnicallyValidJsonBody
    "{[", '{ "int": 10 }abc', 'abc{ "int": 10 }', '{"int": 10 // ten\n}',  # RestJsonInvalidJsonBody
    "{\"int\" :\u000c10}", "{'int': 10}", '{"int": 10,}',
])
def test_a_body_that_is_no_json_object_is_a_serialization_exception(server, path, body):
    status, code, message = _error(_post(server, path, body))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith("body: ")


@pytest.mark.parametrize(("member", "value"), [
    ("numResults", "Infinity"), ("numResults", "NaN"), ("numResults", "2ABC"),
    ("numResults", "0x42"), ("numResults", "-Infinity"),
])
def test_a_number_json_cannot_hold_leaves_no_json_body(server, member, value):
    # bare Infinity, NaN, 0x42, 2ABC: malformed-integer's and -float's values that are no JSON
    path = "/personalize/recommendations"
    status, code, message = _error(_post(server, path, _with(path, member, value)))
    assert (status, code) == (400, "SerializationException") and message.startswith("body: ")


def test_a_malformed_event_is_not_stored(server):
    events = _lines(server)
    r = _post(server, "/personalize/events", _with("/personalize/events", "eventList.0.sentAt",
                                                   '"2026-01-01T00:00:00Z"'))
    assert r.headers["x-amzn-ErrorType"] == "SerializationException"
    assert _lines(server) == events


def _lines(server) -> list[bytes]:
    from tests.utils.waits import log_lines
    return list(log_lines(server["home"]))


# --- the right type outside the model's limits: still InvalidInputException ------------------

@pytest.mark.parametrize(("path", "member", "value", "field"), [
    ("/personalize/recommendations", "numResults", "-1", "numResults"),  # min 0
    ("/personalize/recommendations", "numResults", "2147483647", "numResults"),  # an int32
    ("/personalize/events", "trackingId", json.dumps("t" * 257), "trackingId"),
    ("/personalize/events", "eventList.0.eventType", '""', "eventList[0].eventType"),
    ("/personalize/events", "eventList.0.impression", "[]", "eventList[0].impression"),
    ("/personalize/events", "eventList.0.sentAt", "-1", "eventList[0].sentAt"),
    ("/personalize/events", "eventList.0.sentAt", "1e300", "eventList[0].sentAt"),
    ("/personalize/events", "eventList.0.eventValue", '"NaN"', "eventList[0].eventValue"),
    ("/personalize/events", "eventList.0.eventValue", '"Infinity"', "eventList[0].eventValue"),
    ("/personalize/events", "eventList.0.eventValue", '"-Infinity"', "eventList[0].eventValue"),
    ("/personalize/events", "eventList.0.eventValue", "1" + "0" * 400,  # past a double: inf
     "eventList[0].eventValue"),
    ("/personalize/events", "eventList.0.properties", '"[1]"', "eventList[0].properties"),
    ("/personalize/events", "eventList.0.metricAttribution", '{"eventAttributionSource": " "}',
     "eventList[0].metricAttribution.eventAttributionSource"),
    ("/personalize/events", "eventList", "[]", "eventList"),
    ("/personalize/items", "datasetArn", '"arn:aws:s3:::bucket"', "datasetArn"),
    ("/personalize/users", "users.0.userId", '""', "users[0].userId"),
    ("/personalize/personalize-ranking", "inputList", "[]", "inputList"),
    ("/personalize/personalize-ranking", "userId", json.dumps("u" * 257), "userId"),
    ("/personalize/recommendations", "filterValues", json.dumps({"A": "x" * 1001}),
     "filterValues"),
    ("/personalize/recommendations", "context", json.dumps({"device": "x" * 1001}),
     "context.device"),
    ("/personalize/recommendations", "metadataColumns", '{"USERS": ["AGE"]}', "metadataColumns"),
    ("/personalize/recommendations", "promotions",
     '[{"name": "p", "percentPromotedItems": 500}]', "promotions"),
])
def test_a_value_of_the_right_type_outside_the_limits_is_invalid_input(server, path, member,
                                                                         value, field):
    status, code, message = _error(_post(server, path, _with(path, member, value)))
    assert (status, code) == (400, "InvalidInputException"), message
    assert message.startswith(f"{field}"), message


@pytest.mark.parametrize(("path", "member"), [
    ("/personalize/events", "userId"), ("/personalize/events", "eventList.0.eventValue"),
    ("/personalize/events", "eventList.0.impression"),
    ("/personalize/recommendations", "numResults"),
    ("/personalize/recommendations", "filterValues"),
    ("/personalize/personalize-ranking", "context"),
])
def test_a_member_given_as_null_is_absent(server, path, member):
    r = _post(server, path, _with(path, member, "null"))
    assert r.status_code == 200, r.text


# --- what the boto3 clients send is read ---------------------------------------------------

def test_what_boto3_sends_for_every_typed_member_is_accepted(server):
    events = boto_client(server["base"], "personalize-events")
    runtime = boto_client(server["base"], "personalize-runtime")
    events.put_events(trackingId="demo-tracking-id", userId="u-typed", sessionId="typed",
                      eventList=[{"eventId": "typed-1", "eventType": "rate", "eventValue": 4,
                                  "itemId": "i1", "sentAt": time.time(),
                                  "properties": json.dumps({"device": "tv"}),
                                  "recommendationId": "r-typed", "impression": ["i1", "i2"],
                                  "metricAttribution": {"eventAttributionSource": "email"}}])
    events.put_items(datasetArn=DATASET.format("ITEMS"), items=[
        {"itemId": "typed-item", "properties": json.dumps({"price": 2})}])
    events.put_users(datasetArn=DATASET.format("USERS"), users=[
        {"userId": "u-typed", "properties": json.dumps({"age": 30})}])
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u-typed", numResults=3,
                                         context={"DEVICE": "tv"})
    assert len(answer["itemList"]) <= 3 and answer["recommendationId"]
    ranked = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId="u-typed",
                                              inputList=["i1", "i2"], context={"DEVICE": "tv"})
    assert {item["itemId"] for item in ranked["personalizedRanking"]} <= {"i1", "i2"}
    typed = [json.loads(line) for line in _lines(server) if b'"typed-1"' in line]
    assert [e["value"] for e in typed if e["event"] == "interaction"] == [4.0]
