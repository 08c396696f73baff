"""Run the dbt project (staging -> intermediate -> marts) against the warehouse."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from sluice.settings import PROJECT_ROOT
from sluice.warehouse import docs_site
from sluice.warehouse.engine import DuckDBWarehouse, MissingTable, Warehouse, as_warehouse
from sluice.warehouse.fingerprint import project_digest

log = logging.getLogger(__name__)

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


class TransformError(RuntimeError):
    """dbt build failed; the message lists the failing nodes and what they said."""


@dataclass
class TransformResult:
    ok: bool
    nodes: list[dict[str, Any]] = field(default_factory=list)
    shortfalls: list[str] = field(default_factory=list)  # "tenant x needs ..." per short tenant

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["status"] in ("error", "fail", "runtime error")]


RESULT_COMMANDS = ("build", "run", "test")  # the commands that write run_results.json
SHORTFALL = "data_sufficiency: "  # what tests/assert_tenants_have_sufficient_data.sql logs
# dbt commands that read the project, so take its target, log path and vars
DBT_RUNNING = ("build", "run", "test", "seed", "snapshot", "compile", "show", "docs", "parse",
               "source", "ls", "list", "run-operation", "retry", "clone")
# dbt commands that build models, so take --full-refresh
BUILDING = ("build", "run")
# what the incremental models were last built with (see build_fingerprint), in the work dir
BUILT_WITH = "incremental_built_with.txt"
# the latest raw load the last whole `dbt build` that passed had read, in the work dir: the
# next incremental build tests only rows loaded after it (macros/incremental.sql)
TESTED_UP_TO = "incremental_tested_up_to.txt"
TESTED_SINCE_ENV = "SLUICE_DBT_TESTED_SINCE"
# the fingerprint and engine versions of the last whole `dbt build` that passed, unit tests
# included, in the work dir. A unit test runs the model's SQL on the fixed rows it declares,
# so with the same project, vars and engines its result cannot change: an incremental build
# then leaves the unit tests out (dbt's own advice: run them in development and CI, not on
# every production build), and a full refresh, a changed project or an upgrade runs them.
UNIT_TESTED_WITH = "unit_tested_with.txt"


def dbt_build(warehouse: Warehouse | Path, work_dir: Path, dbt_vars: dict[str, Any],
              select: str | None = None, command: str = "build",
              full_refresh: bool = False) -> TransformResult:
    """`dbt <command>` holding the warehouse lock; see `_dbt_build`. A path is the DuckDB
    file there."""
    warehouse = as_warehouse(warehouse)
    with warehouse.lock():
        _require_ingested(warehouse)
        return _dbt_build(warehouse, work_dir, dbt_vars, select, command, full_refresh)


def _require_ingested(warehouse: Warehouse) -> None:
    """A warehouse that ingest never wrote has no raw.* for dbt to read: say what to run,
    not the catalog errors of every source test."""
    try:
        warehouse.rows("select 1 from raw.events limit 1")
    except MissingTable as exc:
        raise TransformError(f"nothing to transform: {warehouse} has no raw.events yet; run "
                             "`sluice ingest` first (or `sluice pipeline`)") from exc


def _dbt_build(warehouse: Warehouse, work_dir: Path, dbt_vars: dict[str, Any],
               select: str | None = None, command: str = "build",
               full_refresh: bool = False) -> TransformResult:
    """`dbt <command>` in a child process (so its DuckDB handle is gone when it returns).

    command is build (default), run, test, or e.g. "docs generate" (docs into work_dir/target).
    Incremental models take only what is new unless full_refresh, or unless the project, the
    vars or the warehouse differ from their last whole build (`build_fingerprint`): their kept
    rows would then be stale, so they are rebuilt from the whole history. An incremental
    `build` tests only the rows loaded since the last whole build that passed (TESTED_UP_TO),
    and runs no unit test when that build passed them with the same project (UNIT_TESTED_WITH).
    Raises TransformError naming each failed model or test and what it said. Tenants short
    of data only warn (`result.shortfalls`): training skips them, the others go on.
    """
    target = work_dir / "target"
    (target / "run_results.json").unlink(missing_ok=True)  # never report a previous run's nodes
    args = command.split()
    if select and command in RESULT_COMMANDS:
        args += ["--select", select]
    fingerprint = build_fingerprint(warehouse, dbt_vars)
    refresh = full_refresh or _read(work_dir / BUILT_WITH) != fingerprint
    unit_tested_with = f"{fingerprint} {_engine_versions()}"
    if args[0] in BUILDING and refresh:
        args.append("--full-refresh")
    elif args[0] == "build" and _read(work_dir / UNIT_TESTED_WITH) == unit_tested_with:
        args += ["--exclude-resource-type", "unit_test"]  # see UNIT_TESTED_WITH
    since = _read(work_dir / TESTED_UP_TO)
    tested_since: dict[str, str] = {}
    if args[0] == "build" and not refresh and since:
        tested_since[TESTED_SINCE_ENV] = since  # not a var: a changed var parses everything
    proc = run_dbt(warehouse, work_dir, dbt_vars, args, env=tested_since, capture=True)
    nodes = _run_results(target / "run_results.json") if command in RESULT_COMMANDS else []
    shortfalls = [line.split(SHORTFALL, 1)[1].strip() for line in proc.stdout.splitlines()
                  if SHORTFALL in line]
    result = TransformResult(proc.returncode == 0, nodes, sorted(set(shortfalls)))
    if proc.returncode != 0:
        raise TransformError(failure_message(command, result.failures, target / "manifest.json",
                                             proc.stdout, work_dir / "logs" / "dbt.log"))
    if args[0] in BUILDING and not select:  # a selection leaves other models as they were
        (work_dir / BUILT_WITH).write_text(fingerprint)
        if args[0] == "build":  # every test passed on every row loaded so far
            _write_or_remove(work_dir / TESTED_UP_TO, _latest_load(warehouse))
            (work_dir / UNIT_TESTED_WITH).write_text(unit_tested_with)
    return result


MAX_NAMED = 3  # failed nodes a failure message names; it counts the others


def failure_message(command: str, failures: list[dict[str, Any]], manifest: Path, stdout: str,
                    log: Path) -> str:
    """One line: each failed model or test (the first MAX_NAMED) with what dbt said, and the
    next step: for a failed test the command that shows its failing rows, and the build of the
    failed models that re-runs them, as the flow does. Without failed nodes (the project did
    not compile), the last lines dbt printed."""
    nodes = _manifest_nodes(manifest)
    if not failures:
        tail = _one_line(" ".join(_dbt_said(stdout)[-8:]))
        return (f"dbt {command} failed: {tail}; fix the project, then re-run it with `sluice dbt "
                f"-- {command}` (the same warehouse, vars and lock); full log {log}")
    named = [_failed_node(n["node"], n["message"], nodes) for n in failures[:MAX_NAMED]]
    more = f"; and {len(failures) - MAX_NAMED} more" if len(failures) > MAX_NAMED else ""
    models = sorted({_tested_model(n["node"], nodes) for n in failures})
    tests = [_short_name(n["node"]) for n in failures if n["node"].startswith("test.")]
    show = (f"`sluice dbt -- show --select {tests[0]}` shows a failed test's rows, "
            if tests else "")
    return (f"dbt {command} failed: {'; '.join(named)}{more}. Next: {show}`sluice dbt -- build "
            f"--select {' '.join(models)}` re-runs it (the same warehouse, vars and lock); "
            f"full log {log}")


def _manifest_nodes(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}


def _failed_node(unique_id: str, message: str, nodes: dict[str, Any]) -> str:
    """`test NAME (on MODEL): message`, `model NAME (path): message`."""
    kind, name = unique_id.split(".")[0].replace("_", " "), _short_name(unique_id)
    if kind == "model":
        where = nodes.get(unique_id, {}).get("original_file_path")
    else:
        where = f"on {_tested_model(unique_id, nodes)}"
    return f"{kind} {name}{f' ({where})' if where else ''}: {_one_line(message)[:400]}"


def _tested_model(unique_id: str, nodes: dict[str, Any]) -> str:
    """What `--select` names to rebuild a failed node: the model itself, a test's model (or
    `source:` its source)."""
    if unique_id.startswith("model."):
        return _short_name(unique_id)
    node = nodes.get(unique_id, {})
    parent = node.get("attached_node") or next(iter(node.get("depends_on", {}).get("nodes", [])),
                                                  "")
    if parent.startswith("source."):
        return "source:" + ".".join(parent.split(".")[2:])
    return _short_name(parent) if parent else _short_name(unique_id)


def _short_name(unique_id: str) -> str:
    """model.sluice.NAME, test.sluice.NAME.hash, unit_test.sluice.MODEL.NAME -> NAME."""
    parts = unique_id.split(".")
    return parts[-1] if parts[0] == "unit_test" else parts[2] if len(parts) > 2 else unique_id


def _dbt_said(stdout: str) -> list[str]:
    """dbt's printed lines without colours and times, from its error on when it names one."""
    lines = [_TIME.sub("", _COLOUR.sub("", line)) for line in stdout.strip().splitlines()]
    lines = [line for line in lines if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Encountered an error")),
                 0)
    return lines[start:]


