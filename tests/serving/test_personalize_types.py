"""Each Personalize operation reads its body as the restJson1 protocol does
(sluice/intake/restjson.py): a member of another JSON type than its shape in botocore's model
is a 400 SerializationException naming the member, with the values of Smithy's
malformed-request protocol tests (smithy-aws-protocol-tests/model/restJson1/malformedRequests:
malformed-integer, -float, -timestamp-body, -list, -map, -request-body); a value of the right
type outside the model's limits stays an InvalidInputException. Also what restJson1 reads
beside the types: a name given twice in one object is malformed, an eventValue beyond a
float32 too, members the model does not name are ignored wherever they are, and a body not
sent as application/json (415) or an Accept without JSON (406) is refused
(malformed-content-type, malformed-accept). Raw bodies to a real server (boto3 cannot send a
wrong type), and the real boto3 clients for what they send."""

from __future__ import annotations

import copy
import json
import time

import httpx
import pytest

from sluice.intake import restjson
from tests.utils.auth import READ, WRITE, boto_client
from tests.utils.waits import nothing_logged

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


# --- a name given twice in one object: malformed, naming where -------------------------------

def _twice(path: str, member: str, value: object, pair: str, again: str) -> str:
    """The operation's body with `member` (a path of keys, as `_with` takes it) set to
    `value`, and the name-value `pair` it then holds followed by `again`, the same name."""
    text = _with(path, member, json.dumps(value))
    assert text.count(pair) == 1, text
    return text.replace(pair, f"{pair}, {again}")


_TWICE = [  # (path, member, its value, the pair given twice, the second one, the path named)
    ("/personalize/events", "userId", "u-a", '"userId": "u-a"', '"userId": "u-b"', "userId"),
    ("/personalize/events", "eventList.0.itemId", "i-a", '"itemId": "i-a"', '"itemId": "i-b"',
     "eventList[0].itemId"),
    ("/personalize/events", "eventList.0.metricAttribution", {"eventAttributionSource": "a"},
     '"eventAttributionSource": "a"', '"eventAttributionSource": "b"',
     "eventList[0].metricAttribution.eventAttributionSource"),
    ("/personalize/events", "newMember", 1, '"newMember": 1', '"newMember": 2', "newMember"),
    ("/personalize/items", "items.0.itemId", "i-a", '"itemId": "i-a"', '"itemId": "i-b"',
     "items[0].itemId"),
    ("/personalize/users", "users.0", {"userId": "u-a", "properties": "{}"},
     '"properties": "{}"', '"properties": "{}"', "users[0].properties"),
    ("/personalize/recommendations", "filterValues", {"G": '"a"'}, '"G": "\\"a\\""',
     '"G": "\\"b\\""', "filterValues.G"),
    ("/personalize/personalize-ranking", "context", {"DEVICE": "tv"}, '"DEVICE": "tv"',
     '"DEVICE": "web"', "context.DEVICE"),
    ("/personalize/personalize-ranking", "campaignArn", CAMPAIGN, f'"campaignArn": "{CAMPAIGN}"',
     f'"campaignArn": "{CAMPAIGN}"', "campaignArn"),  # the same value twice: still twice
]


@pytest.mark.parametrize(("path", "member", "value", "pair", "again", "field"), _TWICE)
def test_a_name_given_twice_in_one_object_is_a_serialization_exception(
        server, path, member, value, pair, again, field):
    body = _twice(path, member, value, pair, again)
    assert json.loads(body)  # JSON all the same: a reader would keep the last value
    with nothing_logged(server["http"], server["home"]):
        status, code, message = _error(_post(server, path, body))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith(f"{field}: given twice in one object"), message


def test_the_same_names_once_each_are_read(server):
    # the bodies above without the second name: each is taken (a string with a repeated
    # name inside, as `properties` is, is no object of the body)
    for path, member, value, *_ in _TWICE:
        r = _post(server, path, _with(path, member, json.dumps(value)))
        # read; the call may still refuse a value (filterValues without a filterArn)
        assert r.headers.get("x-amzn-ErrorType") != "SerializationException", r.text
    path = "/personalize/events"
    r = _post(server, path, _with(path, "eventList.0.properties", json.dumps(
        '{"a": 1, "a": 2}')))
    assert r.status_code == 200, r.text


# --- eventValue is a float of 32 bits -------------------------------------------------------

@pytest.mark.parametrize("value", ["1e39", "-1e39", "3.4028236e38", "-3.4028236e38",
                                   "340282357000000000000000000000000000000", "1" + "0" * 400])
