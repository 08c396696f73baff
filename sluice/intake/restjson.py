"""A Personalize request body read as the restJson1 protocol reads it, before the operation
reads its values: every member of the operation's input (botocore's `personalize-events` and
`personalize-runtime` models, written out below; tests/serving/test_personalize_types.py
builds the same shapes from botocore's model and compares) must have its shape's JSON type,
or the call is a `MalformedError` naming the member, which the API answers as a 400
`SerializationException` (Smithy's malformed-request protocol tests,
smithy-aws-protocol-tests/model/restJson1/malformedRequests). A value of the right type outside
the model's limits (a length, a range, a pattern) is the operation's own validation, an
`InvalidInputException` raised by the code that reads it.

What each shape takes, as those protocol tests have it:
- string: a JSON string (a number, a boolean, a list or an object is malformed).
- integer (32 bits): a JSON number without fraction or exponent, within -2**31 .. 2**31-1;
  `"123"`, `true`, `1.001` and `"NaN"` are malformed (RestJsonBodyIntegerMalformedValueRejected),
  and so is a wider number (RestJsonBodyIntegerUnderflowOverflow). The tests name `1.001`;
  `1.0` and `1e2` are refused too, as the protocol's reference server (smithy-rs) refuses every
  number written as a float for an integer member.
- float (32 bits): a JSON number, or the strings "NaN", "Infinity" and "-Infinity", which the
  protocol writes for the values JSON has no number for (read as those floats; the operation
  refuses them as not finite); any other string and a boolean are malformed
  (RestJsonBodyFloatMalformedValueRejected), and so is a number too large for 32 bits (one
  that rounds to a float32 infinity: beyond ±3.4028235e38), as a wider integer is for an
  integer member (the protocol tests name no float overflow; a reader that narrows a double
  to 32 bits would make it an infinity). A number too small for 32 bits is kept (it rounds
  towards zero, not to another value's sign or size). A number beyond even a double's range
  (`1e400`) is malformed too, named by the member that holds it, whatever its shape: the JSON
  parser refuses the whole body for it, and the body is read once more only to name where.
- timestamp: epoch seconds as a JSON number, restJson1's format for a body member without a
  `timestampFormat` (the Personalize models give none); a date-time string, epoch seconds as
  a string, `"NaN"` and `true` are malformed (RestJsonBodyTimestampDefaultRejects*).
- list: a JSON array whose items are not null (the lists are dense:
  RestJsonBodyMalformedListNullItem); map: a JSON object whose values are not null
  (RestJsonBodyMalformedMapNullValue); structure: a JSON object.
- a member given as null is absent, as restJson1 reads a null structure member; a member the
  model does not name is left out, at the top level and inside a structure alike (a restJson1
  server ignores it, so that a client built from a newer model still reaches an older server:
  Smithy's RpcV2CborExtraFieldsInTheBodyShouldBeSkippedByServers says so for rpcv2Cbor; the
  restJson1 tests have no such case, and smithy-rs's JSON parsers skip an unknown key).
- an object that gives one name twice is malformed, wherever it is (the parsers keep the last
  value without a word; `/v1/events` refuses it the same way, `sluice.intake.limits`).
- JSON nested deeper than `MAX_JSON_DEPTH` (32) levels is malformed, refused before it is
  parsed: a deserialization error like any other (smithy-rs's JSON reader refuses a document
  nested too deep as it refuses one that is no JSON, a SerializationException), read after the
  caller is authenticated and the media types are checked, as the rest of the body is.

Before the body is read, its media types (`check_media_types`): a body is sent as
`application/json`, parameters such as `charset` allowed
(RestJsonMustSupportParametersInContentType), else it is a 415 UnsupportedMediaTypeException
(RestJsonWithBodyExpectsApplicationJsonContentType, and ...ContentTypeNoHeaders for a body
without a Content-Type; an empty body needs none, as smithy-rs checks the Content-Type only
of a body that is not empty); an `Accept` that allows no JSON answer is a 406
NotAcceptableException (RestJsonWithBodyExpectsApplicationJsonAccept). No `Accept`, `*/*`,
`application/*` and `application/json` (with parameters) are fine, as RFC 9110 12.5.1 reads
them; an empty `Accept` is taken as none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.intake.limits import (
    MAX_JSON_DEPTH,
    gives_a_key_twice,
    no_constant,
    repeated_key,
    too_deep,
)
from sluice.intake.personalize import MalformedError, PersonalizeError

INT32 = (-(2 ** 31), 2 ** 31 - 1)
# the least magnitude that rounds to a float32 infinity (halfway between the largest float32,
# 3.4028234663852886e38, and 2**128; a tie rounds to the even 2**128): an exact double
FLOAT32_OVERFLOW = 2.0 ** 128 - 2.0 ** 103
FLOAT32_MAX_TEXT = "3.4028235e38"  # the largest float32, as the shortest text that reads back
JSON_MEDIA = "application/json"
# a float member as the protocol writes the values JSON has no number for
FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class UnsupportedMediaError(PersonalizeError):
    """A body not sent as `application/json` (another Content-Type, or none with a body): a
    restJson1 server refuses it unread, as a 415 UnsupportedMediaTypeException (Smithy's
    RestJsonWithBodyExpectsApplicationJsonContentType)."""


class NotAcceptableError(PersonalizeError):
    """An Accept header that no JSON answer satisfies: a restJson1 server refuses the call, as
    a 406 NotAcceptableException (Smithy's RestJsonWithBodyExpectsApplicationJsonAccept)."""


@dataclass(frozen=True)
class Shape:
    """A shape of the model: its kind (structure, list, map, string, integer, float,
    timestamp), a structure's members by name, a list's item or a map's value (keys are
    strings, as JSON has them)."""

    kind: str
    members: Mapping[str, Shape] = field(default_factory=dict)
    item: Shape | None = None


STRING, INTEGER, FLOAT, TIMESTAMP = (Shape(kind) for kind in (
    "string", "integer", "float", "timestamp"))


def _list(item: Shape) -> Shape:
    return Shape("list", item=item)


def _map(value: Shape) -> Shape:
    return Shape("map", item=value)


def _structure(**members: Shape) -> Shape:
    return Shape("structure", members=members)


_FILTER_VALUES = _map(STRING)
_SHARED = {"context": _map(STRING), "filterArn": STRING, "filterValues": _FILTER_VALUES,
           "metadataColumns": _map(_list(STRING))}
PUT_EVENTS = _structure(
    trackingId=STRING, userId=STRING, sessionId=STRING, eventList=_list(_structure(
        eventId=STRING, eventType=STRING, eventValue=FLOAT, itemId=STRING, properties=STRING,
        sentAt=TIMESTAMP, recommendationId=STRING, impression=_list(STRING),
        metricAttribution=_structure(eventAttributionSource=STRING))))
PUT_ITEMS = _structure(datasetArn=STRING, items=_list(_structure(itemId=STRING,
                                                                 properties=STRING)))
PUT_USERS = _structure(datasetArn=STRING, users=_list(_structure(userId=STRING,
                                                                 properties=STRING)))
GET_RECOMMENDATIONS = _structure(
    campaignArn=STRING, itemId=STRING, userId=STRING, numResults=INTEGER,
    recommenderArn=STRING, promotions=_list(_structure(
        name=STRING, percentPromotedItems=INTEGER, filterArn=STRING,
        filterValues=_FILTER_VALUES)), **_SHARED)
GET_PERSONALIZED_RANKING = _structure(campaignArn=STRING, inputList=_list(STRING),
                                      userId=STRING, **_SHARED)
# (service, operation): its input shape
OPERATIONS = {("personalize-events", "PutEvents"): PUT_EVENTS,
              ("personalize-events", "PutItems"): PUT_ITEMS,
              ("personalize-events", "PutUsers"): PUT_USERS,
              ("personalize-runtime", "GetRecommendations"): GET_RECOMMENDATIONS,
              ("personalize-runtime", "GetPersonalizedRanking"): GET_PERSONALIZED_RANKING}

_EXPECTED = {
    "string": "a JSON string",
    "integer": "a JSON number without fraction or exponent",
    "float": 'a JSON number (or "NaN", "Infinity", "-Infinity")',
    "timestamp": "epoch seconds as a JSON number",
    "list": "a JSON array",
    "map": "a JSON object (a map)",
    "structure": "a JSON object",
}
_MAX_KEY = 100  # a map key as the message names it
_MAX_PATH = 300  # the path of a name given twice, as the message names it


def read_body(raw: bytes, loads: Any, shape: Shape) -> dict[str, Any]:
    """The body of an operation whose input is `shape`, parsed with `loads` (which raises
    json.JSONDecodeError) and read (`read`): a body that is not JSON, or JSON but not an
    object, is malformed (RestJsonInvalidJsonBody, RestJsonTechnicallyValidJsonBody), and so
    is one nested too deep, and one that gives a name twice in one object, named by its path."""
    if too_deep(raw, MAX_JSON_DEPTH):  # before any parser recurses into it
        raise MalformedError("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = loads(raw)
    except json.JSONDecodeError as exc:
        raise _not_json(raw, exc, shape) from None
    if gives_a_key_twice(raw, body):  # counts, no second parse; the path only then
        where = repeated_key(raw) or "body"
        raise MalformedError(where if len(where) <= _MAX_PATH else where[:_MAX_PATH - 3] + "...",
                             "given twice in one object; send it once (a JSON reader would "
                             "keep only the last value, silently)")
    return read(body, shape)


class _BeyondDouble:
    """A JSON number beyond a double's range, as it was written (`1e400`)."""

    def __init__(self, text: str):
        self.text = text


def _not_json(raw: bytes, exc: json.JSONDecodeError, shape: Shape) -> MalformedError:
    """Why a body the parser refused is malformed: where it holds a number beyond a double
    (which the parser refuses the whole body for), the member that holds it, when the model
    names one (or an earlier member of another type); else the parser's word on the body."""
    beyond: list[_BeyondDouble] = []

    def number(text: str) -> float | _BeyondDouble:
        value = float(text)
        if math.isfinite(value):
            return value
        beyond.append(_BeyondDouble(text))
        return beyond[-1]

    try:
        marked = json.loads(raw, parse_float=number, parse_constant=no_constant)
    except (ValueError, RecursionError):  # not JSON for another reason too
        marked = None
    if beyond and isinstance(marked, dict):
        try:
            read(marked, shape)
        except MalformedError as named:
            return named
    return MalformedError("body", f"not JSON: {exc}")


def check_media_types(content_type: str | None, accept: str | None, has_body: bool) -> None:
    """The request's `Accept` (None: not sent) allows a JSON answer, else NotAcceptableError;
    its body, when it has one, is sent as `application/json`, else UnsupportedMediaError. A
    Content-Type sent with an empty body must be JSON's too."""
    if accept is not None and not accepts_json(accept):
        raise NotAcceptableError("accept", f"Personalize operations answer in {JSON_MEDIA}, "
                                 f"which {_preview(accept)} does not allow (send no Accept, "
                                 f"*/* or {JSON_MEDIA})")
    if content_type is None:
        if has_body:
            raise UnsupportedMediaError("content-type", f"a body is sent as {JSON_MEDIA}, "
                                        "with `Content-Type: application/json` (none was sent)")
        return
    if content_type.partition(";")[0].strip().lower() != JSON_MEDIA:
        raise UnsupportedMediaError("content-type", f"a body is sent as {JSON_MEDIA} (the "
                                    f"restJson1 protocol's), not {_preview(content_type)}")


def accepts_json(accept: str) -> bool:
    """Whether an Accept header allows `application/json`: its most specific media range
    that matches (`application/json`, then `application/*`, then `*/*`) has a q above 0
    (RFC 9110 12.5.1). An empty header allows it, as one not sent does; a q that is no
    number counts as 1."""
    best: tuple[int, float] | None = None
    ranges = [part.strip() for part in accept.split(",") if part.strip()]
    if not ranges:
        return True
    for media_range in ranges:
        media, *params = (p.strip() for p in media_range.split(";"))
        rank = _MATCHES.get(media.lower())
        if rank is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 1.0
        if best is None or rank > best[0] or (rank == best[0] and q > best[1]):
            best = (rank, q)
    return best is not None and best[1] > 0


_MATCHES = {JSON_MEDIA: 2, "application/*": 1, "*/*": 0}  # how specific each match is


def read(body: Any, shape: Shape) -> dict[str, Any]:
    """The body with each member of `shape` checked for its JSON type (a `MalformedError`
    naming the first member that has another), float members given as "NaN", "Infinity" or
    "-Infinity" read as those floats; every other value is kept as it was."""
    if not isinstance(body, dict):
        raise MalformedError("body", f"expected a JSON object, got {_json_type(body)}")
    value: dict[str, Any] = _read(body, shape, "")
    return value


def _read(value: Any, shape: Shape, path: str) -> Any:
    kind = shape.kind
    if kind == "structure":
        _expect(isinstance(value, dict), value, shape, path)
        # members the model does not name are left out; null: the member is absent
        return {name: None if value[name] is None else _read(
                    value[name], member, f"{path}.{name}" if path else name)
                for name, member in shape.members.items() if name in value}
    if kind == "list":
        _expect(isinstance(value, list), value, shape, path)
        return [_item(v, shape, f"{path}[{index}]") for index, v in enumerate(value)]
    if kind == "map":
        _expect(isinstance(value, dict), value, shape, path)
        return {key: _item(v, shape, f"{path}.{key[:_MAX_KEY]}") for key, v in value.items()}
    number = isinstance(value, int | float) and not isinstance(value, bool)
    beyond = isinstance(value, _BeyondDouble)  # a number all the same
    if kind == "string":
        _expect(isinstance(value, str), value, shape, path)
    elif kind == "integer":
        _expect(isinstance(value, int) and number, value, shape, path)
        if not INT32[0] <= value <= INT32[1]:
            raise MalformedError(path, f"integer member: {_preview(value)} is outside the "
                                       f"32-bit range {INT32[0]} to {INT32[1]}")
    elif kind == "float":
        if isinstance(value, str) and value in FLOAT_WORDS:
            return FLOAT_WORDS[value]
        _expect(number or beyond, value, shape, path)
        if beyond or not abs(value) < FLOAT32_OVERFLOW:  # exact for an int of any size too
            raise MalformedError(path, f"float member: {_preview(value)} is outside the 32-bit "
                                       f"range -{FLOAT32_MAX_TEXT} to {FLOAT32_MAX_TEXT}")
    else:
        assert kind == "timestamp", kind
        _expect(number or beyond, value, shape, path)
        if beyond:
            raise MalformedError(path, f"timestamp member: {_preview(value)} is beyond the "
                                       "range of a double (epoch seconds)")
    return value


def _item(value: Any, shape: Shape, path: str) -> Any:
    """An item of a list or a value of a map: never null (the model's lists and maps are
    dense)."""
    assert shape.item is not None
    if value is None:
        raise MalformedError(path, f"{shape.kind} {'item' if shape.kind == 'list' else 'value'}"
                                   f": expected {_EXPECTED[shape.item.kind]}, got null")
    return _read(value, shape.item, path)


def _expect(ok: bool, value: Any, shape: Shape, path: str) -> None:
    if not ok:
        raise MalformedError(path or "body", f"{shape.kind} member: expected "
                             f"{_EXPECTED[shape.kind]}, got {_json_type(value)}"
                             f"{'' if isinstance(value, list | dict) else ' ' + _preview(value)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | _BeyondDouble):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _preview(value: Any) -> str:
    try:
        text = value.text if isinstance(value, _BeyondDouble) else json.dumps(value)
    except ValueError:  # an integer of more digits than Python writes
        return "(a number of over 4300 digits)"
    return text if len(text) <= 40 else text[:37] + "..."
