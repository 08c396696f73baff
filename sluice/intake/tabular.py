"""Personalize-style CSV / Parquet files: pandera schemas, then rows as internal events.

The columns are Personalize's bulk-import datasets: interactions (USER_ID, ITEM_ID, TIMESTAMP;
EVENT_TYPE, EVENT_VALUE and the rest optional), items (ITEM_ID) and users (USER_ID). Time
columns follow the one timestamp rule of every entry point (`values.parse_timestamp`): epoch
seconds or milliseconds by value, fractions allowed, ISO-8601, or a Parquet timestamp column.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from sluice.intake.events import (
    EARLIEST_MS,
    EPOCH_SECONDS_BELOW,
    INT64_MAX,
    LATEST_MS,
    MAX_TYPE_LENGTH,
    TIMESTAMP_RULE,
    EventError,
    categories,
    impression_id,
    parse_event,
    parse_timestamp,
    schema_value,
)
from sluice.vocabulary import MAX_ID_LENGTH

INTERACTION_COLUMNS = ("USER_ID", "ITEM_ID", "TIMESTAMP")  # as Personalize requires them
# the type of an interaction from a file without EVENT_TYPE (Personalize makes it optional):
# weighed by `events.weights` like any other type (the shipped config gives it 1.0)
UNTYPED_EVENT_TYPE = "interaction"
_RESERVED = {
    "USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "EVENT_ID", "SESSION_ID",
    "RECOMMENDATION_ID", "TENANT", "IMPRESSION",
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
        "EVENT_TYPE": pa.Column(str, pa.Check.str_length(1, MAX_TYPE_LENGTH), coerce=True,
                                required=False),
        "EVENT_VALUE": pa.Column(float, nullable=True, coerce=True, required=False),
    },
    strict=False,
)
ITEMS = pa.DataFrameSchema({"ITEM_ID": _id}, strict=False)
USERS = pa.DataFrameSchema({"USER_ID": _id}, strict=False)


def detect_kind(columns: list[str]) -> str:
    """interactions (USER_ID and ITEM_ID), items (ITEM_ID) or users (USER_ID); ValueError
    naming the columns found when the file is none of them."""
    upper = {c.upper() for c in columns}
    if {"USER_ID", "ITEM_ID"} <= upper:
        missing = [c for c in INTERACTION_COLUMNS if c not in upper]
        if missing:
            raise ValueError(f"missing columns: an interactions file (USER_ID and ITEM_ID) "
                             f"needs {', '.join(missing)} too; found {_shown(columns)}")
        return "interactions"
    if "ITEM_ID" in upper:
        return "items"
    if "USER_ID" in upper:
        return "users"
    raise ValueError(
        f"unrecognised columns: found {_shown(columns)}; an interactions file needs USER_ID, "
        "ITEM_ID, TIMESTAMP (EVENT_TYPE, EVENT_VALUE optional), an items file ITEM_ID, a "
        "users file USER_ID"
    )


def _unique_columns(columns: list[Any]) -> None:
    """Column names are read in any case: two that differ only so are one column twice."""
    seen: dict[str, str] = {}
    for column in columns:
        key = str(column).strip().upper()
        if key in seen:
            raise ValueError(f"columns {seen[key]!r} and {str(column)!r} are the same column "
                             f"(names are read in any case): keep one")
        seen[key] = str(column)


def _shown(columns: list[str]) -> str:
    return ", ".join(str(c)[:40] for c in columns[:20]) + (", ..." if len(columns) > 20 else "")


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def validate(frame: pd.DataFrame) -> tuple[str, pd.DataFrame, dict[int, str]]:
    """Returns (kind, valid rows, {row index: reason}) for the rows pandera refuses."""
    kind = detect_kind([str(c).strip() for c in frame.columns])
    _unique_columns(list(frame.columns))
    frame = _whole_number_ids(
        frame.rename(columns={c: str(c).strip().upper() for c in frame.columns}))
    schema = {"interactions": INTERACTIONS, "items": ITEMS, "users": USERS}[kind]
    bad: dict[int, str] = {}
    if kind == "interactions":
        frame, bad = _with_epoch_timestamps(frame)
    bad = _list_ids(frame) | bad
    good = frame.drop(index=list(bad))
    for _ in range(len(schema.columns) + 1):  # a failed coercion hides that column's checks
        if good.empty:
            return kind, good, bad  # every row refused, each with its reason
        try:
            return kind, schema.validate(good, lazy=True), bad
        except pa.errors.SchemaErrors as exc:
            found = _failed_rows(exc.failure_cases)
            if not found.keys() - bad.keys():  # a failure no row can be blamed for
                raise ValueError(_column_failures(exc.failure_cases)) from None
            bad.update((row, reason) for row, reason in found.items() if row not in bad)
            good = frame.drop(index=list(bad))
    return kind, schema.validate(good), bad


def _column_failures(cases: pd.DataFrame) -> str:
    """What a file's columns break, when no row is to blame (e.g. a column of lists)."""
    failures = {_said(row) for row in cases.itertuples() if pd.isna(row.index)}
    return "; ".join(sorted(failures)) or "the file does not fit its dataset's schema"


