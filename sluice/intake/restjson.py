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
- float: a JSON number, or the strings "NaN", "Infinity" and "-Infinity", which the protocol
  writes for the values JSON has no number for (read as those floats; the operation refuses
  them as not finite); any other string and a boolean are malformed
  (RestJsonBodyFloatMalformedValueRejected).
- timestamp: epoch seconds as a JSON number, restJson1's format for a body member without a
  `timestampFormat` (the Personalize models give none); a date-time string, epoch seconds as
  a string, `"NaN"` and `true` are malformed (RestJsonBodyTimestampDefaultRejects*).
- list: a JSON array whose items are not null (the lists are dense:
  RestJsonBodyMalformedListNullItem); map: a JSON object whose values are not null
  (RestJsonBodyMalformedMapNullValue); structure: a JSON object.
- a member given as null is absent, as restJson1 reads a null structure member; members the
  model does not name are left to the operation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.intake.personalize import MalformedError

INT32 = (-(2 ** 31), 2 ** 31 - 1)
# a float member as the protocol writes the values JSON has no number for
FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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


def read_body(raw: bytes, loads: Any, shape: Shape) -> dict[str, Any]:
    """The body of an operation whose input is `shape`, parsed with `loads` (which raises
    json.JSONDecodeError) and read (`read`): a body that is not JSON, or JSON but not an
    object, is malformed (RestJsonInvalidJsonBody, RestJsonTechnicallyValidJsonBody)."""
    try:
        body = loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedError("body", f"not JSON: {exc}") from None
    return read(body, shape)


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
        out = dict(value)
        for name, member in shape.members.items():
            if out.get(name) is not None:  # null: the member is absent
                out[name] = _read(out[name], member, f"{path}.{name}" if path else name)
        return out
    if kind == "list":
        _expect(isinstance(value, list), value, shape, path)
        return [_item(v, shape, f"{path}[{index}]") for index, v in enumerate(value)]
    if kind == "map":
        _expect(isinstance(value, dict), value, shape, path)
        return {key: _item(v, shape, f"{path}.{key[:_MAX_KEY]}") for key, v in value.items()}
    number = isinstance(value, int | float) and not isinstance(value, bool)
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
        _expect(number, value, shape, path)
        if isinstance(value, int) and not _fits_a_double(value):
            return math.inf if value > 0 else -math.inf  # as a float reader rounds it
    else:
        assert kind == "timestamp", kind
        _expect(number, value, shape, path)
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


def _fits_a_double(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _preview(value: Any) -> str:
    try:
        text = json.dumps(value)
    except ValueError:  # an integer of more digits than Python writes
        return "(a number of over 4300 digits)"
    return text if len(text) <= 40 else text[:37] + "..."
