"""Edges of the restJson1 reading (sluice/intake/restjson.py) on a real uvicorn: a number
beyond a double is malformed naming the member that holds it; JSON nested too deep is
malformed like any other body the protocol cannot read (SerializationException, as smithy-rs's
JSON reader refuses a document nested too deep); and a call without a credential is a 403
before its media types or its body are looked at (authentication first, as AWS's front end
and a smithy-rs server's HTTP plugins run before the operation's input is deserialized).
Raw HTTP for what boto3 cannot send, the real boto3 clients for the rest."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.serving.test_personalize_types import BODIES, _error, _post, _send, _with
from tests.utils.auth import boto_client
from tests.utils.waits import nothing_logged

REAL_SERVER = True

EVENTS = "/personalize/events"


# --- a number beyond a double (1e400) --------------------------------------------------------

@pytest.mark.parametrize(("path", "member", "value", "message"), [
    (EVENTS, "eventList.0.eventValue", "1e400",
     "eventList[0].eventValue: float member: 1e400 is outside the 32-bit range "
     "-3.4028235e38 to 3.4028235e38"),
    (EVENTS, "eventList.0.eventValue", "-1e400", "eventList[0].eventValue: float member: -1e400"),
    (EVENTS, "eventList.0.eventValue", "2.5E+999", "eventList[0].eventValue: float member: "),
    (EVENTS, "eventList.0.sentAt", "1e400",
     "eventList[0].sentAt: timestamp member: 1e400 is beyond the range of a double"),
    (EVENTS, "userId", "1e400", "userId: string member: expected a JSON string, got number 1e400"),
    ("/personalize/items", "items.0.itemId", "-1e400", "items[0].itemId: string member: "),
    ("/personalize/recommendations", "numResults", "1e400",
     "numResults: integer member: expected a JSON number without fraction or exponent, got "
     "number 1e400"),
    ("/personalize/personalize-ranking", "context", '{"DEVICE": 1e400}', "context.DEVICE: "),
])
def test_a_number_beyond_a_double_is_malformed_naming_its_member(server, path, member, value,
                                                                 message):
    with nothing_logged(server["http"], server["home"]):
        status, code, text = _error(_post(server, path, _with(path, member, value)))
    assert (status, code) == (400, "SerializationException"), text
    assert text.startswith(message), text


def test_a_number_beyond_a_double_beside_a_wide_integer_is_named_too(server):
    # a body with an integer wider than 64 bits is parsed by json.loads, not orjson: the same
    body = json.loads(_with(EVENTS, "eventList.0.eventValue", '"$V"'))
    body["eventList"][0]["newMember"] = "$W"
    text = json.dumps(body).replace('"$V"', "1e400").replace('"$W"', "1" * 30)
    status, code, message = _error(_post(server, EVENTS, text))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith("eventList[0].eventValue: float member: 1e400 is outside"), message


def test_a_number_beyond_a_double_where_the_model_names_no_member_is_still_no_json(server):
    # not ignored as the member is: the parser refuses the body, and nothing is stored
    with nothing_logged(server["http"], server["home"]):
        status, code, message = _error(_post(server, EVENTS, _with(EVENTS, "newMember",
                                                                   "1e400")))
    assert (status, code) == (400, "SerializationException"), message
    assert message.startswith("body: not JSON: number is infinity"), message


def test_a_tiny_number_is_no_overflow(server):
    # 1e-400 rounds to 0 in a double: a number JSON holds, read as 0
    r = _post(server, EVENTS, _with(EVENTS, "eventList.0.eventValue", "1e-400"))
    assert r.status_code == 200, r.text


# --- JSON nested too deep ---------------------------------------------------------------------

def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(("path", "member"), [
    (EVENTS, "eventList.0.impression"), ("/personalize/items", "items"),
    ("/personalize/users", "newMember"), ("/personalize/recommendations", "filterValues"),
    ("/personalize/personalize-ranking", "inputList")])
@pytest.mark.parametrize("levels", [40, 200_000])
def test_json_nested_too_deep_is_a_serialization_exception(server, path, member, levels):
    with nothing_logged(server["http"], server["home"]):
        status, code, message = _error(_post(server, path, _with(path, member, _deep(levels))))
    assert (status, code) == (400, "SerializationException"), message
    assert message == "body: JSON nested deeper than 32 levels"


def test_json_nested_too_deep_with_a_wide_integer_is_refused_before_parsing(server):
    # json.loads (which reads a body with an integer wider than 64 bits) would recurse until
    # RecursionError: the depth is measured first
    text = _with(EVENTS, "newMember", "[" + "1" * 30 + ", " + _deep(100_000) + "]")
    status, code, message = _error(_post(server, EVENTS, text))
    assert (status, code, message) == (400, "SerializationException",
                                       "body: JSON nested deeper than 32 levels")


def test_json_nested_to_the_limit_is_read(server):
    # 32 levels in all: the body, eventList, its event, then 29 in an unnamed member
    text = _with(EVENTS, "eventList.0.newMember", _deep(29))
    assert _post(server, EVENTS, text).status_code == 200
    status, code, _ = _error(_post(server, EVENTS, _with(EVENTS, "eventList.0.newMember",
                                                         _deep(30))))
    assert (status, code) == (400, "SerializationException")


# --- authentication before the media types and the body ---------------------------------------

_KEYED = [path for path in BODIES if path != EVENTS]  # PutEvents: see below


@pytest.mark.parametrize("path", _KEYED)
@pytest.mark.parametrize(("headers", "body"), [
    ({"Content-Type": "text/plain"}, None),  # would be a 415
    ({"Content-Type": "application/json", "Accept": "text/html"}, None),  # a 406
    ({"Content-Type": "application/json"}, b"{["),  # a malformed body
    ({"Content-Type": "application/json"}, b'{"a": ' + _deep(40).encode() + b"}"),  # too deep
])
def test_a_call_without_a_credential_is_refused_before_its_media_types_or_body(
        server, path, headers, body):
    sent = json.dumps(BODIES[path]).encode() if body is None else body
    status, code, message = _error(_send(server, path, sent, headers, key=False))
    assert (status, code) == (403, "MissingAuthenticationTokenException"), message
    with_key = _send(server, path, sent, headers)  # the same call with the key: what follows
    assert with_key.status_code in (400, 406, 415), with_key.text


def test_put_events_without_a_signature_where_signatures_are_configured_is_refused_first(server):
    # the test server has an AWS key pair: PutEvents then needs a credential too, checked
    # before the body (with none configured, the trackingId in the body is the credential)
    status, code, _ = _error(_send(server, EVENTS, json.dumps(BODIES[EVENTS]).encode(),
                                   {"Content-Type": "text/plain"}, key=False))
    assert (status, code) == (403, "MissingAuthenticationTokenException")


@pytest.mark.parametrize(("service", "operation", "call"), [
    ("personalize-events", "PutItems", lambda c: c.put_items(
        datasetArn=BODIES["/personalize/items"]["datasetArn"], items=[{"itemId": "order-1"}])),
    ("personalize-events", "PutUsers", lambda c: c.put_users(
        datasetArn=BODIES["/personalize/users"]["datasetArn"], users=[{"userId": "order-1"}])),
    ("personalize-events", "PutEvents", lambda c: c.put_events(
        trackingId="demo-tracking-id", sessionId="order", eventList=[
            {"eventId": "order-1", "eventType": "click", "itemId": "i1", "sentAt": 1e9}])),
    ("personalize-runtime", "GetRecommendations", lambda c: c.get_recommendations(
        campaignArn=BODIES["/personalize/recommendations"]["campaignArn"], userId="u1")),
])
def test_boto3_with_a_wrong_secret_and_a_wrong_content_type_gets_the_signature_error(
        server, service, operation, call):
    def wrong_media(request, **_):  # before signing: the signature covers it
        request.headers.replace_header("Content-Type", "text/plain")

    answers = {}
    for secret in ("wrong", "test"):
        client = boto_client(server["base"], service, secret=secret)
        client.meta.events.register(f"before-sign.{service}.{operation}", wrong_media)
        with pytest.raises(ClientError) as err:
            call(client)
        answers[secret] = (err.value.response["ResponseMetadata"]["HTTPStatusCode"],
                           err.value.response["Error"]["Code"])
    assert answers == {"wrong": (403, "InvalidSignatureException"),
                       "test": (415, "UnsupportedMediaTypeException")}
