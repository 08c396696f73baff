"""The body limit of each Personalize operation is the largest body botocore sends within its
service model's limits (serving/api/personalize_bodies.py): built here from botocore's model
itself, every member at its maximum and every character at its widest once escaped (one
outside the BMP: 12 bytes), serialized by botocore's own serializer and sent by the real boto3
client to a real server; a body one byte larger is refused naming the limit."""

from __future__ import annotations

import datetime
import json

import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from serving.api.routes import personalize as routes
from tests.utils.auth import WRITE, boto_client, logged_context
from tests.utils.waits import log_lines

REAL_SERVER = True  # the real boto3 clients call it over HTTP

EMOJI = "\U0001f600"  # 4 bytes of UTF-8, 12 once json.dumps escapes it
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"
DATASET = "arn:aws:personalize:us-east-1:000000000000:dataset/default/{}"
OPERATIONS = {  # (service, operation, path, the route's limit)
    "PutEvents": ("personalize-events", "/personalize/events", routes.MAX_EVENTS_BODY_BYTES),
    "PutItems": ("personalize-events", "/personalize/items", routes.MAX_ITEMS_BODY_BYTES),
    "PutUsers": ("personalize-events", "/personalize/users", routes.MAX_USERS_BODY_BYTES),
    "GetRecommendations": ("personalize-runtime", "/personalize/recommendations",
                           routes.MAX_RECOMMENDATIONS_BODY_BYTES),
    "GetPersonalizedRanking": ("personalize-runtime", "/personalize/personalize-ranking",
                               routes.MAX_RANKING_BODY_BYTES),
}
# the widest value botocore writes for a number: an integer without a maximum (4300 digits,
# Python's limit), a float's largest int (botocore checks it with math.isnan), and the
# timestamp of year 1 with microseconds
WIDEST_INTEGER = 10 ** 4300 - 1
WIDEST_FLOAT = -(2 ** 1024 - 2 ** 970 - 1)
FLOAT32_MAX = 3.4028234663852886e38  # the largest value a float member holds
WIDEST_TIME = datetime.datetime(1, 1, 1, 0, 0, 0, 999988, tzinfo=datetime.UTC)


def _string(shape, index: int = 0) -> str:
    """The widest string of the shape: characters outside the BMP throughout (botocore checks
    lengths, not patterns), the first one different for each `index` (distinct map keys)."""
    return chr(ord(EMOJI) + index) + EMOJI * (shape.metadata.get("max", 256) - 1)


