"""Personalize-style CSV / Parquet files: pandera schemas, then rows as internal events."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pandas as pd
import pandera.pandas as pa

from sluice.intake.events import (
    EARLIEST_MS,
    EPOCH_SECONDS_BELOW,
    LATEST_MS,
    TIMESTAMP_RULE,
    epoch_ms,
    numeric_text,
)
from sluice.vocabulary import MAX_ID_LENGTH

INTERACTION_COLUMNS = ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE")
_RESERVED = {
    "USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "EVENT_ID", "SESSION_ID",
    "RECOMMENDATION_ID", "TENANT",
}

CATALOG_EPOCH_MS = EARLIEST_MS  # the earliest accepted instant: undated rows sort first


def _plausible_epoch(values: pd.Series) -> pd.Series:
    """The timestamp rule of parse_timestamp, by value, over a whole column at once."""
    ms = values.where(values >= EPOCH_SECONDS_BELOW, values * 1000)
    return (values >= 0) & (ms >= EARLIEST_MS) & (ms < LATEST_MS)


_TIMESTAMP_CHECK = pa.Check(_plausible_epoch, name=TIMESTAMP_RULE)

_id = pa.Column(str, pa.Check.str_length(1, MAX_ID_LENGTH), nullable=False, coerce=True)

INTERACTIONS = pa.DataFrameSchema(
    {
        "USER_ID": _id,
        "ITEM_ID": _id,
        "TIMESTAMP": pa.Column("int64", _TIMESTAMP_CHECK, coerce=True),
        "EVENT_TYPE": pa.Column(str, pa.Check.str_length(1, 64), coerce=True),
        "EVENT_VALUE": pa.Column(float, nullable=True, coerce=True, required=False),
    },
    strict=False,
)
ITEMS = pa.DataFrameSchema({"ITEM_ID": _id}, strict=False)
USERS = pa.DataFrameSchema({"USER_ID": _id}, strict=False)


def detect_kind(columns: list[str]) -> str:
    upper = {c.upper() for c in columns}
    if set(INTERACTION_COLUMNS) <= upper:
        return "interactions"
    if "ITEM_ID" in upper:
        return "items"
    if "USER_ID" in upper:
        return "users"
    raise ValueError(
        "unrecognised columns: an interactions file needs USER_ID, ITEM_ID, TIMESTAMP, "
        "EVENT_TYPE; an items file ITEM_ID; a users file USER_ID"
    )


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def validate(frame: pd.DataFrame) -> tuple[str, pd.DataFrame, dict[int, str]]:
    """Returns (kind, valid rows, {row index: reason}) for the rows pandera refuses."""
    frame = frame.rename(columns={c: c.strip().upper() for c in frame.columns})
    kind = detect_kind(list(frame.columns))
    schema = {"interactions": INTERACTIONS, "items": ITEMS, "users": USERS}[kind]
    bad: dict[int, str] = {}
    good = frame
    for _ in range(len(schema.columns) + 1):  # a failed coercion hides that column's checks
        try:
            return kind, schema.validate(good, lazy=True), bad
        except pa.errors.SchemaErrors as exc:
            found = _failed_rows(exc.failure_cases)
            if not found.keys() - bad.keys():
                raise  # a failure no row can be blamed for (a missing column)
            bad.update((row, reason) for row, reason in found.items() if row not in bad)
            good = frame.drop(index=list(bad))
    return kind, schema.validate(good), bad


def _failed_rows(cases: pd.DataFrame) -> dict[int, str]:
    bad: dict[int, str] = {}
    for row in cases.itertuples():
        if not pd.isna(row.index):
            reason = f"{row.column}: {row.check} (got {row.failure_case!r:.60})"
            bad.setdefault(int(row.index), reason)
    return bad


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _RESERVED or value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        if isinstance(value, str) and "|" in value:
            value = [v for v in value.split("|") if v]  # Personalize categorical lists
        else:
            value = numeric_text(value)
        out[_snake(key)] = value.item() if hasattr(value, "item") else value
    return out


def row_to_event(kind: str, row: dict[str, Any], default_tenant: str) -> dict[str, Any]:
    """One validated row as a raw (Metarank-shaped) event; ids are content hashes when absent."""
    tenant = _given(row.get("TENANT")) or default_tenant
    if kind == "interactions":
        event: dict[str, Any] = {
            "event": "interaction",
            "timestamp": int(row["TIMESTAMP"]),
            "user": row["USER_ID"],
            "item": row["ITEM_ID"],
            "type": row["EVENT_TYPE"],
        }
        if row.get("SESSION_ID") and not pd.isna(row["SESSION_ID"]):
            event["session"] = str(row["SESSION_ID"])
        if row.get("EVENT_VALUE") is not None and not pd.isna(row["EVENT_VALUE"]):
            event["value"] = float(row["EVENT_VALUE"])
        if row.get("RECOMMENDATION_ID") and not pd.isna(row["RECOMMENDATION_ID"]):
            event["ranking"] = str(row["RECOMMENDATION_ID"])
    elif kind == "items":
        event = {"event": "item", "item": row["ITEM_ID"], "timestamp": _row_time(row)}
    else:
        event = {"event": "user", "user": row["USER_ID"], "timestamp": _row_time(row)}
    event["fields"] = _fields(row)
    event["tenant"] = tenant
    given = row.get("EVENT_ID")
    if given and not pd.isna(given):
        event["id"] = str(given)
    else:
        digest = hashlib.sha1(repr(sorted(row.items())).encode(), usedforsecurity=False)
        event["id"] = f"{kind[:-1]}-{digest.hexdigest()[:20]}"
    return event


def _given(value: Any) -> Any:
    """None for an empty cell (None, NaN, ''), else the value."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or value == "":
        return None
    return value


def _row_time(row: dict[str, Any]) -> int:
    value = _given(row.get("CREATION_TIMESTAMP"))
    value = _given(row.get("TIMESTAMP")) if value is None else value
    if value is None:
        return CATALOG_EPOCH_MS  # undated catalog rows sort before every interaction
    return epoch_ms(int(value), "TIMESTAMP")
