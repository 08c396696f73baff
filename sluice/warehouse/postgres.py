"""The PostgreSQL warehouse (`warehouse.engine: postgres`): raw.* loaded with COPY, the dbt
models built there, the marts read from there, and the warehouse lock an advisory lock on the
server, so ingest, transform and train may run on different machines against one server.

The DSN comes from SLUICE_WAREHOUSE_DSN (`postgresql://user:password@host:5432/db` or
`host=... dbname=...`); only `uri()` (no password) is ever logged. psycopg2 comes with
dbt-postgres (the `postgres` extra).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sluice import formats
from sluice.warehouse.engine import LOCK_TIMEOUT, NEXT_STEP, MissingTable, Say, Warehouse
from sluice.warehouse.ingest_report import FileResult
from sluice.warehouse.loading import Loaded, RawWriter
from sluice.warehouse.locks import wait_for_lock

# the raw schema of sluice/warehouse/db.py in PostgreSQL's words (double -> double precision)
RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.events (
    event_id varchar not null, tenant varchar not null, event_type varchar not null,
    event_at timestamp not null, user_id varchar, session_id varchar, item_id varchar,
    interaction_type varchar, ranking_id varchar, event_value double precision,
    fields varchar, items varchar, source_file varchar not null, loaded_at timestamp not null,
    primary key (tenant, event_id)
);
create table if not exists raw.quarantine (
    source_file varchar not null, line_number bigint, record varchar, reason varchar not null,
    quarantined_at timestamp not null
);
create table if not exists raw.manifest (
    path varchar primary key, size_bytes bigint not null, checksum varchar not null,
    rows_loaded bigint not null, rows_quarantined bigint not null,
    duplicates_skipped bigint not null, loaded_at timestamp not null
);
create table if not exists raw.sluice_meta (key varchar primary key, value varchar not null);
"""
EVENT_COLUMNS = ("event_id, tenant, event_type, event_at, user_id, session_id, item_id, "
                 "interaction_type, ranking_id, event_value, fields, items")
_BATCH_SPEC = ("(event_id varchar, tenant varchar, event_type varchar, event_at timestamp, "
               "user_id varchar, session_id varchar, item_id varchar, interaction_type varchar, "
               "ranking_id varchar, event_value double precision, fields varchar, "
               "items varchar)")
# every Sluice process takes this one key; "sluice" in ASCII, then 'w' for warehouse
LOCK_KEY = int.from_bytes(b"sluice\x00w", "big")
# PostgreSQL type oids -> the arrow types DuckDB gives the same columns
_ARROW_TYPES = {16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(),
                700: pa.float64(), 701: pa.float64(), 1700: pa.float64(),
                1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
                25: pa.string(), 1043: pa.string(), 1082: pa.date32()}