def test_an_event_value_beyond_a_float32_is_malformed(server, value):
    path = "/personalize/events"
    status, code, message = _error(_post(server, path, _with(
        path, "eventList.0.eventValue", value)))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith("eventList[0].eventValue: float member: "), message
    assert "outside the 32-bit range -3.4028235e38 to 3.4028235e38" in message


@pytest.mark.parametrize(("value", "stored"), [
    ("3.4028235e38", 3.4028235e38), ("-3.4028235e38", -3.4028235e38),
    ("340282350000000000000000000000000000000", 3.4028235e38),  # an integer, as JSON has it
    ("1e-50", 1e-50), ("0", 0.0)])
def test_an_event_value_within_a_float32_is_stored(server, value, stored):
    path = "/personalize/events"
    body = json.loads(_with(path, "eventList.0.eventValue", '"$V"'))
    body["eventList"][0]["eventId"] = event_id = f"f32-{value[:20]}"
    r = _post(server, path, json.dumps(body).replace('"$V"', value))
    assert r.status_code == 200, r.text
    logged = [json.loads(line) for line in _lines(server) if event_id.encode() in line]
    assert [e["value"] for e in logged] == [stored]


def test_boto3_sends_a_float_beyond_32_bits_and_it_is_malformed(server):
    # botocore checks a float's type, not its range: 1e39 goes out as written
    events = boto_client(server["base"], "personalize-events")
    with pytest.raises(events.exceptions.ClientError) as err:
        events.put_events(trackingId="demo-tracking-id", sessionId="f32", eventList=[
            {"eventType": "rate", "itemId": "i1", "sentAt": NOW, "eventValue": 1e39}])
    error = err.value.response["Error"]
    assert error["Code"] == "SerializationException"
    assert error["Message"].startswith("eventList[0].eventValue: float member: 1e+39 is outside")


# --- members the model does not name: ignored, at the top level and inside a structure -------

def test_members_the_model_does_not_name_are_ignored_wherever_they_are(server):
    path = "/personalize/events"
    body = {"trackingId": "demo-tracking-id", "sessionId": "unknown", "newTopLevel": {"a": 1},
            "eventList": [{"eventId": "unknown-1", "eventType": "click", "itemId": "i1",
                           "sentAt": NOW, "newEventMember": [1, "x"],
                           "metricAttribution": {"eventAttributionSource": "email",
                                                 "newAttributionMember": True}}]}
    r = _post(server, path, json.dumps(body))
    assert r.status_code == 200, r.text
    [stored] = [json.loads(line) for line in _lines(server) if b'"unknown-1"' in line]
    assert stored["fields"] == {"event_attribution_source": "email"}
    assert "new" not in json.dumps(stored).lower()
    for path, extra in (
            ("/personalize/items", {"items": [{"itemId": "i9", "newItemMember": 1}]}),
            ("/personalize/users", {"users": [{"userId": "u9", "newUserMember": 1}]}),
            ("/personalize/recommendations", {"newRequestMember": "x"}),
            ("/personalize/personalize-ranking", {"newRequestMember": ["x"]})):
        r = _post(server, path, json.dumps({**BODIES[path], **extra}))
        assert r.status_code == 200, (path, r.text)


def test_an_event_with_members_the_model_does_not_name_is_the_same_event(server):
    # a retry from a client built on a newer model (one more member) is stored once: the id
    # derived from the content does not see what the model does not name
    path = "/personalize/events"
    event = {"eventType": "click", "itemId": "same-i", "sentAt": NOW,
             "metricAttribution": {"eventAttributionSource": "email"}}
    newer = {**event, "newEventMember": 1,
             "metricAttribution": {"eventAttributionSource": "email", "newMember": 2}}
    for sent in (event, newer):
        body = {"trackingId": "demo-tracking-id", "sessionId": "same", "eventList": [sent]}
        assert _post(server, path, json.dumps(body)).status_code == 200
    ids = [json.loads(line)["id"] for line in _lines(server) if b'"same-i"' in line]
    assert len(ids) == 2 and len(set(ids)) == 1


# --- media types: a body sent as application/json, an answer JSON may be --------------------