_ID_COLUMNS = ("USER_ID", "ITEM_ID", "SESSION_ID", "EVENT_ID", "RECOMMENDATION_ID")


def _whole_number_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """An id column of floats holding whole numbers (pandas writes an integer column with a
    gap so, e.g. to Parquet) as those integers: user 196 is "196", never "196.0"."""
    for name in _ID_COLUMNS:
        column = frame.get(name)
        if column is None or not pd.api.types.is_float_dtype(column):
            continue
        known = column.dropna()
        if (known == known.round()).all() and (known.abs() < 2**53).all():
            frame = frame.assign(**{name: column.astype("Int64").astype(object).where(
                column.notna(), None).map(lambda v: None if v is None else str(v))})
    return frame


def _list_ids(frame: pd.DataFrame) -> dict[int, str]:
    """Rows whose id is a list (a Parquet list column): refused, not written as "['a']"."""
    bad: dict[int, str] = {}
    for name in _ID_COLUMNS:
        column = frame.get(name)
        if column is not None and column.dtype == object:
            for index, value in column.items():
                if isinstance(value, list | tuple | np.ndarray | dict):
                    bad.setdefault(int(index), f"{name}: expected a string, got "
                                               f"{type(value).__name__}")
    return bad


def _with_epoch_timestamps(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """TIMESTAMP as integers the timestamp rule reads by value: an integer stays as written
    (so a row's content id does not change), anything else (a fraction, ISO-8601 text, a
    Parquet timestamp) becomes its epoch milliseconds; rows it cannot read, with the reason."""
    column = frame["TIMESTAMP"]
    bad: dict[int, str] = {}
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)  # naive means UTC
        missing = column.isna()
        out = column.astype("datetime64[ms]").astype("int64").where(~missing, 0)
        bad = {int(i): "TIMESTAMP: required" for i in column.index[missing]}
        return frame.assign(TIMESTAMP=out), bad
    numbers = pd.to_numeric(column, errors="coerce")
    if (numbers == numbers.round()).all() and _plausible_epoch(numbers).all():
        return frame.assign(TIMESTAMP=numbers.astype("int64")), bad  # the common case
    values: list[int] = []
    for index, given, number in zip(column.index, column.tolist(), numbers.tolist(),
                                    strict=True):
        try:
            values.append(_epoch_integer(given, number))
        except EventError as exc:
            bad[int(index)] = str(exc)
            values.append(0)
    return frame.assign(TIMESTAMP=pd.Series(values, index=column.index, dtype="int64")), bad


def _epoch_integer(given: Any, number: float) -> int:
    """One TIMESTAMP cell: `number` is its numeric reading (NaN when it is not a number)."""
    if isinstance(given, pd.Timestamp | np.datetime64):
        return parse_timestamp(pd.Timestamp(given).isoformat(), "TIMESTAMP")
    if number != number:  # NaN: empty, or text to read as ISO-8601
        if _given(given) is None:
            raise EventError("TIMESTAMP", f"required: {TIMESTAMP_RULE}")
        return parse_timestamp(given if isinstance(given, str) else str(given), "TIMESTAMP")
    if float(number).is_integer() and abs(number) <= INT64_MAX // 2:
        parse_timestamp(int(number), "TIMESTAMP")  # refused here, naming the rule, or kept
        return int(number)
    return parse_timestamp(float(number), "TIMESTAMP")  # a fraction: whole milliseconds


def _failed_rows(cases: pd.DataFrame) -> dict[int, str]:
    bad: dict[int, str] = {}
    for row in cases.itertuples():
        if not pd.isna(row.index):
            bad.setdefault(int(row.index), _said(row))
    return bad


def _said(row: Any) -> str:
    """A pandera failure in words: `USER_ID: required (the cell is empty)`, not its check's
    name (`not_nullable (got nan)`)."""
    check, got = str(row.check), f"(got {row.failure_case!r:.60})"
    if check == "not_nullable":
        return f"{row.column}: required (the cell is empty)"
    if found := re.fullmatch(r"str_length\((\d+), (\d+)\)", check):
        return f"{row.column}: must be {found[1]} to {found[2]} characters {got}"
    if check.startswith("coerce_dtype('float") or check.startswith("coerce_dtype('int"):
        return f"{row.column}: must be a number {got}"
    return f"{row.column}: {check} {got}"


