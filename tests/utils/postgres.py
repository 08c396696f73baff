"""A throwaway PostgreSQL cluster on loopback, and the DuckDB raw tables copied into it."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

# Types both engines read the same way; raw.* is copied with these (see sluice/warehouse/db.py).
PORTABLE_TYPES = {"VARCHAR": "varchar", "TIMESTAMP": "timestamp", "DOUBLE": "double precision",
                  "BIGINT": "bigint", "INTEGER": "integer", "BOOLEAN": "boolean", "DATE": "date"}


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    dbname: str

    def env(self) -> dict[str, str]:
        """What dbt_project/profiles.yml reads to select and reach this server."""
        return {"SLUICE_DBT_TARGET": "postgres", "SLUICE_PG_HOST": self.host,
                "SLUICE_PG_PORT": str(self.port), "SLUICE_PG_USER": self.user,
                "SLUICE_PG_PASSWORD": "", "SLUICE_PG_DBNAME": self.dbname}

    def connect(self):
        import psycopg2  # comes with dbt-postgres

        return psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                dbname=self.dbname)

    def dsn(self) -> str:
        """What SLUICE_WAREHOUSE_DSN holds to reach this database."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def database(self, name: str) -> Postgres:
        """A new, empty database on the same server (one per test keeps tests apart)."""
        admin = self.connect()
        try:
            admin.autocommit = True  # create database runs outside a transaction
            admin.cursor().execute(f'create database "{name}"')
        finally:
            admin.close()
        return Postgres(self.host, self.port, self.user, name)


def server_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine (Debian layout or PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_postgres(bin_dir: Path, dbname: str = "sluice") -> Iterator[Postgres]:
    """initdb + pg_ctl start in a temporary folder, loopback only, trust auth; always stopped.

    initdb refuses to run as root, so root runs the server binaries as the `postgres` user,
    in a folder under /tmp that it owns (pytest's tmp_path is closed to other users).
    """
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="sluice-pg-", dir="/tmp" if as_root else None))
    as_user = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, user="postgres")
    data, port, log = root / "data", _free_port(), root / "server.log"

    def pg(*args: str, check: bool = True) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True)
        if check and done.returncode:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{tail}")

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
           "--encoding=UTF8", "--locale=C", "--no-sync")
        # a throwaway cluster: nothing needs to survive a crash
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
           "-t", "60", "start")
        yield Postgres("127.0.0.1", port, "postgres", "postgres").database(dbname)
    finally:
        if (data / "postmaster.pid").exists():
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop",
               check=False)
        shutil.rmtree(root, ignore_errors=True)


def copy_raw_tables(warehouse: Path, server: Postgres) -> dict[str, int]:
    """Create the raw schema in PostgreSQL with each DuckDB raw.* table's columns and copy the
    rows in one transaction; returns the row count of each table."""
    from psycopg2.extras import execute_values

    counts = {}
    target = server.connect()
    try:
        with duckdb.connect(str(warehouse), read_only=True) as source, target:
            cursor = target.cursor()
            cursor.execute("create schema if not exists raw")
            tables = [row[0] for row in source.execute(
                "select table_name from information_schema.tables where table_schema = 'raw' "
                "order by 1").fetchall()]
            for table in tables:
                columns = source.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'raw' and table_name = ? order by ordinal_position",
                    [table]).fetchall()
                spec = ", ".join(f"{name} {PORTABLE_TYPES[kind]}" for name, kind in columns)
                cursor.execute(f"create table raw.{table} ({spec})")
                rows = source.execute(f"select * from raw.{table}").fetchall()
                execute_values(cursor, f"insert into raw.{table} values %s", rows,
                               page_size=5000)
                counts[table] = len(rows)
    finally:
        target.close()
    return counts
