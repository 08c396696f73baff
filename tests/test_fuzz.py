"""Property-based fuzzing (hypothesis) of every parser that sees outside input.

Each parser may refuse input only with its own error naming the field (EventError,
FilterError, ConfigError): never anything else, which would be a 500 on the API.
"""

from __future__ import annotations

import json
import string
from datetime import datetime

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sluice.errors import InputError
from sluice.filters import (
    Condition,
    FilterError,
    Rule,
    allowed,
    check_syntax,
    parse_conditions,
    parse_expression,
)
from sluice.intake import personalize, restjson
from sluice.intake.events import EventError, parse_batch, parse_event
from sluice.intake.limits import (
    gives_a_key_twice,
    json_depth,
    loads_named,
    repeated_key,
    too_deep,
)
from sluice.intake.personalize import MalformedError
from sluice.settings import ConfigError, load_app_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=20) | st.sampled_from(["", " ", "0", "1e3", "null", "\\", "\u0000"]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

timestamps = st.one_of(
    st.integers(min_value=10**12, max_value=10**13 - 1),
    st.integers(min_value=10**9, max_value=10**10 - 1),
    st.integers(), st.floats(), st.datetimes().map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789-:TZ.+ ", max_size=30), json_values)
ids = st.one_of(st.text(min_size=1, max_size=10), st.integers(), st.floats(), json_values)
field_lists = st.one_of(
    st.lists(st.fixed_dictionaries({"name": st.text(max_size=6), "value": json_values}),
             max_size=4),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4), json_values)
events = st.fixed_dictionaries({
    "event": st.one_of(st.sampled_from(["item", "user", "ranking", "interaction", "metadata",
                                        "recommendation", "nope"]), json_values),
    "id": ids, "timestamp": timestamps,
}, optional={
    "tenant": st.one_of(st.sampled_from(["default", "shop", "-x", "a" * 70]), json_values),
    "user": ids, "session": ids, "item": ids, "type": ids, "ranking": ids,
    "value": st.one_of(st.floats(), st.integers(), json_values),
    "fields": field_lists,
    "items": st.one_of(st.lists(st.one_of(
        st.fixed_dictionaries({"id": ids}, optional={"fields": field_lists, "label": json_values,
                                                     "score": json_values,
                                                     "position": json_values,
                                                     "source": ids}),
        json_values), max_size=4), json_values),
})
anything = st.one_of(events, json_values)


@FUZZ
@given(anything, st.booleans())
def test_parse_event_only_ever_raises_event_error(raw, internal):
    try:
        parse_event(raw, allow_internal=internal)
    except EventError as exc:
        assert exc.field and exc.reason


names = st.text(min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(-(2**63), 2**63 - 1)
field_values = st.one_of(st.booleans(), int64, finite, st.text(max_size=12),
                         st.lists(st.text(max_size=5), max_size=3),
                         st.lists(st.one_of(int64, finite), max_size=3))
valid_fields = st.one_of(
    st.lists(st.fixed_dictionaries({"name": names, "value": field_values}), max_size=3),
    st.dictionaries(names, field_values, max_size=3))
valid_timestamps = st.one_of(
    st.integers(10**12, 10**13 - 1), st.integers(10**9, 10**10 - 1),
    st.integers(10**12, 10**13 - 1).map(str), st.integers(10**9, 10**10 - 1).map(float),
    st.datetimes(min_value=datetime(2002, 1, 1), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat() + "Z"))
valid_ids = names  # ids are strings: a number is refused (test_events)
valid_events = st.one_of(
    st.fixed_dictionaries({"event": st.sampled_from(["item", "metadata"]), "id": valid_ids,
                           "timestamp": valid_timestamps, "item": valid_ids},
                          optional={"fields": valid_fields, "tenant": st.just("shop")}),
    st.fixed_dictionaries({"event": st.just("user"), "id": valid_ids,
                           "timestamp": valid_timestamps, "user": valid_ids},
                          optional={"fields": valid_fields}),
    st.fixed_dictionaries({"event": st.just("interaction"), "id": valid_ids,
                           "timestamp": valid_timestamps, "user": valid_ids,
                           "item": valid_ids, "type": names},
                          optional={"session": valid_ids, "ranking": valid_ids,
                                    "value": finite, "fields": valid_fields}),
    st.fixed_dictionaries({"event": st.sampled_from(["ranking", "recommendation"]),
                           "id": valid_ids, "timestamp": valid_timestamps,
                           "session": valid_ids,
                           "items": st.lists(st.fixed_dictionaries(
                               {"id": valid_ids},
                               optional={"fields": valid_fields, "label": finite,
                                         "score": finite}), min_size=1, max_size=3)},
                          optional={"user": valid_ids, "fields": valid_fields}))


@FUZZ
@given(valid_events)
def test_parse_event_is_idempotent_and_survives_the_log(raw):
    internal = raw["event"] == "recommendation"
    try:
        parsed = parse_event(raw, allow_internal=internal)
    except EventError as exc:  # only what the generator cannot rule out: edge timestamps
        assert exc.field == "timestamp", exc
        return
    assert parse_event(parsed, allow_internal=internal) == parsed
    # what the raw log stores (orjson) parses back to the same event
    assert parse_event(orjson.loads(orjson.dumps(parsed)), allow_internal=internal) == parsed


@FUZZ
@given(st.lists(anything, max_size=8))
def test_parse_batch_accounts_for_every_input(raws):
    parsed, errors = parse_batch(raws)
    assert len(parsed) + len(errors) == len(raws)
    assert [e["index"] for e in errors] == sorted({e["index"] for e in errors})
    assert all(set(e) == {"index", "field", "reason"} for e in errors)


sql_text = st.sampled_from(["'; DROP TABLE items; --", '" OR 1=1 --', "a) | INCLUDE ItemID",
                            "$OTHER", "1; select 1", "\\'", "()", ""])
values_text = st.one_of(sql_text, st.text(max_size=15),
                        st.lists(st.one_of(sql_text, st.text(alphabet=string.ascii_letters,
                                                             max_size=5)), max_size=3)
                        .map(lambda vs: ",".join(json.dumps(v) for v in vs)))
conditions_text = st.builds(
    lambda source, name, op, value: f"{source}.{name} {op} {value}",
    st.sampled_from(["Items", "Interactions", "items", "Users", ""]),
    st.sampled_from(["GENRE", "EVENT_TYPE", "price", "1bad", "category"]),
    st.sampled_from(["IN", "NOT IN", "=", "<", ">=", "LIKE", ""]),
    st.one_of(st.just("($V)"), st.just("$V"), st.just('("a", "b")'), st.just("20"),
              st.text(max_size=12)))
expressions = st.one_of(
    st.builds(lambda action, conds: f"{action} ItemID WHERE " + " AND ".join(conds),
              st.sampled_from(["INCLUDE", "EXCLUDE", "exclude", "KEEP"]),
              st.lists(conditions_text, min_size=1, max_size=3))
    .flatmap(lambda e: st.lists(st.just(e), min_size=1, max_size=2).map(" | ".join)),
    st.text(max_size=60))


@FUZZ
@given(expressions, st.dictionaries(st.sampled_from(["V", "OTHER", "x"]), values_text,
                                    max_size=3))
def test_filter_expressions_only_raise_filter_error_and_stay_data(expression, values):
    try:
        rules = parse_expression(expression, values)
    except FilterError as exc:
        assert exc.field and exc.reason
        return
    for rule in rules:
        assert isinstance(rule, Rule) and rule.action in ("include", "exclude")
        assert rule.source in ("items", "interactions")
        for condition in rule.conditions:
            flat = condition.value if isinstance(condition.value, list) else [condition.value]
            assert all(isinstance(v, str | int | float) for v in flat)
        allowed([rule], {"genre": "a", "price": 3}, {"click"})  # evaluable as data


def test_filter_values_are_literals_never_code():
    injected = "'; DROP TABLE items; --"
    (rule,) = parse_expression("EXCLUDE ItemID WHERE Items.GENRE IN ($G)",
                               {"G": json.dumps(injected)})
    assert rule.conditions == (Condition("genre", "in", [injected]),)
    with pytest.raises(FilterError):  # an unquoted one is not even a value
        parse_expression("EXCLUDE ItemID WHERE Items.GENRE IN ($G)", {"G": injected})
    with pytest.raises(FilterError):
        check_syntax("EXCLUDE ItemID WHERE Items.GENRE IN (1); DROP TABLE items")


@FUZZ
@given(st.one_of(st.lists(st.one_of(
    st.fixed_dictionaries({"field": json_values, "op": json_values, "value": json_values}),
    st.fixed_dictionaries({"field": st.sampled_from(["color", "price"]),
                           "op": st.sampled_from(["eq", "in", "gt", "is", "contains"]),
                           "value": json_values}),
    json_values), max_size=4), json_values))
def test_filter_conditions_only_raise_filter_error(raw):
    try:
        rules = parse_conditions(raw, {"color", "price"})
    except FilterError as exc:
        assert exc.field.startswith("filters")
        return
    for rule in rules:
        allowed([rule], {"color": "red", "price": 3.0}, set())


@FUZZ
@given(json_values)
def test_json_depth_is_exact_on_any_json_text(value):
    def depth(v) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        assume(False)
        return
    assert json_depth(text) == depth(value)
    assert json_depth(text.encode()) == depth(value)
    for limit in (0, 1, 2, 3, 32):  # the bracket-count shortcut never changes the verdict
        assert too_deep(text.encode(), limit) == (depth(value) > limit)


def _written_with_a_key_twice(value, path: str = ""):
    """(JSON text of `value` whose first non-empty object, depth first, gives its first key
    twice, that object's field path) or (plain text, None)."""
    if isinstance(value, dict) and value:
        key = next(iter(value))
        pairs = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
        pairs.append(f"{json.dumps(key)} :{json.dumps(value[key])}")
        return "{" + ", ".join(pairs) + "}", f"{path}.{key}" if path else key
    children = (value.items() if isinstance(value, dict) else
                enumerate(value) if isinstance(value, list) else ())
    parts, found = [], None
    for key, child in children:
        if found is None:
            where = f"{path}[{key}]" if isinstance(value, list) else (
                f"{path}.{key}" if path else key)
            text, found = _written_with_a_key_twice(child, where)
        else:
            text = json.dumps(child)
        parts.append(text if isinstance(value, list) else f"{json.dumps(key)}: {text}")
    if isinstance(value, list):
        return "[" + ",\n ".join(parts) + "]", found
    if isinstance(value, dict):
        return "{" + ", ".join(parts) + "}", found
    return json.dumps(value), None


@FUZZ
@given(json_values)
def test_a_key_given_twice_is_found_wherever_it_is(value):
    """Any JSON text: one that gives no key twice is never flagged (colons and quotes inside
    keys and strings, escapes, NaN, integers beyond 64 bits); one that does is, with the
    path of the object that does."""
    try:
        plain = json.dumps(value, allow_nan=True, indent=1).encode()
        twice, where = _written_with_a_key_twice(value)
    except (TypeError, ValueError):
        assume(False)
        return
    assert not gives_a_key_twice(plain, loads_named(plain))
    assert repeated_key(plain) is None
    if where is None:
        return
    text = twice.encode()
    assert gives_a_key_twice(text, loads_named(text))
    assert repeated_key(text) == where


@FUZZ
@given(st.fixed_dictionaries({
    "trackingId": ids, "sessionId": ids,
    "eventList": st.one_of(st.lists(st.fixed_dictionaries(
        {"eventType": ids, "sentAt": st.one_of(st.floats(), st.integers(), json_values)},
        optional={"itemId": ids, "eventId": ids, "eventValue": json_values,
                  "impression": json_values, "recommendationId": ids,
                  "properties": st.one_of(
                      st.text(max_size=30), json_values.map(json.dumps),
                      st.integers(1, 3000).map(lambda n: "[" * n + "]" * n))}),
        max_size=3), json_values)},
    optional={"userId": ids}) | json_values)
def test_personalize_put_events_only_raises_event_error(body):
    try:
        personalize.put_events(body, "default")
    except EventError as exc:
        assert exc.field and exc.reason


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1, 2**70]])
def test_integers_the_log_cannot_hold_are_refused(value):
    # found by the idempotence property: orjson (the raw log) stops at 64 bits, json.loads
    # (PutItems properties) does not, so such a value used to fail the write with a 500
    with pytest.raises(EventError, match="64 bits"):
        parse_event({"event": "item", "id": "i", "item": "i", "timestamp": 1_767_225_600_000,
                     "fields": {"big": value}})
    with pytest.raises(EventError) as err:
        personalize.put_entities({"datasetArn": "arn:aws:personalize:r:1:dataset/shop/ITEMS",
                                  "items": [{"itemId": "x", "properties": json.dumps(
                                      {"big": value})}]}, "item", 1_767_225_600_000)
    assert err.value.field == "items[0].properties.big"  # names the property