def widest(shape, index: int = 0):
    """The largest value of a botocore shape, as botocore's validation accepts it."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure":
        return {name: widest(member) for name, member in shape.members.items()}
    if kind == "list":  # unbounded in the model: Personalize's inputList limit
        return [widest(shape.member, n) for n in range(meta.get("max", routes.MAX_RANKING_INPUT))]
    if kind == "map":
        return {_string(shape.key, n): widest(shape.value, n) for n in range(meta["max"])}
    if kind == "string":
        return _string(shape, index)
    if kind == "integer":
        return meta["max"] if "max" in meta else WIDEST_INTEGER
    if kind == "float":
        return WIDEST_FLOAT
    assert kind == "timestamp", kind
    return WIDEST_TIME


def _body(service: str, operation: str, params: dict) -> bytes:
    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model(service)
    request = create_serializer("rest-json", include_validation=True).serialize_to_request(
        params, model.operation_model(operation))
    return request["body"]


def _largest(service: str, operation: str) -> dict:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return widest(model.operation_model(operation).input_shape)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_limit_is_the_largest_body_botocore_sends(operation):
    service, _, limit = OPERATIONS[operation]
    body = _body(service, operation, _largest(service, operation))
    assert len(body) == limit
    assert len(body) > 1024 * 1024 or operation == "PutEvents"  # above the former limit


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_largest_body_reaches_the_operation_and_one_byte_more_is_refused(server,
                                                                             operation):
    service, path, limit = OPERATIONS[operation]
    client = boto_client(server["base"], service)
    call = getattr(client, xform_name(operation))
    largest = _largest(service, operation)
    with pytest.raises(ClientError) as err:  # read and refused by field, not by size
        call(**largest)
    error = err.value.response["Error"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404)
    assert "larger than" not in error["Message"]
    if "numResults" in largest:  # the model sets no maximum, the protocol's integer 32 bits
        assert (error["Code"], error["Message"][:28]) == (
            "SerializationException", "numResults: integer member: "), error
        with pytest.raises(ClientError) as err:
            call(**{**largest, "numResults": 2 ** 31 - 1})
        error = err.value.response["Error"]
    if "eventList" in largest:  # eventValue: a float of 32 bits, which the widest is not
        assert (error["Code"], error["Message"][:39]) == (
            "SerializationException", "eventList[0].eventValue: float member: "), error
        events = [{**event, "eventValue": FLOAT32_MAX} for event in largest["eventList"]]
        with pytest.raises(ClientError) as err:
            call(**{**largest, "eventList": events})
        error = err.value.response["Error"]
    assert error["Code"] != "SerializationException", error  # each member of its type
    over = server["http"].post(path, headers={**WRITE, "Content-Type": "application/json"},
                               content=b" " * (limit + 1))
    assert over.status_code == 413
    assert over.json() == {"__type": "InvalidInputException",
                           "message": f"body: larger than {limit} bytes"}


def test_a_ranking_of_500_ids_of_256_emoji_is_served(server):
    runtime = boto_client(server["base"], "personalize-runtime")
    items = [f"{n:03d}" + EMOJI * 253 for n in range(routes.MAX_RANKING_INPUT)]
    ranked = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId="u1",
                                              inputList=items)["personalizedRanking"]
    assert [item["itemId"] for item in ranked] == items  # none known: kept in their order


def test_a_context_as_large_as_the_model_allows_in_emoji_is_served_and_logged(server):
    runtime = boto_client(server["base"], "personalize-runtime")
    context = {f"{n:03d}" + EMOJI * 147: EMOJI * 1000 for n in range(150)}
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u1", numResults=2,
                                         context=context)
    assert logged_context(server["home"], answer) == context


def test_put_events_at_the_models_maxima_in_emoji_is_stored(server):
    events = boto_client(server["base"], "personalize-events")
    wide = EMOJI * 256
    properties = json.dumps({"note": EMOJI * (1024 - len('{"note": ""}'))}, ensure_ascii=False)
    assert len(properties) == 1024
    sent = [{"eventId": f"{n}" + EMOJI * 255, "eventType": wide, "itemId": f"{n}" + wide[1:],
             "eventValue": 1.5, "sentAt": 1_700_000_000 + n, "properties": properties,
             "recommendationId": EMOJI * 40, "impression": [wide] * 25,
             "metricAttribution": {"eventAttributionSource": '"' * 1024}} for n in range(10)]
    events.put_events(trackingId="demo-tracking-id", userId=wide, sessionId=wide,
                      eventList=sent)
    stored = {e["id"] for e in map(json.loads, log_lines(server["home"]))
              if e.get("session") == wide and e["event"] == "interaction"}
    assert stored == {event["eventId"] for event in sent}


def test_put_items_at_the_models_maxima_in_emoji_is_stored(server):
    events = boto_client(server["base"], "personalize-events")
    # property strings hold up to 20,000 characters: two of them fill 32,000
    rest = 32_000 - 19_000 - len('{"a": "", "b": ""}')
    properties = json.dumps({"a": EMOJI * 19_000, "b": EMOJI * rest}, ensure_ascii=False)
    assert len(properties) == 32_000
    items = [{"itemId": f"{n}" + EMOJI * 255, "properties": properties} for n in range(10)]
    events.put_items(datasetArn=DATASET.format("ITEMS"), items=items)
    stored = {e["item"] for e in map(json.loads, log_lines(server["home"]))
              if e["event"] == "item"}
    assert stored >= {item["itemId"] for item in items}
