"""Which item fields the attribute index reads, and the one line that says so.

`attributes.fields`, when set, is authoritative: exactly those fields. Otherwise the fields of
`events.item_fields` at 1.0, when the tenant's catalog carries any of them. When it carries
none (a catalog loaded from its own files, e.g. MovieLens' `GENRES`, `RELEASE_YEAR`), the
catalog's own fields are chosen: a categorical field (strings, or lists of strings such as
Personalize's `a|b`) at 1.0 when its values are shared (at least two items per value on
average: not an id, not a title), not free text and not a single value; a numeric field at
0.5 (the index bins numbers by quantile). Ids, times and booleans are never chosen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CATEGORICAL_WEIGHT = 1.0
NUMERIC_WEIGHT = 0.5  # a quantile bin is a weaker likeness than a shared category
MAX_TEXT_WORDS = 3.0  # strings of more words than this on average are text, not categories
NOTE_TAG = "attributes.note"
MAX_NOTE = 2000  # characters of the note tag (MLflow's limit is 5000)
MAX_PARAM = 500  # characters of an MLflow param (its limit is 6000)
_SKIPPED_NAME = re.compile(r"(^|_)(id|ids|uuid|guid|url|uri|key|timestamp|time|date|at)$")


@dataclass
class FieldChoice:
    """The field weights for the index, where they came from, and what to tell the user."""

    weights: dict[str, float]
    source: str  # "attributes.fields" | "events.item_fields" | "catalog" | "none"
    line: str | None = None  # one log line when the choice was not simply as configured
    described: list[str] = field(default_factory=list)  # "genres (19 values)", ...

    def tags(self) -> dict[str, str]:
        """The MLflow tag `attributes.note`: the line, when there is one (explain shows it)."""
        return {NOTE_TAG: self.line[:MAX_NOTE]} if self.line else {}

    def params(self) -> dict[str, str]:
        """MLflow params: the fields read (`name:weight`, ...) and where they came from."""
        named = ",".join(f"{k}:{v:g}" for k, v in self.weights.items())
        return {"attributes.fields": named[:MAX_PARAM] or "-",
                "attributes.fields_source": self.source}


@dataclass
class _Profile:
    items: int = 0
    strings: int = 0
    numbers: int = 0
    other: int = 0  # bools, dicts, lists of non-strings
    words: int = 0
    occurrences: int = 0  # values counted per item (a list counts each element)
    values: set[str] = field(default_factory=set)
    numeric: set[float] = field(default_factory=set)

    def add(self, value: Any) -> None:
        self.items += 1
        if isinstance(value, bool) or isinstance(value, dict):
            self.other += 1
        elif isinstance(value, int | float):
            self.numbers += 1
            self.numeric.add(float(value))
        elif isinstance(value, str) or (isinstance(value, list)
                                         and all(isinstance(v, str) for v in value)):
            self.strings += 1
            for v in value if isinstance(value, list) else [value]:
                self.occurrences += 1
                self.words += len(v.split())
                self.values.add(v.strip().lower())
        else:
            self.other += 1


def choose(configured: dict[str, float], item_fields: dict[str, str],
           catalog: dict[str, dict[str, Any]], tenant: str) -> FieldChoice:
    """The fields to index for this tenant (see the module's docstring)."""
    if configured:
        return FieldChoice(dict(configured), "attributes.fields")
    if any(name in fields for fields in catalog.values() for name in item_fields):
        return FieldChoice(dict.fromkeys(item_fields, 1.0), "events.item_fields")
    present = any(catalog.values())
    missing = (f"none of {', '.join(item_fields)} (events.item_fields)" if item_fields
               else "no events.item_fields and no attributes.fields set")
    weights, described, left_out = catalog_fields(catalog)
    if not weights:
        why = ("its catalog has no item fields (send items with fields)" if not present else
               "none of its fields is categorical or numeric"
               + (f" ({', '.join(left_out)})" if left_out else ""))
        return FieldChoice({}, "none", (
            f"attributes: no attribute index for tenant {tenant}: {missing} in its catalog, "
            f"and {why}; similar_attributes answers will come from the random tier only — set "
            "attributes.fields (and attributes.text_fields for words of text) to choose"))
    skipped = f"; left out {', '.join(left_out)}" if left_out else ""
    return FieldChoice(weights, "catalog", (
        f"attributes: {missing} in the catalog of tenant {tenant}; using {', '.join(described)}"
        f"{skipped} — set attributes.fields to choose"), described)


def catalog_fields(catalog: dict[str, dict[str, Any]]
                   ) -> tuple[dict[str, float], list[str], list[str]]:
    """The catalog's own usable fields as weights, each described, and the fields left out
    with the reason (`title (near-unique)`)."""
    profiles: dict[str, _Profile] = {}
    for fields in catalog.values():
        for name, value in fields.items():
            if value is not None:
                profiles.setdefault(name, _Profile()).add(value)
    weights: dict[str, float] = {}
    described: list[str] = []
    left_out: list[str] = []
    for name in sorted(profiles):
        kind, note = _judge(name, profiles[name])
        if kind is None:
            left_out.append(f"{name} ({note})")
            continue
        weights[name] = CATEGORICAL_WEIGHT if kind == "categorical" else NUMERIC_WEIGHT
        described.append(f"{name} ({note})")
    return weights, described, left_out


def _judge(name: str, p: _Profile) -> tuple[str | None, str]:
    """("categorical" | "numeric" | None, a note saying why) for one field."""
    if _SKIPPED_NAME.search(name):
        return None, "an id or a time by its name"
    if p.strings >= p.numbers and p.strings > p.other:
        distinct = len(p.values)
        if p.words > MAX_TEXT_WORDS * p.occurrences:
            return None, "text: name it in attributes.text_fields"
        if distinct < 2:
            return None, "one value"
        if p.occurrences < 2 * distinct:
            return None, "near-unique"
        return "categorical", f"{distinct:,} values"
    if p.numbers > p.other and len(p.numeric) >= 2:
        return "numeric", f"numbers, weight {NUMERIC_WEIGHT:g}"
    return None, "one value" if p.numbers > p.other else "not strings or numbers"
