"""The DuckDB warehouse: raw tables that ingest writes and dbt reads."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from sluice import formats

RAW_DDL = """
create schema if not exists raw;

create table if not exists raw.events (
    event_id varchar not null,          -- the event's own id (Metarank id, Personalize eventId)
    tenant varchar not null,            -- dataset group; 'default' unless given
    event_type varchar not null,        -- item | user | ranking | interaction | recommendation
    event_at timestamp not null,        -- UTC
    user_id varchar,                    -- user events, rankings, interactions, recommendations
    session_id varchar,                 -- rankings, interactions, recommendations
    item_id varchar,                    -- item events and interactions
    interaction_type varchar,           -- interactions only: click, purchase, ...
    ranking_id varchar,                 -- interactions: id of the ranking/recommendation shown
    event_value double,                 -- interactions: optional value (Personalize eventValue)
    fields varchar,                     -- JSON object {name: value}
    items varchar,                      -- JSON array: ranking/recommendation items
    source_file varchar not null,
    loaded_at timestamp not null,
    primary key (tenant, event_id)
);

create table if not exists raw.quarantine (
    source_file varchar not null,
    line_number bigint,                 -- 1-based line or row; null when the whole file failed
    record varchar,
    reason varchar not null,
    quarantined_at timestamp not null
);

create table if not exists raw.manifest (
    path varchar primary key,
    size_bytes bigint not null,         -- bytes consumed (a growing log segment: the prefix loaded)
    checksum varchar not null,          -- sha256 of the consumed bytes
    rows_loaded bigint not null,
    rows_quarantined bigint not null,
    duplicates_skipped bigint not null,
    loaded_at timestamp not null
);

create table if not exists raw.sluice_meta (
    key varchar primary key,            -- format_version: see sluice/formats.py
    value varchar not null
);
"""


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file, creating the raw schema when writable."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        found = format_version(con)
        if found is not None:
            formats.check("warehouse", found, path)
        if not read_only:
            con.execute(RAW_DDL)
            if found is None:  # a new warehouse, or one from before versioning (also 1)
                set_format_version(con, 1 if _has_raw_events(con) else
                                   formats.CURRENT["warehouse"])
    except BaseException:
        con.close()
        raise
    return con


def format_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The warehouse's format version; None when it has no `raw.sluice_meta` yet."""
    try:
        # fetchall: a fetchone leaves the result open, and DuckDB 2 then refuses the
        # connection's next query (`connection has an unfinished result`)
        rows = con.execute(
            "select value from raw.sluice_meta where key = 'format_version'").fetchall()
    except duckdb.CatalogException:
        return None
    return int(rows[0][0]) if rows else None


def set_format_version(con: duckdb.DuckDBPyConnection, version: int) -> None:
    con.execute("insert or replace into raw.sluice_meta values ('format_version', ?)",
                [str(version)])


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The number a `select count(*) ...` returns (it always returns one row).

    fetchall, not fetchone: a result left unfinished blocks the connection's next query."""
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


def _has_raw_events(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(count(con, "select count(*) from raw.events"))


def checkpoint(path: Path | str) -> None:
    """Folds the write-ahead log into the file, so the file alone is the whole database."""
    con = duckdb.connect(str(path))
    try:
        con.execute("checkpoint")
    finally:
        con.close()


def set_aside_wal(path: Path, say: Callable[[str], None]) -> Path | None:
    """A write-ahead log left without its database (the file was lost or deleted, the WAL
    was not) would be replayed onto whatever file takes the name, and DuckDB then refuses to
    open it ("WAL does not match database file"). Moved aside before a new file is put in
    place; returns where it went."""
    wal = Path(f"{path}.wal")
    if Path(path).exists() or not wal.exists():
        return None
    kept = wal.with_name(f"{wal.name}.orphaned-{int(time.time())}")
    os.replace(wal, kept)
    say(f"{wal.name} had no {Path(path).name} beside it: set aside as {kept.name}")
    return kept
