"""Event contracts: parse_event / parse_batch / parse_timestamp."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta

import pytest

from sluice.intake import events as ev
from sluice.intake.events import EventError, parse_batch, parse_event, parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = 1_700_000_123_456  # 2023-11-14T22:15:23.456Z


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def item(**extra):
    return {"event": "item", "id": "it-1", "timestamp": MS, "item": "i1", **extra}


def user(**extra):
    return {"event": "user", "id": "us-1", "timestamp": MS, "user": "u1", **extra}


def ranking(**extra):
    return {"event": "ranking", "id": "r-1", "timestamp": MS, "user": "u1", "session": "s1",
            "items": [{"id": "i1"}, {"id": "i2", "fields": [{"name": "rel", "value": 0.5}],
                                     "label": 1}], **extra}


def interaction(**extra):
    return {"event": "interaction", "id": "c-1", "timestamp": MS, "user": "u1", "session": "s1",
            "item": "i1", "type": "click", "ranking": "r-1", **extra}


def _error(raw, **kwargs) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(raw, **kwargs)
    return info.value


# --- event types ---------------------------------------------------------------------------


def test_item_event_normalised():
    out = parse_event(item(fields=[{"name": "color", "value": "red"},
                                   {"name": "price", "value": 9.5}]))
    assert out == {"event": "item", "id": "it-1", "timestamp": MS, "tenant": "default",
                   "item": "i1", "fields": {"color": "red", "price": 9.5}}


def test_metadata_is_an_alias_of_item():
    raw = item()
    raw["event"] = "metadata"
    assert parse_event(raw) == parse_event(item())
    assert parse_event(raw)["event"] == "item"


def test_user_event_requires_user():
    assert parse_event(user())["user"] == "u1"
    raw = user()
    del raw["user"]
    assert _error(raw).field == "user"


def test_ranking_event_keeps_items_fields_and_labels():
    out = parse_event(ranking())
    assert out["event"] == "ranking"
    assert out["user"] == "u1" and out["session"] == "s1"
    assert out["items"] == [{"id": "i1"}, {"id": "i2", "fields": {"rel": 0.5}, "label": 1.0}]


def test_interaction_event_keeps_ranking_type_and_value():
    out = parse_event(interaction(value=2))
    assert out["type"] == "click"
    assert out["ranking"] == "r-1"
    assert out["item"] == "i1"
    assert out["value"] == 2.0 and isinstance(out["value"], float)


@pytest.mark.parametrize("kind", ["purchase", "recommendation", "", None, "ITEM"])
def test_unknown_event_types_rejected(kind):
    raw = item()
    raw["event"] = kind
    assert _error(raw).field == "event"


def test_non_object_rejected():
    assert _error(["not", "an", "object"]).field == "event"


# --- timestamps -----------------------------------------------------------------------------


def test_timestamp_ms_number_and_string():
    assert parse_timestamp(MS) == MS
    assert parse_timestamp(str(MS)) == MS
    assert parse_timestamp(f"  {MS} ") == MS
    assert parse_timestamp(float(MS)) == MS


def test_timestamp_epoch_seconds_number_and_string():
    seconds = MS // 1000
    assert len(str(seconds)) == 10
    assert parse_timestamp(seconds) == seconds * 1000
    assert parse_timestamp(str(seconds)) == seconds * 1000


@pytest.mark.parametrize(("value", "ms"), [
    (874_965_758, 874_965_758_000),           # MovieLens-100k: 1997, nine digits of seconds
    ("874965758", 874_965_758_000),
    (17_000_000_000, 17_000_000_000_000),     # eleven digits, still below 10^11: seconds
    (32_503_679_999, 32_503_679_999_000),     # the last second before 3000-01-01
    (100_000_000_000, 100_000_000_000),       # 10^11 and above: milliseconds (1973)
    (1_700_000_000.5, 1_700_000_000_500),     # fractional seconds (boto3 sends these)
    ("1700000000.25", 1_700_000_000_250),
    (float(MS), MS),
])
def test_epoch_numbers_are_read_by_value_not_digit_count(value, ms):
    assert parse_timestamp(value) == ms
    assert parse_timestamp(parse_timestamp(value)) == ms  # the internal form reads back


def test_a_refused_timestamp_says_which_rule():
    with pytest.raises(EventError) as info:
        parse_timestamp(1_700_000_000_000_000)
    assert "after 3000-01-01" in info.value.reason and "10^11" in info.value.reason
    with pytest.raises(EventError) as info:
        parse_timestamp(-1)
    assert "before 1970" in info.value.reason


def test_timestamp_iso_with_zone_and_z():
    moment = datetime(2024, 3, 5, 12, 34, 56, 789000, tzinfo=UTC)
    assert parse_timestamp("2024-03-05T12:34:56.789Z") == _ms(moment)
    assert parse_timestamp("2024-03-05T12:34:56.789+00:00") == _ms(moment)
    # 14:34:56.789 at +02:00 is 12:34:56.789 UTC
    assert parse_timestamp("2024-03-05T14:34:56.789+02:00") == _ms(moment)
    assert parse_timestamp("2024-03-05T07:34:56.789-05:00") == _ms(moment)


def test_naive_iso_is_utc():
    expected = _ms(datetime(2024, 3, 5, 12, 34, 56, 789000, tzinfo=UTC))
    assert parse_timestamp("2024-03-05T12:34:56.789") == expected
    assert parse_timestamp("2024-03-05T12:34:56.789") == parse_timestamp(
        "2024-03-05T12:34:56.789Z")
    assert parse_timestamp("2024-03-05") == _ms(datetime(2024, 3, 5, tzinfo=UTC))


@pytest.mark.parametrize("fraction", ["001", "123", "289", "578", "999"])
def test_iso_milliseconds_exact(fraction):
    value = parse_timestamp(f"2025-06-30T23:59:59.{fraction}Z")
    assert value % 1000 == int(fraction)
    assert value // 1000 == _ms(datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC)) // 1000


@pytest.mark.parametrize("value", [
    33_000_000_000, "33000000000",          # seconds after 3000-01-01
    50_000_000, "50000000", "12345", 0,     # seconds before 1973-03-03 (the ms floor)
    10**17, 1_700_000_000_000_000,          # microseconds: after 3000 read as ms
    -5, "-1700000000", -1.5,                # before 1970
    "yesterday", "2024-13-01T00:00:00Z", "", "  ", "1.7e12",
    math.nan, math.inf, True, None, [MS], {"ms": MS},
    "\u00b2" * 10,                          # unicode digits that int() would read
    "\u0663" * 10,                          # Arabic-Indic digits
    "1970-06-01T00:00:00Z",                 # before 1973-03-03T09:46:40Z
    "0001-01-01T00:00:00+01:00", "1966-10-31T00:00:00Z", "3000-01-01T00:00:00Z",
])
def test_bad_timestamps_rejected_naming_field(value):
    with pytest.raises(EventError) as info:
        parse_timestamp(value)
    assert info.value.field == "timestamp"
    assert info.value.reason
    assert _error(item(timestamp=value)).field == "timestamp"


def test_missing_timestamp_rejected():
    raw = item()
    del raw["timestamp"]
    assert _error(raw).field == "timestamp"


# --- fields ---------------------------------------------------------------------------------

FIELD_VALUES = {"flag": True, "color": "red", "price": 12.5, "count": 3,
                "tags": ["a", "b"], "vec": [1, 2.5, -3], "empty": []}


def test_fields_as_metarank_list_and_as_dict_agree():
    as_list = [{"name": k, "value": v} for k, v in FIELD_VALUES.items()]
    from_list = parse_event(item(fields=as_list))
    from_dict = parse_event(item(fields=dict(FIELD_VALUES)))
    assert from_list["fields"] == FIELD_VALUES
    assert from_dict == from_list
    assert from_list["fields"]["flag"] is True


@pytest.mark.parametrize("value, reason_part", [
    (None, "null"),
    ({"nested": 1}, "dict"),
    (["a", 1], "only strings or only finite numbers"),
    ([1, True], "only strings or only finite numbers"),
    ([[1]], "only strings or only finite numbers"),
    (math.nan, "finite"),
    (math.inf, "finite"),
    ([1.0, math.nan], "finite"),
])
def test_bad_field_values_rejected_with_path(value, reason_part):
    err = _error(item(fields=[{"name": "color", "value": value}]))
    assert err.field == "fields.color"
    assert reason_part in err.reason
    err = _error(item(fields={"color": value}))
    assert err.field == "fields.color"


def test_bad_ranking_item_field_names_its_path():
    raw = ranking()
    raw["items"][1]["fields"] = {"rel": {"x": 1}}
    assert _error(raw).field == "items[1].fields.rel"


def test_malformed_field_entries_rejected():
    assert _error(item(fields=[{"name": "a"}])).field == "fields[0]"
    assert _error(item(fields=[{"name": "a", "value": 1}, "b"])).field == "fields[1]"
    assert _error(item(fields="color=red")).field == "fields"
    assert _error(item(fields={"": 1})).field == "fields"


def test_too_many_fields_rejected():
    ok = {f"f{i}": i for i in range(ev.MAX_FIELDS)}
    assert len(parse_event(item(fields=ok))["fields"]) == ev.MAX_FIELDS
    too_many = {f"f{i}": i for i in range(ev.MAX_FIELDS + 1)}
    err = _error(item(fields=too_many))
    assert err.field == "fields"
    assert str(ev.MAX_FIELDS) in err.reason


def test_too_long_values_rejected():
    assert parse_event(item(id="x" * ev.MAX_ID_LENGTH))["id"] == "x" * ev.MAX_ID_LENGTH
    assert _error(item(id="x" * (ev.MAX_ID_LENGTH + 1))).field == "id"
    assert _error(item(item="y" * (ev.MAX_ID_LENGTH + 1))).field == "item"
    long_string = "z" * (ev.MAX_STRING_LENGTH + 1)
    assert _error(item(fields={"title": long_string})).field == "fields.title"
    long_list = list(range(ev.MAX_LIST_LENGTH + 1))
    assert _error(item(fields={"v": long_list})).field == "fields.v"
    assert _error(item(fields={"n" * (ev.MAX_FIELD_NAME_LENGTH + 1): 1})).field == "fields"


def test_empty_and_missing_ids_rejected():
    assert _error(item(id="")).field == "id"
    raw = item()
    del raw["id"]
    assert _error(raw).field == "id"
    assert _error(item(id={"a": 1})).field == "id"


@pytest.mark.parametrize(("changes", "field"), [
    ({"user": 42}, "user"), ({"user": 1.0}, "user"), ({"item": 7}, "item"),
    ({"session": 3}, "session"), ({"ranking": 2.5}, "ranking"), ({"id": 1}, "id"),
    ({"tenant": 4}, "tenant"), ({"type": 1}, "type")])
def test_numeric_ids_are_refused_not_written_as_text(changes, field):
    """ids are strings (docs/architecture.md): 1 and 1.0 would otherwise be two users."""
    error = _error(interaction(**changes))
    assert error.field == field and error.reason.startswith("must be a string, got number")


# --- ranking / interaction requirements ------------------------------------------------------


@pytest.mark.parametrize("items", [None, [], "i1", [{"fields": {}}], ["i1"]])
def test_ranking_needs_non_empty_items(items):
    raw = ranking(items=items)
    if items is None:
        del raw["items"]
    assert _error(raw).field.startswith("items")


def test_ranking_items_limit():
    too_many = [{"id": f"i{n}"} for n in range(ev.MAX_RANKING_ITEMS + 1)]
    assert _error(ranking(items=too_many)).field == "items"


@pytest.mark.parametrize("builder", [ranking, interaction])
def test_needs_user_or_session(builder):
    anonymous = builder()
    del anonymous["user"]
    assert parse_event(anonymous)["session"] == "s1"
    assert "user" not in parse_event(anonymous)
    logged_in = builder()
    del logged_in["session"]
    assert parse_event(logged_in)["user"] == "u1"
    neither = builder()
    del neither["user"], neither["session"]
    err = _error(neither)
    assert err.field == "user"
    assert "session" in err.reason


@pytest.mark.parametrize("missing", ["item", "type"])
def test_interaction_needs_item_and_type(missing):
    raw = interaction()
    del raw[missing]
    assert _error(raw).field == missing


def test_interaction_value_must_be_a_number():
    assert _error(interaction(value="high")).field == "value"
    assert _error(interaction(value=math.inf)).field == "value"


def test_recommendation_is_internal_only():
    raw = ranking(event="recommendation",
                  items=[{"id": "i1", "score": 0.9, "source": "als", "position": 1}])
    assert _error(raw).field == "event"
    out = parse_event(raw, allow_internal=True)
    assert out["event"] == "recommendation"
    assert out["items"] == [{"id": "i1", "score": 0.9, "source": "als", "position": 1}]
    # internal-only keys are dropped from public rankings
    public = parse_event(ranking(items=[{"id": "i1", "score": 0.9, "source": "als"}]))
    assert public["items"] == [{"id": "i1"}]


# --- tenants --------------------------------------------------------------------------------


def test_tenant_defaults_and_override():
    assert parse_event(item())["tenant"] == "default"
    assert parse_event(item(), default_tenant="shop")["tenant"] == "shop"
    assert parse_event(item(tenant="eu-shop_2.x"), default_tenant="shop")["tenant"] == "eu-shop_2.x"
    assert parse_event(item(tenant="a" * 64))["tenant"] == "a" * 64


@pytest.mark.parametrize("tenant", ["", "-lead", ".hidden", "a b", "a/b", "../up", "a" * 65,
                                    "shop\n", "t\u00e9", 7, ["t"]])
def test_bad_tenants_rejected(tenant):
    assert _error(item(tenant=tenant)).field == "tenant"


# --- idempotence ----------------------------------------------------------------------------

IDEMPOTENCE_CASES = [
    item(fields=[{"name": "tags", "value": ["x", "y"]}, {"name": "price", "value": 3}]),
    item(event="metadata", timestamp="2024-02-29T23:59:59.999+05:30", tenant="t1"),
    user(timestamp=str(MS // 1000), fields={"country": "de", "vip": False}),
    ranking(timestamp="2030-01-01T00:00:00"),
    interaction(value=3, timestamp=str(MS), fields={"price": 9.99}),
    interaction(user=None, timestamp=MS // 1000),
]


@pytest.mark.parametrize("raw", IDEMPOTENCE_CASES, ids=lambda r: r["event"])
def test_parsing_is_idempotent(raw):
    raw = {k: v for k, v in raw.items() if v is not None}
    before = copy.deepcopy(raw)
    once = parse_event(raw)
    assert parse_event(once) == once
    assert parse_event(copy.deepcopy(once)) == once
    assert raw == before  # input untouched


def test_internal_recommendation_is_idempotent():
    raw = ranking(event="recommendation",
                  items=[{"id": "i1", "score": 1, "position": 1, "source": "als"},
                         {"id": "i2", "fields": {"x": [1, 2]}, "position": 2}])
    once = parse_event(raw, allow_internal=True)
    assert parse_event(once, allow_internal=True) == once


# --- batches --------------------------------------------------------------------------------


def test_parse_batch_reports_each_bad_event():
    no_type = interaction()
    del no_type["type"]
    raws = [item(), "text", user(), item(fields={"color": None}), no_type,
            ranking(items=[]), interaction(tenant="bad tenant")]
    events, errors = parse_batch(raws, default_tenant="shop")
    assert [e["id"] for e in events] == ["it-1", "us-1"]
    assert all(e["tenant"] == "shop" for e in events)
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "event"), (3, "fields.color"), (4, "type"), (5, "items"), (6, "tenant")]
    assert all(isinstance(e["reason"], str) and e["reason"] for e in errors)


def test_parse_batch_all_good_and_empty():
    events, errors = parse_batch([item(), user(), ranking(), interaction()])
    assert errors == []
    assert [e["event"] for e in events] == ["item", "user", "ranking", "interaction"]
    assert parse_batch([]) == ([], [])


def test_parse_batch_refuses_internal_events():
    _, errors = parse_batch([ranking(event="recommendation")])
    assert errors == [{"index": 0, "field": "event", "reason": errors[0]["reason"]}]
    assert "recommendation" in errors[0]["reason"]


def test_iso_round_trip():
    assert parse_timestamp(ev.iso(MS)) == MS
    assert ev.iso(MS).endswith("Z")


@pytest.mark.parametrize("text", ["1973-03-03T09:46:40Z", "2999-12-31T23:59:59.999Z"])
def test_iso_at_the_edges_of_the_ms_range_round_trips(text):
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    value = parse_timestamp(text)
    assert value == _ms(moment)
    assert parse_timestamp(value) == value
    assert parse_event(item(timestamp=text))["timestamp"] == value


@pytest.mark.parametrize("entry", [
    {"id": "i1"},
    {"id": "i1", "score": 0.5, "position": 3, "source": "model_fallback"},
    {"id": "i1", "score": 1, "position": 3.0, "source": "fallback"},
    {"id": "i1", "score": 0.5},
    {"id": "i1", "position": 2**60},
    {"id": "i1", "position": -4, "score": -0.0},
    {"id": "i1", "score": None, "source": None, "position": None},
    {"id": "i1", "label": 2, "score": 0.5},
    {"id": "i1", "fields": {"a": 1}},
])
@pytest.mark.parametrize("internal", [True, False])
def test_fast_item_path_gives_what_the_full_checks_give(entry, internal):
    fast = ev._plain_item(entry, internal)
    assert fast is None or fast == ev._ranking_item(entry, "items[0]", internal)


@pytest.mark.parametrize("entry", [
    {"id": ""}, {"id": None}, {"id": "i1", "score": float("nan")}, {"id": "i1", "score": True},
    {"id": "i1", "position": "1"}, {"id": "i1", "source": ""}, {"id": "x" * 300}, ["i1"],
])
def test_fast_item_path_leaves_bad_entries_to_the_full_checks(entry):
    assert ev._plain_item(entry, internal=True) is None
    with pytest.raises(EventError):
        ev._ranking_item(entry, "items[0]", internal=True)


def test_an_interaction_type_has_personalizes_256_characters_in_every_entry_point():
    """PutEvents' eventType is 1 to 256 characters (botocore's model): the native event and
    PutEvents read the same type under one limit."""
    from sluice.intake.personalize import put_events

    native = {"event": "interaction", "id": "e", "timestamp": 1700000000000, "user": "u",
              "item": "i"}
    assert parse_event({**native, "type": "t" * 256})["type"] == "t" * 256
    with pytest.raises(EventError, match="^type: longer than 256"):
        parse_event({**native, "type": "t" * 257})
    body = {"trackingId": "t", "sessionId": "s", "eventList": [
        {"eventType": "v" * 256, "sentAt": 1700000000, "itemId": "i"}]}
    assert put_events(body, "default")[0]["type"] == "v" * 256
    body["eventList"][0]["eventType"] = "v" * 257
    with pytest.raises(EventError, match=r"^eventList\[0\]\.eventType: length must be 1 to"):
        put_events(body, "default")