_COLOUR, _TIME = re.compile(r"\x1b\[[0-9;]*m"), re.compile(r"^\s*\d\d:\d\d:\d\d\s+")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# dbt commands that never open the warehouse: `sluice dbt` runs them without its lock (a
# `docs serve` runs until stopped, and would hold every flow back meanwhile)
NO_WAREHOUSE = (("docs", "serve"), ("deps",), ("clean",), ("init",))


def opens_warehouse(args: list[str]) -> bool:
    """Whether `dbt <args>` reads or writes the warehouse, so must hold its lock."""
    return not any(tuple(args[:len(command)]) == command for command in NO_WAREHOUSE)


# dbt flags that build part of the project: such a run records no fingerprint
SELECTING = ("--select", "-s", "--exclude", "--selector", "--models", "-m", "--resource-type",
             "--resource-types", "--exclude-resource-type", "--exclude-resource-types")


def refresh_rule(warehouse: Warehouse | Path, work_dir: Path, dbt_vars: dict[str, Any],
                 args: list[str]) -> tuple[list[str], str | None]:
    """`sluice dbt -- <args>` under the flow's rule: a `build` or `run` after the project, the
    vars or the warehouse changed since the last whole build (BUILT_WITH) takes --full-refresh,
    since the incremental models' kept rows follow the old SQL or vars. Returns the args and,
    when it added the flag, a line saying why. Call it under the warehouse lock."""
    if not args or args[0] not in BUILDING or "--full-refresh" in args:
        return args, None
    if _read(work_dir / BUILT_WITH) == build_fingerprint(warehouse, dbt_vars):
        return args, None
    return [*args, "--full-refresh"], (
        "sluice dbt: no whole build is recorded with this dbt project, these vars and this "
        "warehouse, so the incremental models are rebuilt from the whole history "
        "(--full-refresh), as `sluice transform` does")


