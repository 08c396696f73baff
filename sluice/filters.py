"""Filters over item fields and the user's interactions, parsed into a safe structure.

Two spellings, one structure:
- the native request form, a list of conditions that must all hold:
  `{"field": "color", "op": "eq", "value": "red"}` with op in OPS;
- Personalize filter expressions, `|`-separated, with `$PLACEHOLDERS` from filterValues:
  `EXCLUDE ItemID WHERE Items.GENRE IN ($GENRES) | INCLUDE ItemID WHERE Items.PRICE < 20`,
  `EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")`.
Nothing is ever turned into SQL or evaluated as code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.errors import InputError

OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "is")
MAX_CONDITIONS = 32
MAX_VALUES = 100


class FilterError(InputError):
    """A filter (a condition or a Personalize expression) that cannot be read or applied."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any

    def key(self) -> tuple:
        value = tuple(self.value) if isinstance(self.value, list) else self.value
        return (self.field, self.op, value)

    def matches(self, fields: dict[str, Any]) -> bool:
        actual = fields.get(self.field)
        op, want = self.op, self.value
        if op == "is":
            return (actual is None) if want is None else _same(actual, want)
        if actual is None:
            return op in ("ne", "not_in")
        values = actual if isinstance(actual, list) else [actual]
        if op == "eq":
            return any(_same(v, want) for v in values)
        if op == "ne":
            return not any(_same(v, want) for v in values)
        if op == "in":
            return any(_same(v, w) for v in values for w in want)
        if op == "not_in":
            return not any(_same(v, w) for v in values for w in want)
        if op == "contains":
            if isinstance(actual, list):
                return want in actual
            return isinstance(actual, str) and str(want) in actual
        try:
            number = float(actual)
        except (TypeError, ValueError):
            return False
        return {"gt": number > want, "gte": number >= want, "lt": number < want,
                "lte": number <= want}[op]


def _same(actual: Any, want: Any) -> bool:
    """Equal values; a boolean also equals its name as text in any case ("True", "true"):
    Personalize's guide stores booleans as the strings "True" and "False" (its filters cannot
    read boolean fields), a CSV column of them loads as booleans, a JSON client sends `true`,
    and one catalog may hold the same field in each form."""
    if isinstance(actual, bool) and isinstance(want, str):
        return want.lower() == ("true" if actual else "false")
    if isinstance(want, bool) and isinstance(actual, str):
        return actual.lower() == ("true" if want else "false")
    return bool(actual == want)


@dataclass(frozen=True)
class Rule:
    """Keep (include) or drop (exclude) items matching all conditions, over one source."""

    action: str               # include | exclude
    source: str               # items | interactions
    conditions: tuple[Condition, ...] = field(default_factory=tuple)

    def key(self) -> tuple:
        return (self.action, self.source, tuple(c.key() for c in self.conditions))


