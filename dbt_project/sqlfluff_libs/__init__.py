"""The slice of dbt's Jinja context that `sqlfluff lint` (templater jinja) needs.

var() reads the defaults in dbt_project.yml, and the project's macros are rendered with
adapter.dispatch() picking their duckdb__ implementations, so the linted SQL is the SQL dbt
runs on DuckDB, without a database or a dbt compile.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import jinja2
import yaml

_PROJECT = Path(__file__).resolve().parent.parent
_VARS = yaml.safe_load((_PROJECT / "dbt_project.yml").read_text())["vars"]


def var(name, default=None):
    return _VARS.get(name, default)


def _raise_compiler_error(message):
    raise jinja2.TemplateError(message)


class _Adapter:
    def dispatch(self, name, macro_namespace=None):
        return getattr(_macros, f"duckdb__{name}", None) or getattr(_macros, f"default__{name}")

    def quote(self, identifier):
        return f'"{identifier}"'


adapter = _Adapter()
# dbt's cross-database type macros, as they render on DuckDB
def _listagg(measure, delimiter_text="','", order_by_clause=None, limit_num=None):
    """dbt-duckdb's listagg: string_agg with the order inside the call."""
    order = f" {order_by_clause}" if order_by_clause else ""
    return f"string_agg({measure}, {delimiter_text}{order})"


dbt = SimpleNamespace(type_string=lambda: "varchar", type_int=lambda: "integer",
                      type_bigint=lambda: "bigint", type_boolean=lambda: "boolean",
                      type_timestamp=lambda: "timestamp", listagg=_listagg)
modules = SimpleNamespace(re=re)
exceptions = SimpleNamespace(raise_compiler_error=_raise_compiler_error)

_env = jinja2.Environment(extensions=["jinja2.ext.do"])
_env.globals.update(
    var=var,
    dbt=dbt,
    adapter=adapter,
    modules=modules,
    exceptions=exceptions,
    # every macro here returns text, so rendering the returned value is enough
    **{"return": lambda value: value},
    # macros/incremental.sql: as sqlfluff's dbt builtins render models (the incremental
    # branch, no database behind it, so the watermark is its default)
    ref=lambda name: name,
    is_incremental=lambda: True,
    execute=False,
    this="this_model",
)
_source = "\n".join(p.read_text() for p in sorted((_PROJECT / "macros").rglob("*.sql")))
_macros = _env.from_string(_source).module

globals().update(
    {name: getattr(_macros, name) for name in dir(_macros) if not name.startswith("_")}
)
