"""Filters: both spellings parse to one safe structure, and every tier obeys them."""

from __future__ import annotations

import pytest

from sluice.filters import (
    Condition,
    FilterError,
    NamedFilters,
    Rule,
    allowed,
    check_syntax,
    parse_conditions,
    parse_expression,
)
from sluice.serve.answers import RecommendationRequest
from sluice.serve.realtime import RealtimeState
from sluice.vocabulary import FALLBACK, MODEL_FALLBACK, MODEL_PERSONALIZED
from tests.serve.test_recommender import bundle, check, recommender  # noqa: F401  (fixture)

ITEM = {"color": "red", "price": 12.5, "tags": ["sale", "new"], "in_stock": True}


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("eq", "red", True), ("eq", "blue", False), ("ne", "blue", True),
    ("in", ["blue", "red"], True), ("not_in", ["red"], False),
    ("gt", 10, True), ("gte", 12.5, True), ("lt", 12.5, False), ("lte", 12.5, True),
    ("contains", "sale", True), ("contains", "old", False), ("is", True, True),
])
def test_conditions(op, value, expected):
    field = {"contains": "tags", "is": "in_stock", "gt": "price", "gte": "price", "lt": "price",
             "lte": "price"}.get(op, "color")
    (rule,) = parse_conditions([{"field": field, "op": op, "value": value}], set(ITEM))
    assert allowed([rule], ITEM, set()) is expected


def test_list_fields_match_any_element_and_missing_fields_fail_positive_ops():
    assert Condition("tags", "eq", "new").matches(ITEM)
    assert Condition("tags", "in", ["x", "sale"]).matches(ITEM)
    assert not Condition("brand", "eq", "acme").matches(ITEM)
    assert Condition("brand", "ne", "acme").matches(ITEM)
    assert Condition("brand", "is", None).matches(ITEM)
    assert not Condition("color", "gt", 3).matches(ITEM)  # not a number: no match


@pytest.mark.parametrize(("raw", "field"), [
    ([{"field": "nope", "op": "eq", "value": 1}], "filters[0].field"),
    ([{"field": "color", "op": "like", "value": "r%"}], "filters[0].op"),
    ([{"field": "price", "op": "gt", "value": "10"}], "filters[0].value"),
    ([{"field": "color", "op": "in", "value": []}], "filters[0].value"),
    ([{"field": "color", "op": "eq", "value": {"$ne": 1}}], "filters[0].value"),
    ([{"field": "color", "op": "eq", "value": "red"}, "x"], "filters[1]"),
    ({"field": "color"}, "filters"),
    ([{"field": "color", "opp": "ne", "value": "red"}], "filters[0].opp"),
    ([{"field": "color", "op": "eq", "valeu": "red"}], "filters[0].valeu"),
])
def test_bad_conditions_name_the_field(raw, field):
    with pytest.raises(FilterError) as err:
        parse_conditions(raw, set(ITEM))
    assert err.value.field == field


def test_personalize_expressions_with_placeholders():
    rules = parse_expression(
        'EXCLUDE ItemID WHERE Items.COLOR IN ($COLORS) | INCLUDE ItemID WHERE Items.PRICE < 20 '
        'AND Items.IN_STOCK = "true"',
        {"COLORS": '"blue","green"'}, {"color", "price", "in_stock"})
    assert rules[0] == Rule("exclude", "items", (Condition("color", "in", ["blue", "green"]),))
    assert rules[1].action == "include"
    assert rules[1].conditions[0] == Condition("price", "lt", 20)
    assert allowed(rules, {"color": "red", "price": 5, "in_stock": "true"}, set())
    assert not allowed(rules, {"color": "blue", "price": 5, "in_stock": "true"}, set())
    assert not allowed(rules, {"color": "red", "price": 25, "in_stock": "true"}, set())


def test_interaction_expressions_use_the_users_event_types():
    (rule,) = parse_expression('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')
    assert not allowed([rule], {}, {"click", "purchase"})
    assert allowed([rule], {}, {"click"})
    assert allowed([rule], {}, set())