def test_deep_properties_are_refused_not_recursed_into():
    deep = "[" * 20_000 + "]" * 20_000
    with pytest.raises(EventError, match="nested deeper"):
        personalize.put_entities({"datasetArn": "arn:aws:personalize:r:1:dataset/shop/USERS",
                                  "users": [{"userId": "u", "properties": deep[:24_000]}]},
                                 "user", 1_767_225_600_000)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(
                                  ["events", "auth", "keys", "role", "serving", "weights",
                                   "trackers", "templates", "filters", "model", "x"]),
                                  inner, max_size=3), max_leaves=10).map(json.dumps)))
def test_config_files_only_raise_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "sluice.yaml"
    path.write_text(text)
    try:
        load_app_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_a_deeply_nested_config_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError):
        load_app_config(path)


def _typed(shape: restjson.Shape, loose: bool) -> st.SearchStrategy:
    """Values of the shape's JSON type (with `loose`, any JSON value in place of any member;
    the float words "NaN", "Infinity", "-Infinity" among them, read as floats)."""
    kind = shape.kind
    if kind == "structure":
        found = st.fixed_dictionaries({}, optional={
            name: st.none() | _typed(member, loose) for name, member in shape.members.items()})
    elif kind in ("list", "map"):
        assert shape.item is not None
        item = _typed(shape.item, loose)
        found = (st.lists(item, max_size=2) if kind == "list"
                 else st.dictionaries(st.text(max_size=3), item, max_size=2))
    else:
        found = {"string": st.text(max_size=5), "integer": st.integers(*restjson.INT32),
                 "float": st.integers(-(2 ** 127), 2 ** 127)  # within a float32
                 | st.floats(width=32, allow_nan=False, allow_infinity=False),
                 "timestamp": st.integers() | st.floats(allow_nan=False,
                                                        allow_infinity=False)}[kind]
    return found | json_values | st.sampled_from(sorted(restjson.FLOAT_WORDS)) if loose else found


@pytest.mark.parametrize("operation", list(restjson.OPERATIONS), ids=lambda o: o[1])
def test_a_body_of_its_members_types_is_read_as_sent(operation):
    shape = restjson.OPERATIONS[operation]

    @FUZZ
    @given(_typed(shape, loose=False))
    def read(body):
        assert restjson.read(body, shape) == body

    read()


@pytest.mark.parametrize("operation", list(restjson.OPERATIONS), ids=lambda o: o[1])
def test_any_body_is_read_or_malformed_and_a_write_read_raises_only_input_errors(operation):
    shape = restjson.OPERATIONS[operation]

    @FUZZ
    @given(_typed(shape, loose=True) | json_values)
    def read(body):
        try:
            read = restjson.read(body, shape)
        except MalformedError as exc:
            assert exc.field and exc.reason
            return
        try:
            if operation[1] == "PutEvents":
                personalize.put_events(read, "default")
            elif operation[1] in ("PutItems", "PutUsers"):
                personalize.put_entities(read, operation[1][3:-1].lower(), 1_767_225_600_000)
        except InputError as exc:
            assert exc.field and exc.reason and not isinstance(exc, MalformedError)

    read()