def _send(server, path: str, body: bytes, headers: dict[str, str],
          key: bool = True) -> httpx.Response:
    """`body` to `path` with exactly `headers` and the key unless `key` is False (http.client
    adds no Accept and no Content-Type of its own, as httpx would)."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(server["base"])
    given = (READ if path.endswith(("recommendations", "ranking")) else WRITE) if key else {}
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={**given, **headers})
        answer = connection.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(),
                              content=answer.read())
    finally:
        connection.close()


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("content_type", [
    "application/hal+json",  # RestJsonWithBodyExpectsApplicationJsonContentType
    None,  # ...ContentTypeNoHeaders
    "text/plain", "application/x-www-form-urlencoded", "application/x-amz-json-1.1",
    "application/jsonx"])
def test_a_body_not_sent_as_json_is_an_unsupported_media_type(server, path, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    with nothing_logged(server["http"], server["home"]):
        status, code, message = _error(_send(server, path, json.dumps(BODIES[path]).encode(),
                                             headers))
    assert (status, code) == (415, "UnsupportedMediaTypeException"), message
    assert message.startswith("content-type: a body is sent as application/json")


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("accept", [
    "application/hal+json",  # RestJsonWithBodyExpectsApplicationJsonAccept
    "text/html", "application/xml, text/*", "application/json;q=0", "*/*;q=0",
    "application/json;q=0, */*"])  # the most specific range decides
def test_an_accept_that_allows_no_json_is_not_acceptable(server, path, accept):
    with nothing_logged(server["http"], server["home"]):
        status, code, message = _error(_send(server, path, json.dumps(BODIES[path]).encode(), {
            "Content-Type": "application/json", "Accept": accept}))
    assert (status, code) == (406, "NotAcceptableException"), message
    assert message.startswith("accept: Personalize operations answer in application/json")


@pytest.mark.parametrize(("content_type", "accept"), [
    ("application/json", None), ("application/json", "*/*"),
    ("application/json; charset=utf-8", None),  # RestJsonMustSupportParametersInContentType
    ("Application/JSON", "application/json"), ("application/json", "application/*"),
    ("application/json", "text/html, application/json;q=0.1"),
    ("application/json", "application/json; charset=utf-8"), ("application/json", "")])
def test_json_sent_and_json_acceptable_is_read(server, content_type, accept):
    headers = {"Content-Type": content_type} | ({} if accept is None else {"Accept": accept})
    for path, body in BODIES.items():
        r = _send(server, path, json.dumps(body).encode(), headers)
        assert r.status_code == 200, (path, headers, r.text)


def test_an_empty_body_needs_no_content_type(server):
    # nothing to read as JSON: the call goes on, and is refused for its missing members
    status, code, message = _error(_send(server, "/personalize/events", b"", {}))
    assert (status, code) == (400, "InvalidInputException"), message


def test_curl_with_a_json_content_type_is_served(server):
    # curl sends `Accept: */*` and the Content-Type it is told
    import shutil
    import subprocess

    assert shutil.which("curl"), "curl is on the test machine"
    path = "/personalize/recommendations"
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{server['base']}{path}", "-H",
         f"X-Api-Key: {READ['X-Api-Key']}", "-H", "Content-Type: application/json",
         "--data-binary", json.dumps(BODIES[path]), "-w", "\n%{http_code}"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    answer, status = out.rsplit("\n", 1)
    assert status == "200" and "itemList" in json.loads(answer)


def test_boto3_sends_json_and_no_accept(server):
    # what the two clients put on the wire, as the media type checks read it
    seen = []
    for service, call in (("personalize-events", lambda c: c.put_events(
            trackingId="demo-tracking-id", sessionId="wire", eventList=[
                {"eventType": "click", "itemId": "i1", "sentAt": NOW}])),
                          ("personalize-runtime", lambda c: c.get_recommendations(
                              campaignArn=CAMPAIGN, userId="u1"))):
        client = boto_client(server["base"], service)
        client.meta.events.register("before-send", lambda request, **_: seen.append(
            {name: value.decode() if isinstance(value, bytes) else value
             for name, value in request.headers.items()}))
        call(client)
    assert len(seen) == 2
    for headers in seen:
        assert headers["Content-Type"] == "application/json"
        assert "Accept" not in headers


def test_the_native_api_keeps_its_own_media_rules(server):
    # the checks are the Personalize routes': /v1 answers any Accept as it did
    r = _send(server, "/v1/events", json.dumps({
        "event": "interaction", "id": "native-accept", "timestamp": NOW * 1000, "user": "u1",
        "item": "i1", "type": "click"}).encode(), {"Content-Type": "application/json",
                                                     "Accept": "text/html"})
    assert r.status_code == 200, r.text