def record_whole_build(warehouse: Warehouse | Path, work_dir: Path, dbt_vars: dict[str, Any],
                       args: list[str]) -> None:
    """After a `build` or `run` of the whole project passed by hand: what it was built with,
    so the next flow run does not rebuild everything again."""
    if args and args[0] in BUILDING and not any(a.split("=")[0] in SELECTING for a in args):
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / BUILT_WITH).write_text(build_fingerprint(warehouse, dbt_vars))


def _engine_versions() -> str:
    """dbt's, its adapters' and DuckDB's versions: what a unit test's result depends on
    besides the project and the vars."""
    found = []
    for package in ("dbt-core", "dbt-duckdb", "dbt-postgres", "duckdb"):
        try:
            found.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return " ".join(found)


def _latest_load(warehouse: Warehouse) -> str | None:
    """When the latest raw load was stamped (loads wait for the lock the caller holds)."""
    ((latest,),) = warehouse.rows("select max(loaded_at) from raw.events")
    return None if latest is None else str(latest)


def _write_or_remove(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(text)


def build_fingerprint(warehouse: Warehouse | Path, dbt_vars: dict[str, Any]) -> str:
    """A digest of what incremental models' rows depend on besides the events: the models and
    macros, the vars (weights, thresholds, the anonymous prefix, item fields) and the
    warehouse the build writes (target and file, or server and database; never a password)."""
    warehouse = as_warehouse(warehouse)
    digest = hashlib.sha256()
    env = {**os.environ, **warehouse.dbt_env()}
    target = [env.get(name) for name in ("SLUICE_DBT_TARGET", "SLUICE_PG_HOST",
                                         "SLUICE_PG_PORT", "SLUICE_PG_DBNAME")]
    where = str(warehouse.path.resolve()) if isinstance(warehouse, DuckDBWarehouse) \
        else warehouse.uri()
    digest.update(json.dumps([target, where, dbt_vars],
                             sort_keys=True, default=str).encode())
    digest.update(project_digest(DBT_PROJECT_DIR).encode())
    return digest.hexdigest()


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def dbt_invocation(warehouse: Warehouse | Path, work_dir: Path, dbt_vars: dict[str, Any],
                   args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of `dbt <args>` on this project, warehouse and vars.

    The transform flow and `sluice dbt -- <args>` both run dbt through this (by `run_dbt`),
    so a hand run builds exactly what the flow builds. Run it under the warehouse's lock. The
    warehouse reaches dbt through the environment profiles.yml reads (a password never in argv).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = [_dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR)]
    if args and args[0] in DBT_RUNNING:  # the commands that take these flags
        argv += ["--target-path", str(work_dir / "target"), "--log-path",
                 str(work_dir / "logs"), "--vars", json.dumps(dbt_vars)]
    env = {**os.environ, **as_warehouse(warehouse).dbt_env(),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return argv, env


def run_dbt(warehouse: Warehouse | Path, work_dir: Path, dbt_vars: dict[str, Any],
            args: list[str], env: dict[str, str] | None = None,
            capture: bool = False) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` in a child process (`dbt_invocation`, `env` added to its environment):
    the one way the transform flow and `sluice dbt -- <args>` run dbt. A `docs generate` that
    passed has its pages fixed afterwards (`docs_site.fix_pages`), whichever ran it.
    `capture` keeps dbt's output (for the flow's failure message) rather than printing it."""
    argv, full_env = dbt_invocation(warehouse, work_dir, dbt_vars, args)
    proc = subprocess.run(argv, env={**full_env, **(env or {})}, capture_output=capture,
                          text=True, cwd=DBT_PROJECT_DIR)
    if proc.returncode == 0 and args[:2] == ["docs", "generate"]:
        docs_site.fix_pages(work_dir / "target")
    return proc


def _dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def _run_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [{"node": r["unique_id"], "status": r["status"], "message": r.get("message") or "",
             "seconds": round(r.get("execution_time") or 0.0, 2)} for r in data["results"]]
