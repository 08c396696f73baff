"""A model's catalog (item id -> its fields) stored by column, so that serving maps it.

Read into a dict of dicts, a catalog of a million items with five fields cost each serving
worker about 830 MB and six seconds at every model load (one Python object per id, field and
value). `ItemFields` keeps it as arrays instead, written by training beside `catalog.jsonl`
(`catalog.npz`) and mapped read-only at load, so a server's workers share one copy:

- `ids` (the catalog's item ids) and, for large catalogs, `order` (sluice.ids' sorted map);
- `names`: the field names;
- `codes` (int32, one row per item, one column per field): each item's value of each field as
  the number of a distinct value, -1 where the item lacks the field;
- `values` (`blob` once loaded) and `offsets`: the distinct values as JSON text, one after
  another (UTF-8), value `c` being `values[offsets[c]:offsets[c + 1]]`.

An item's fields are decoded when asked (`get`); a filter's mask over many items evaluates each
condition once per distinct value of its field (`mask`), since a condition reads one field.
`ItemFields` is a read-only mapping: code that built the catalog as a dict keeps passing one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sluice import npz
from sluice.filters import Rule
from sluice.ids import id_map, stored_order

MISSING = -1  # the code of a field an item does not carry
MAPPED = ("ids", "order", "codes", "values", "offsets")
_SCALARS = (str, int, float, bool, type(None))
_UNKNOWN = object()
_DECODED_KEPT = 65_536  # distinct scalar values kept decoded (lists and dicts: decoded each time)


def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class ItemFields(Mapping[str, dict[str, Any]]):
    """Item id -> {field: value}, held by column (see the module docstring)."""

    def __init__(self, ids: np.ndarray, names: list[str], codes: np.ndarray, blob: np.ndarray,
                 offsets: np.ndarray, order: np.ndarray | None = None):
        self.ids, self.names, self.codes = ids, names, codes
        self.blob, self.offsets = blob, offsets
        self.row = id_map(ids, order)
        self._decoded: dict[int, Any] = {}

    @classmethod
    def of(cls, catalog: Mapping[str, dict[str, Any]]) -> ItemFields:
        """The columns of a catalog built as a dict (training, tests), or the catalog itself."""
        if isinstance(catalog, ItemFields):
            return catalog
        names = sorted({name for fields in catalog.values() for name in fields})
        column = {name: i for i, name in enumerate(names)}
        codes = np.full((len(catalog), len(names)), MISSING, dtype=np.int32)
        numbers: dict[str, int] = {}
        for row, fields in enumerate(catalog.values()):
            for name, value in fields.items():
                codes[row, column[name]] = numbers.setdefault(_encode(value), len(numbers))
        encoded = [text.encode() for text in numbers]  # in code order (dicts keep insertion)
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        values = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        ids = np.array(list(catalog), dtype=str) if catalog else np.array([], dtype="<U1")
        return cls(ids, names, codes, values, offsets)

    @classmethod
    def load(cls, path: Path) -> ItemFields:
        a = npz.load(path, MAPPED)
        return cls(a["ids"], a["names"].tolist(), a["codes"], a["values"], a["offsets"],
                   a.get("order"))

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "ids": self.ids.astype(str), "names": np.array(self.names, dtype=str),
            "codes": self.codes, "values": self.blob, "offsets": self.offsets}
        order = stored_order(self.ids)
        if order is not None:
            arrays["order"] = order
        npz.save(path, arrays)

    def problem(self) -> str | None:
        """What makes the columns inconsistent (a damaged or foreign file), or None."""
        if self.ids.ndim != 1 or self.codes.ndim != 2:
            return "catalog ids or codes have the wrong number of dimensions"
        if self.codes.shape != (len(self.ids), len(self.names)):
            return (f"catalog codes are {self.codes.shape} for {len(self.names)} fields and "
                    f"{len(self.ids)} items")
        if not np.issubdtype(self.codes.dtype, np.integer) or self.blob.dtype != np.uint8:
            return "catalog codes are not integers or its values not bytes"
        distinct = len(self.offsets) - 1
        if self.codes.size and (self.codes.min() < MISSING or self.codes.max() >= distinct):
            return f"catalog codes point outside the {distinct} distinct values"
        if (distinct < 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.blob)
                or bool((np.diff(self.offsets) < 0).any())):
            return "catalog value offsets do not cut its value bytes"
        return self.row.problem()

    # the mapping
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids.tolist())

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.row

    def __getitem__(self, item_id: str) -> dict[str, Any]:
        row = self.row.get(item_id)
        if row is None:
            raise KeyError(item_id)
        return self.fields_at(row)

    def fields_at(self, row: int) -> dict[str, Any]:
        decoded, fields = self._decoded, {}
        for name, code in zip(self.names, self.codes[row].tolist(), strict=True):
            if code != MISSING:
                value = decoded.get(code, _UNKNOWN)
                if value is _UNKNOWN:
                    value = self.value(code)
                elif value.__class__ is list:
                    value = list(value)  # the caller's own list (of scalars: see `value`)
                fields[name] = value
        return fields

    def value(self, code: int) -> Any:
        """Distinct value `code`, decoded. Scalars, and lists of scalars, are kept decoded
        (they repeat across items; a kept list is handed out as a copy); others decoded each
        time, so that no caller can change another's."""
        if code in self._decoded:
            kept = self._decoded[code]
            return list(kept) if kept.__class__ is list else kept
        value = json.loads(self.blob[self.offsets[code]:self.offsets[code + 1]].tobytes())
        if len(self._decoded) < _DECODED_KEPT and (
                isinstance(value, _SCALARS) or (isinstance(value, list) and all(
                    isinstance(v, _SCALARS) for v in value))):
            self._decoded[code] = list(value) if isinstance(value, list) else value
        return value

    def mask(self, rules: list[Rule], item_ids: np.ndarray) -> np.ndarray:
        """Which of `item_ids` pass every item-field rule (`sluice.filters.allowed` with no
        interactions), each condition evaluated once per distinct value of its field."""
        rows = self.row.rows(item_ids.tolist()) if len(item_ids) else np.zeros(0, np.int64)
        known = rows >= 0
        column = {name: i for i, name in enumerate(self.names)}
        out = np.ones(len(item_ids), dtype=bool)
        for rule in rules:
            hit = np.ones(len(item_ids), dtype=bool)
            for condition in rule.conditions:
                if rule.source != "items" or condition.field not in column:
                    hit &= condition.matches({})  # interactions: none; or no item has it
                    continue
                codes = np.full(len(item_ids), MISSING, dtype=np.int64)
                codes[known] = self.codes[rows[known], column[condition.field]]
                distinct, inverse = np.unique(codes, return_inverse=True)
                passes = np.fromiter(
                    (condition.matches({} if code == MISSING else
                                       {condition.field: self.value(code)})
                     for code in distinct.tolist()), dtype=bool, count=len(distinct))
                hit &= passes[inverse.reshape(-1)]
            out &= hit if rule.action == "include" else ~hit
        return out