def _placeholders(sql: str) -> str:
    """Queries are written with DuckDB's `?`; psycopg2 takes `%s` (and `%%` for a percent)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresWarehouse(Warehouse):
    engine = "postgres"

    def __init__(self, dsn: str) -> None:
        from psycopg2 import ProgrammingError  # type: ignore[import-untyped]
        from psycopg2.extensions import parse_dsn  # type: ignore[import-untyped]

        self.dsn = dsn
        try:
            self.parts = parse_dsn(dsn)
        except ProgrammingError:  # its message quotes the DSN, password and all
            raise ValueError(
                "SLUICE_WAREHOUSE_DSN is not a PostgreSQL DSN: write it as "
                "postgresql://USER:PASSWORD@HOST:PORT/DB or as key=value pairs") from None

    def connect(self) -> Any:
        import psycopg2  # comes with dbt-postgres, no stubs

        return psycopg2.connect(self.dsn)

    def lock(self, timeout: float = LOCK_TIMEOUT, say: Say = None) -> AbstractContextManager:
        return self._advisory_lock(timeout, say)

    @contextmanager
    def _advisory_lock(self, timeout: float, say: Say) -> Iterator[None]:
        """A session-level advisory lock on a connection of its own: the server releases it
        when the session ends, so a crashed holder never leaves it held."""
        con = self.connect()
        con.autocommit = True
        try:
            cursor = con.cursor()

            def try_once() -> bool:
                cursor.execute("select pg_try_advisory_lock(%s)", [LOCK_KEY])
                return bool(cursor.fetchone()[0])

            wait_for_lock(try_once, f"the advisory lock on {self.uri()}", timeout, 0.2, say)
            yield
        finally:
            con.close()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        import psycopg2.errors  # type: ignore[import-untyped]

        con = self.connect()
        try:
            with con.cursor() as cursor:
                yield cursor
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName) as exc:
            raise MissingTable(f"{str(exc).strip().splitlines()[0]}{NEXT_STEP}") from exc
        finally:
            con.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cursor:
            cursor.execute(_placeholders(sql), list(params))
            return cursor.fetchall()

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with self._cursor() as cursor:
            cursor.execute(_placeholders(sql), list(params))
            rows = cursor.fetchall()
            described = cursor.description
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(described)
        arrays = [_array(values, column.type_code)
                  for values, column in zip(columns, described, strict=True)]
        return pa.Table.from_arrays(arrays, names=[c.name for c in described])

    @contextmanager
    def writer(self) -> Iterator[RawWriter]:
        con = self.connect()
        try:
            yield PostgresWriter(con)
        finally:
            con.close()

    def dbt_env(self) -> dict[str, str]:
        """profiles.yml's postgres target; the password goes to dbt's environment only."""
        parts = self.parts
        return {"SLUICE_DBT_TARGET": "postgres", "SLUICE_PG_HOST": parts.get("host", "127.0.0.1"),
                "SLUICE_PG_PORT": parts.get("port", "5432"),
                "SLUICE_PG_USER": parts.get("user", "postgres"),
                "SLUICE_PG_PASSWORD": parts.get("password", ""),
                "SLUICE_PG_DBNAME": parts.get("dbname", "sluice")}

    def uri(self) -> str:
        parts = self.parts
        user = f"{parts['user']}@" if parts.get("user") else ""
        port = f":{parts['port']}" if parts.get("port") else ""
        return f"postgresql://{user}{parts.get('host', 'localhost')}{port}/" \
               f"{parts.get('dbname', '')}"


def _array(values: Sequence[Any], oid: int) -> pa.Array:
    kind = _ARROW_TYPES.get(oid)
    if oid == 1700:  # numeric arrives as Decimal
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, type=kind) if kind is not None else pa.array(values)


class PostgresWriter(RawWriter):
    """raw.* on the server: each batch COPYed into a temporary table, then inserted from it
    (`on conflict do nothing` skips an event id already loaded), inside the file's
    transaction."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.cursor = con.cursor()
        self._create()

    def _create(self) -> None:
        cursor = self.cursor
        cursor.execute("select to_regclass('raw.sluice_meta') is not null")
        if cursor.fetchone()[0]:
            cursor.execute("select value from raw.sluice_meta where key = 'format_version'")
            found = cursor.fetchone()
            if found is not None:
                formats.check("warehouse", int(found[0]), "the PostgreSQL warehouse")
        cursor.execute(RAW_DDL)
        cursor.execute("insert into raw.sluice_meta values ('format_version', %s) "
                       "on conflict (key) do nothing", [str(formats.CURRENT["warehouse"])])
        self.con.commit()

    def manifest(self) -> dict[str, Loaded]:
        self.cursor.execute("select path, size_bytes, checksum, loaded_at from raw.manifest")
        rows = self.cursor.fetchall()
        self.con.commit()
        return {row[0]: Loaded.of(*row[1:]) for row in rows}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            yield
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise

    def insert_events(self, events: pa.Table, source_file: str, loaded_at: datetime) -> int:
        self._copy(events, "_ingest_batch", _BATCH_SPEC, EVENT_COLUMNS)
        self.cursor.execute(
            f"insert into raw.events ({EVENT_COLUMNS}, source_file, loaded_at) "
            f"select {EVENT_COLUMNS}, %s, %s from _ingest_batch "
            "on conflict (tenant, event_id) do nothing", [source_file, loaded_at])
        return self.cursor.rowcount

    def insert_quarantine(self, refused: pa.Table, source_file: str,
                          quarantined_at: datetime) -> None:
        # PostgreSQL text cannot hold NUL; a refused line may (binary junk in a landing file)
        record = pc.replace_substring(refused["record"], "\x00", "\ufffd")
        refused = refused.set_column(refused.schema.get_field_index("record"), "record", record)
        self._copy(refused, "_ingest_quarantine",
                   "(line_number bigint, record varchar, reason varchar)",
                   "line_number, record, reason")
        self.cursor.execute(
            "insert into raw.quarantine (source_file, line_number, record, reason, "
            "quarantined_at) select %s, line_number, record, reason, %s "
            "from _ingest_quarantine", [source_file, quarantined_at])

    def _copy(self, table: pa.Table, name: str, spec: str, columns: str) -> None:
        """`table` into a temporary table `name` (emptied first), by COPY in CSV (arrow writes
        a null as an empty field and an empty string as "", which is how COPY reads them)."""
        self.cursor.execute(f"create temporary table if not exists {name} {spec} "
                            "on commit drop")
        self.cursor.execute(f"truncate {name}")
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=False))
        buffer.seek(0)
        self.cursor.copy_expert(f"copy {name} ({columns}) from stdin with (format csv)", buffer)

    def quarantine_file(self, source_file: str, reason: str, quarantined_at: datetime) -> None:
        self.cursor.execute("insert into raw.quarantine values (%s, null, null, %s, %s)",
                            [source_file, reason, quarantined_at])

    def record_file(self, result: FileResult, size: int, checksum: str,
                    loaded_at: datetime) -> None:
        self.cursor.execute(
            "insert into raw.manifest as m values (%s, %s, %s, %s, %s, %s, %s) "
            "on conflict (path) do update set size_bytes = excluded.size_bytes, "
            "checksum = excluded.checksum, "
            "rows_loaded = m.rows_loaded + excluded.rows_loaded, "
            "rows_quarantined = m.rows_quarantined + excluded.rows_quarantined, "
            "duplicates_skipped = m.duplicates_skipped + excluded.duplicates_skipped, "
            "loaded_at = excluded.loaded_at",
            [result.path, size, checksum, result.rows_loaded, result.rows_quarantined,
             result.duplicates_skipped, loaded_at])