@pytest.mark.parametrize(("expression", "values", "field"), [
    ("SELECT * FROM items", {}, "filterExpression[0]"),
    ("EXCLUDE ItemID WHERE Items.GENRE IN ($G)", {}, "filterValues.G"),
    ("EXCLUDE ItemID WHERE Items.GENRE IN (\"a\") OR Items.X = 1", {}, "filterExpression[0]"),
    ("INCLUDE ItemID WHERE Items.UNKNOWN = 1", {}, "filterExpression[0]"),
    ("INCLUDE ItemID WHERE Interactions.ITEM_ID = 1", {}, "filterExpression[0]"),
    ("INCLUDE ItemID WHERE Items.PRICE < \"cheap\"", {}, "filterExpression[0]"),
    ("EXCLUDE ItemID WHERE Items.GENRE IN (__import__('os'))", {}, "filterExpression[0]"),
    ("", {}, "filterExpression"),
])
def test_malformed_expressions_are_refused(expression, values, field):
    with pytest.raises(FilterError) as err:
        parse_expression(expression, values, {"genre", "price"})
    assert err.value.field == field


def test_named_filters_are_checked_and_stored(tmp_path):
    named = NamedFilters({"fixed": 'EXCLUDE ItemID WHERE Items.A IN ("x")'},
                         tmp_path / "filters.json")
    named.create("cheap", "INCLUDE ItemID WHERE Items.PRICE < $MAX")
    assert NamedFilters({}, tmp_path / "filters.json").get("cheap").endswith("$MAX")
    with pytest.raises(FilterError):
        named.create("cheap", "INCLUDE ItemID WHERE Items.PRICE < 3")
    with pytest.raises(FilterError):
        named.create("broken", "INCLUDE ItemID WHEN")
    with pytest.raises(FilterError):
        check_syntax("INCLUDE ItemID WHERE Items.PRICE ~ 3")


def test_filters_apply_to_every_tier(bundle):  # noqa: F811
    rules = parse_conditions([{"field": "color", "op": "eq", "value": "red"}], {"color"})
    answer = recommender(bundle).recommend(
        RecommendationRequest(user_id="u1", num_results=40, rules=rules))
    sources = check(answer)
    assert {bundle.catalog[s.item_id]["color"] for s in answer.items} == {"red"}
    assert MODEL_PERSONALIZED in sources and FALLBACK in sources
    cold = recommender(bundle).recommend(
        RecommendationRequest(user_id="ghost", num_results=10, rules=rules))
    assert check(cold) == [MODEL_FALLBACK] * 10
    assert {bundle.catalog[s.item_id]["color"] for s in cold.items} == {"red"}


def test_when_nothing_passes_the_answer_is_short_not_wrong(bundle):  # noqa: F811
    rules = parse_conditions([{"field": "color", "op": "eq", "value": "purple"}], {"color"})
    answer = recommender(bundle).recommend(
        RecommendationRequest(user_id="u1", num_results=10, rules=rules))
    assert answer.items == []
    assert answer.counts()["total"] == 0


def test_exclude_purchased_with_exclude_seen_off(bundle):  # noqa: F811
    state = RealtimeState()
    state.apply([{"event": "interaction", "id": "p1", "tenant": "default", "user": "u1",
                  "item": "i12", "type": "purchase", "timestamp": 5_000},
                 {"event": "interaction", "id": "p2", "tenant": "default", "user": "u1",
                  "item": "i13", "type": "click", "timestamp": 5_000}])
    rules = parse_expression('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')
    answer = recommender(bundle, state).recommend(
        RecommendationRequest(user_id="u1", num_results=50, exclude_seen=False, rules=rules))
    ids = {s.item_id for s in answer.items}
    assert "i12" not in ids and "i13" in ids


@pytest.mark.parametrize(("raw", "reason"), [
    ({"op": "eq", "value": 1}, "required: the item field the condition tests"),
    ({"field": 1, "op": "eq", "value": 1}, "must be a string (an item field's name), not int"),
])
def test_a_field_that_is_not_a_name_says_why(raw, reason):
    with pytest.raises(FilterError) as err:
        parse_conditions([raw], set(ITEM))
    assert (err.value.field, err.value.reason) == ("filters[0].field", reason)
