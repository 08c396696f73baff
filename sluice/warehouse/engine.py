"""Which warehouse the batch path reads and writes: the embedded DuckDB file (the default) or a
PostgreSQL server (`warehouse.engine: postgres`, its DSN in SLUICE_WAREHOUSE_DSN).

A `Warehouse` is the one seam between the stages and the engine: its lock (a file lock beside
the DuckDB file, an advisory lock on the server), read queries (`rows`, `frame`), the writer
ingest loads files through (`sluice.warehouse.loading`), and what dbt needs to reach it.
Queries are written once, with `?` placeholders and SQL both engines read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import pandas as pd
import pyarrow as pa

from sluice.warehouse import db
from sluice.warehouse.locks import warehouse_lock

if TYPE_CHECKING:
    from sluice.settings import Settings
    from sluice.warehouse.loading import RawWriter

Say = Callable[[str], None] | None
LOCK_TIMEOUT = 3600.0


class MissingTable(LookupError):
    """A query named a table or view the warehouse does not have (yet): run `sluice transform`."""


# what a MissingTable says to do: the warehouse has not been built that far yet
NEXT_STEP = ("; the warehouse is not built that far yet: run `sluice ingest`, then "
             "`sluice transform` (or `sluice pipeline` for both and training)")


class Warehouse(ABC):
    """Where raw.* and the dbt models live; see the module docstring."""

    engine: ClassVar[str]

    @abstractmethod
    def lock(self, timeout: float = LOCK_TIMEOUT, say: Say = None) -> AbstractContextManager:
        """One writer (ingest, transform, train's reads) at a time, across processes."""

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read query's rows; MissingTable when it names a relation that is not there."""

    @abstractmethod
    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """A read query as an arrow table (numbers, timestamps and text typed as on DuckDB)."""

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self.arrow(sql, params).to_pandas()

    @abstractmethod
    def writer(self) -> AbstractContextManager[RawWriter]:
        """A connection that writes raw.* (the schema created when missing)."""

    @abstractmethod
    def dbt_env(self) -> dict[str, str]:
        """The environment dbt_project/profiles.yml reads to select and reach this warehouse."""

    @abstractmethod
    def uri(self) -> str:
        """Where it is, for logs and lineage: never a password."""

    def __str__(self) -> str:
        return self.uri()


class DuckDBWarehouse(Warehouse):
    """The embedded file; its lock is `<file>.lock` (sluice.warehouse.locks)."""

    engine = "duckdb"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def lock(self, timeout: float = LOCK_TIMEOUT, say: Say = None) -> AbstractContextManager:
        return warehouse_lock(self.path, timeout=timeout, say=say)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as con:
            return con.execute(sql, list(params)).fetchall()

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with self._reading() as con:
            return con.sql(sql, params=list(params)).to_arrow_table()

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists():
            raise MissingTable(f"{self.path} does not exist{NEXT_STEP}")
        con = db.connect(self.path, read_only=True)
        try:
            yield con
        except duckdb.CatalogException as exc:
            raise MissingTable(f"{str(exc).splitlines()[0]}{NEXT_STEP}") from exc
        finally:
            con.close()

    @contextmanager
    def writer(self) -> Iterator[RawWriter]:
        from sluice.warehouse.loading import DuckDBWriter

        con = db.connect(self.path)
        try:
            yield DuckDBWriter(con)
        finally:
            con.close()

    def dbt_env(self) -> dict[str, str]:
        return {"SLUICE_WAREHOUSE": str(self.path)}

    def uri(self) -> str:
        return self.path.resolve().as_uri()


def as_warehouse(where: Warehouse | Path | str) -> Warehouse:
    """A Warehouse as it is; a path is the DuckDB file there (what callers passed before)."""
    return where if isinstance(where, Warehouse) else DuckDBWarehouse(where)


def from_settings(settings: Settings) -> Warehouse:
    """The warehouse `warehouse.engine` selects: the DuckDB file under SLUICE_HOME, or the
    PostgreSQL server at SLUICE_WAREHOUSE_DSN."""
    if settings.app.warehouse.engine == "postgres":
        from sluice.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(settings.require_warehouse_dsn())
    return DuckDBWarehouse(settings.warehouse_path)


class DuckDBOnlyError(RuntimeError):
    """A part that reads or writes the DuckDB file itself, asked for on another engine."""


def duckdb_path(settings: Settings, what: str) -> Path:
    """The DuckDB file for `what` (rebuild, backup, upgrade, experiment decisions, tier
    alerts: they work on the file itself); DuckDBOnlyError saying so on another engine."""
    engine = settings.app.warehouse.engine
    if engine != "duckdb":
        raise DuckDBOnlyError(
            f"{what} works on the DuckDB warehouse only, and warehouse.engine is {engine}: "
            "use the server's own tools (pg_dump, replicas) there, or run it on a DuckDB home")
    return settings.warehouse_path