_BOOLEAN_TEXT = ("true", "false")


def boolean_columns(frame: pd.DataFrame) -> frozenset[str]:
    """The columns (upper case, as `validate` names them) of a file read as text (a CSV)
    whose every non-empty cell is true or false in any case: Personalize declares such fields
    boolean in its schema, and a CSV cell cannot say so. An empty cell is no value; a column
    with any other value (or none) stays text, cell for cell."""
    found = set()
    for column in frame.columns:
        name = str(column).strip().upper()
        cells = frame[column].dropna()
        if name in _RESERVED or not len(cells) or not (
                pd.api.types.is_string_dtype(cells) and cells.map(type).eq(str).all()):
            continue
        if cells.str.lower().isin(_BOOLEAN_TEXT).all():
            found.add(name)
    return frozenset(found)


def _fields(row: dict[str, Any], booleans: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _RESERVED or value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        if key in booleans and isinstance(value, str):
            value = value.lower() == "true"
        elif isinstance(value, np.ndarray | list | tuple):  # a Parquet list column
            value = [v.item() if hasattr(v, "item") else v for v in value]
        else:
            value = schema_value(value)  # `a|b`: Personalize's categorical lists
        out[_snake(key)] = value.item() if hasattr(value, "item") else value
    return out


def row_to_event(kind: str, row: dict[str, Any], default_tenant: str,
                 booleans: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One validated row as a raw (Metarank-shaped) event; ids are content hashes when absent
    (of the row as read, so they do not depend on `booleans`: `boolean_columns`' names)."""
    tenant = _given(row.get("TENANT")) or default_tenant
    if kind == "interactions":
        event: dict[str, Any] = {
            "event": "interaction",
            "timestamp": int(row["TIMESTAMP"]),
            "user": row["USER_ID"],
            "item": row["ITEM_ID"],
            "type": _given(row.get("EVENT_TYPE")) or UNTYPED_EVENT_TYPE,
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
    event["fields"] = _fields(row, booleans)
    event["tenant"] = tenant
    given = row.get("EVENT_ID")
    if given and not pd.isna(given):
        event["id"] = str(given)
    else:
        digest = hashlib.sha1(repr(sorted(row.items())).encode(), usedforsecurity=False)
        event["id"] = f"{kind[:-1]}-{digest.hexdigest()[:20]}"
    return event


def row_to_events(kind: str, row: dict[str, Any], default_tenant: str,
                  booleans: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The row's event, after the ranking event of its IMPRESSION (Personalize's reserved
    column: the item ids shown, `a|b|c`), as PutEvents turns an event's `impression` into one:
    id `<event id>:impression`, named by the interaction unless RECOMMENDATION_ID names one;
    then the ranking records the impression of that list (its `ranking`)."""
    event = row_to_event(kind, row, default_tenant, booleans)
    shown = _given(row.get("IMPRESSION")) if kind == "interactions" else None
    if shown is None:
        return [event]
    ranking = {"event": "ranking", "id": impression_id(event["id"]),
               "timestamp": event["timestamp"], "tenant": event["tenant"],
               "user": event["user"], "items": [{"id": i} for i in categories(str(shown))]}
    if "session" in event:
        ranking["session"] = event["session"]
    if "ranking" in event:  # RECOMMENDATION_ID: the list whose items IMPRESSION lists
        ranking["ranking"] = event["ranking"]
    event.setdefault("ranking", ranking["id"])
    for one in (ranking, event):  # both or neither: a refusal quarantines the row whole
        parse_event(one, default_tenant)
    return [ranking, event]


def _given(value: Any) -> Any:
    """None for an empty cell (None, NaN, ''), else the value."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or value == "":
        return None
    return value


def _row_time(row: dict[str, Any]) -> int:
    """A catalog row's time: CREATION_TIMESTAMP, else TIMESTAMP, by the timestamp rule."""
    field = "CREATION_TIMESTAMP" if _given(row.get("CREATION_TIMESTAMP")) is not None \
        else "TIMESTAMP"
    value = _given(row.get(field))
    if value is None:
        return CATALOG_EPOCH_MS  # undated catalog rows sort before every interaction
    if isinstance(value, pd.Timestamp | np.datetime64):
        value = pd.Timestamp(value).isoformat()  # a Parquet timestamp column
    elif hasattr(value, "item"):
        value = value.item()  # a numpy number from Parquet
    return parse_timestamp(value, field)