def _condition(raw: Any, where: str, known_fields: set[str] | None) -> Condition:
    if not isinstance(raw, dict):
        raise FilterError(where, "expected {field, op, value}")
    for key in raw:  # a misspelt `opp` or `valeu` would otherwise filter on eq or null
        if key not in ("field", "op", "value"):
            raise FilterError(f"{where}.{str(key):.64}", "not a member of a condition (field, "
                                                         "op, value): a misspelt name?")
    name, op = raw.get("field"), raw.get("op", "eq")
    if name is None or name == "":
        raise FilterError(f"{where}.field", "required: the item field the condition tests")
    if not isinstance(name, str):
        raise FilterError(f"{where}.field", f"must be a string (an item field's name), not "
                                            f"{type(name).__name__}")
    if known_fields is not None and name not in known_fields:
        raise FilterError(f"{where}.field", f"unknown item field {name!r:.64}")
    if op not in OPS:
        raise FilterError(f"{where}.op", f"must be one of {', '.join(OPS)}")
    value = raw.get("value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_VALUES:
            raise FilterError(f"{where}.value", f"a list of 1 to {MAX_VALUES} values")
        if not all(isinstance(v, str | int | float | bool) for v in value):
            raise FilterError(f"{where}.value", "list values must be strings or numbers")
    elif op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FilterError(f"{where}.value", f"{op} needs a number")
    elif op == "is":
        if value is not None and not isinstance(value, bool):
            raise FilterError(f"{where}.value", "is takes true, false or null")
    elif not isinstance(value, str | int | float | bool):
        raise FilterError(f"{where}.value", f"{op} needs a string, number or bool")
    for number in value if isinstance(value, list) else [value]:
        _plain_number(number, f"{where}.value")
    return Condition(name, op, value)


def _plain_number(value: Any, where: str) -> Any:
    """Refuses NaN, Infinity and integers beyond 64 bits, which no stored field can equal."""
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(where, f"{value} is not a number: use a finite number")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise FilterError(where, "integers must fit in 64 bits")
    return value


def parse_conditions(raw: Any, known_fields: set[str] | None = None,
                     where: str = "filters") -> list[Rule]:
    """The native request form: all conditions must hold (one include rule)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_CONDITIONS:
        raise FilterError(where, f"a list of at most {MAX_CONDITIONS} conditions")
    conditions = tuple(_condition(c, f"{where}[{i}]", known_fields) for i, c in enumerate(raw))
    return [Rule("include", "items", conditions)] if conditions else []


_EXPR = re.compile(
    r"^\s*(?P<action>INCLUDE|EXCLUDE)\s+ItemID\s+WHERE\s+(?P<body>.+?)\s*$", re.I | re.S)
_COND = re.compile(
    r"^\s*(?P<source>Items|Interactions)\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?P<op>NOT\s+IN|IN|<=|>=|=|<|>)\s*(?P<value>.+?)\s*$", re.I | re.S)
_OP_MAP = {"in": "in", "not in": "not_in", "=": "eq", "<": "lt", ">": "gt", "<=": "lte",
           ">=": "gte"}


def parse_expression(expression: str, values: dict[str, str] | None = None,
                     known_fields: set[str] | None = None) -> list[Rule]:
    """A Personalize filter expression (with filterValues) as rules."""
    if not isinstance(expression, str) or not expression.strip() or len(expression) > 2500:
        raise FilterError("filterExpression", "a non-empty expression of at most 2500 chars")
    rules = []
    for n, part in enumerate(_split_top(expression, "|")):
        where = f"filterExpression[{n}]"
        match = _EXPR.match(part)
        if not match:
            raise FilterError(where, "expected INCLUDE|EXCLUDE ItemID WHERE <conditions>")
        conditions, sources = [], set()
        for text in re.split(r"\s+AND\s+", match.group("body"), flags=re.I):
            if re.search(r"\s+OR\s+", text, re.I):
                raise FilterError(where, "OR is not supported; use separate | expressions")
            cond = _COND.match(text)
            if not cond:
                raise FilterError(where, f"cannot read condition {text.strip()[:60]!r}")
            source = cond.group("source").lower()
            sources.add(source)
            name = cond.group("field").lower()
            if source == "interactions" and name != "event_type":
                raise FilterError(where, "only Interactions.EVENT_TYPE can be filtered on")
            if source == "items" and known_fields is not None and name not in known_fields:
                raise FilterError(where, f"unknown item field {cond.group('field')!r}")
            op = _OP_MAP[re.sub(r"\s+", " ", cond.group("op").lower())]
            value = _value(cond.group("value"), op, values or {}, where)
            conditions.append(Condition(name, op, value))
        if len(sources) > 1:
            raise FilterError(where, "an expression filters on Items or Interactions, not both")
        rules.append(Rule(match.group("action").lower(), sources.pop(), tuple(conditions)))
    return rules


def _split_top(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _literal(token: str, where: str) -> Any:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    try:
        number = float(token) if re.search(r"[.eE]", token) else int(token)
    except ValueError:
        raise FilterError(where, f"cannot read value {token[:40]!r}") from None
    return _plain_number(number, where)


def _value(text: str, op: str, values: dict[str, str], where: str) -> Any:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise FilterError(f"filterValues.{name}", "required by the filter expression")
        return values[name]

    named = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    if len(named) == 1:  # a value from the request: a wrong one is that filterValues entry's
        where = f"filterValues.{named.pop()}"
    text = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", fill, text.strip())
    if op in ("in", "not_in"):
        inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
        items = [_literal(t, where) for t in _split_top(inner, ",") if t.strip()]
        if not items or len(items) > MAX_VALUES:
            raise FilterError(where, f"IN takes 1 to {MAX_VALUES} values")
        return items
    value = _literal(text, where)
    if op in ("lt", "gt", "lte", "gte") and not isinstance(value, int | float):
        raise FilterError(where, f"{op} needs a number")
    return value


def allowed(rules: Iterable[Rule], fields: dict[str, Any], interacted_types: set[str]) -> bool:
    """Whether an item passes every rule (item fields; the user's event types on it)."""
    for rule in rules:
        if rule.source == "items":
            hit = all(c.matches(fields) for c in rule.conditions)
        else:
            hit = all(c.matches({"event_type": sorted(interacted_types)} if interacted_types
                                else {}) for c in rule.conditions)
        if hit != (rule.action == "include"):
            return False
    return True


class NamedFilters:
    """Personalize-style named filter expressions: config `filters:` plus run-time ones."""

    def __init__(self, configured: dict[str, str], store_path: Path):
        from sluice.store import JsonStore

        self._configured = configured
        self._store = JsonStore(store_path)

    def all(self) -> dict[str, str]:
        return {**self._store.read(), **self._configured}

    def get(self, name: str) -> str | None:
        return self.all().get(name)

    def create(self, name: str, expression: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
            raise FilterError("name", "1-63 letters, digits, '_', '.', '-'")
        if name in self.all():
            raise FilterError("name", f"a filter named {name!r} exists already")
        check_syntax(expression)
        self._store.put(name, expression)


def check_syntax(expression: str) -> None:
    """Parse with every $placeholder filled by a dummy value: syntax errors surface early."""
    names = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", expression or ""))
    parse_expression(expression, dict.fromkeys(names, "1"))
