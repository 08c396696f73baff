"""The `sluice` command line: what the Makefile calls.

    sluice demo | serve | ingest | transform | train | tune | pipeline | generate | up | dbt
    sluice batch | models | promote VERSION | rollback | report | trackers | filters
    sluice experiments create|list|show|stop|decide         (online experiments)
    sluice rebuild | backup DEST | restore SRC | upgrade | doctor   (operating a home)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from cli import batch as batch_command
from cli import demo, experiments, models
from cli.options import positive_int, tenant_name
from cli.processes import (
    metrics_folder,
    prefect_under,
    quiet_flow_tracebacks,
    start_server,
    stop_server,
)
from sluice import logs
from sluice.errors import InputError
from sluice.settings import PROJECT_ROOT, ConfigError, get_settings, validation_message
from sluice.store import StoreError


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from sluice.auth import KeyTable, is_loopback

    settings = get_settings()
    keys = KeyTable.from_settings(settings)
    if not keys.enabled and not is_loopback(settings.host):
        raise SystemExit(f"sluice serve: auth is off (no API keys configured), so serving keeps "
                         f"to loopback: SLUICE_HOST={settings.host} refused; configure "
                         f"auth.keys or SLUICE_API_KEYS")
    folder = metrics_folder() if args.workers > 1 else None
    if folder is not None:  # /metrics adds up every worker's values
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        uvicorn.run("serving.main:app", host=settings.host, port=settings.port,
                    workers=args.workers, log_level="info")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def cmd_up(args: argparse.Namespace) -> None:
    settings = get_settings()
    procs: list[subprocess.Popen] = []
    api_url = f"http://127.0.0.1:{settings.prefect_port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url}
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on `kill` too, not only Ctrl-C
    try:
        prefect = Path(sys.executable).with_name("prefect")
        procs.append(subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1",
                                       "--port", str(settings.prefect_port)], env=env))
        _wait_http(f"{api_url}/health", 120)
        procs.append(subprocess.Popen([sys.executable, "-m", "flows.deployments"], env=env,
                                      cwd=PROJECT_ROOT))
        procs.append(start_server(settings.port, env=env))
        print(f"Prefect UI      http://127.0.0.1:{settings.prefect_port}\n"
              f"Sluice API      http://{settings.host}:{settings.port}/docs\n"
              f"Deployments     ingest (5 min), refresh (2 h), pipeline (nightly), tune (weekly), "
              f"batch (nightly)\n"
              f"Ctrl-C stops everything.")
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            stop_server(p)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def cmd_trackers(args: argparse.Namespace) -> None:
    from sluice.intake.trackers import Trackers

    trackers = Trackers(get_settings())
    if args.tracker_command == "create":
        print(trackers.create(args.name))
    else:
        for tracking_id, tenant in sorted(trackers.all().items(), key=lambda kv: kv[1]):
            print(f"{tracking_id}\t{tenant}")


def cmd_filters(args: argparse.Namespace) -> None:
    from sluice.filters import NamedFilters

    settings = get_settings()
    named = NamedFilters(settings.app.filters, settings.home / "filters.json")
    if args.filter_command == "create":
        named.create(args.name, args.expression)
        print(f"arn:aws:personalize:local:000000000000:filter/{args.name}")
    else:
        for name, expression in sorted(named.all().items()):
            print(f"{name}\t{expression}")


def cmd_report(args: argparse.Namespace) -> None:
    from sluice.analytics.report import check_tenant, tenant_experiments, write_report
    from sluice.warehouse.engine import from_settings

    settings = get_settings()
    warehouse = from_settings(settings)
    check_tenant(warehouse, settings.mlflow_tracking_uri, settings.registered_model_name(""),
                 args.tenant)
    out = args.out or settings.home / "report" / "index.html"
    path = write_report(warehouse, settings.mlflow_tracking_uri,
                        settings.registered_model_name(args.tenant), out,
                        *tenant_experiments(settings, args.tenant))
    print(f"report written to {path}")


def cmd_rebuild(args: argparse.Namespace) -> None:
    from sluice.warehouse.engine import duckdb_path
    from sluice.warehouse.rebuild import rebuild

    settings = get_settings()
    rebuild(duckdb_path(settings, "sluice rebuild"), settings.raw_location,
            settings.landing_location, settings.home / "dbt", settings.dbt_vars(), say=print)


def cmd_backup(args: argparse.Namespace) -> None:
    from sluice.operate.backup import backup
    from sluice.warehouse.engine import duckdb_path

    settings = get_settings()
    duckdb_path(settings, "sluice backup")
    backup(settings, args.dest, say=print)


def cmd_restore(args: argparse.Namespace) -> None:
    from sluice.operate.backup import restore

    restore(get_settings(), args.src, say=print)


def cmd_upgrade(args: argparse.Namespace) -> None:
    from sluice.operate.upgrade import upgrade
    from sluice.warehouse.engine import duckdb_path

    settings = get_settings()
    duckdb_path(settings, "sluice upgrade")
    upgrade(settings, say=print)


def cmd_doctor(args: argparse.Namespace) -> None:
    from sluice.operate.doctor import diagnose, render

    findings = diagnose(get_settings())
    print(render(findings))
    if not all(f.ok for f in findings):
        raise SystemExit(1)


def _add_operate_commands(sub: Any) -> dict[str, Any]:
    """Operating a home: README "Operating Sluice"."""
    sub.add_parser("rebuild", help="rebuild the warehouse from the raw log and landing folder")
    sub.add_parser("backup", help="a consistent copy of the home and the MLflow store"
                   ).add_argument("dest", type=Path, help="a new or empty folder")
    sub.add_parser("restore", help="a backup into a fresh SLUICE_HOME").add_argument(
        "src", type=Path, help="a folder `sluice backup` wrote")
    sub.add_parser("upgrade", help="migrate the home's data formats to this version")
    sub.add_parser("doctor", help="check the environment and the home; exit 1 on problems")
    return {"rebuild": cmd_rebuild, "backup": cmd_backup, "restore": cmd_restore,
            "upgrade": cmd_upgrade, "doctor": cmd_doctor}


def cmd_flow(name: str, **options: Any) -> None:
    """Run a flow once (options: its parameters, e.g. transform's full_refresh)."""
    from flows.ingest import ingest
    from flows.pipeline import pipeline
    from flows.train import train
    from flows.transform import transform
    from flows.tune import tune

    quiet_flow_tracebacks()
    by_name: dict[str, Callable[..., Any]] = {"ingest": ingest, "transform": transform,
                                              "train": train, "tune": tune, "pipeline": pipeline}
    result = _plain(by_name[name](**options))
    if name == "ingest":
        result.pop("table")  # the flow has logged it, once
    print(json.dumps(result, indent=2, default=str))


def _flow_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters given on the command line (`sluice transform --full-refresh`)."""
    return {"full_refresh": True} if getattr(args, "full_refresh", False) else {}


def cmd_dbt(args: argparse.Namespace) -> int:
    """dbt on the project, as the transform flow runs it: same warehouse, vars and lock."""
    from sluice.warehouse import transform
    from sluice.warehouse.engine import from_settings

    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    if not dbt_args:
        raise ValueError("name a dbt command after `--`, e.g. `sluice dbt -- build`")
    settings = get_settings()
    warehouse, work, dbt_vars = from_settings(settings), settings.home / "dbt", settings.dbt_vars()
    if not transform.opens_warehouse(dbt_args):  # docs serve: no lock for as long as it runs
        argv, env = transform.dbt_invocation(warehouse, work, dbt_vars, dbt_args)
        return subprocess.run(argv, env=env, cwd=transform.DBT_PROJECT_DIR).returncode
    with warehouse.lock(say=print):
        dbt_args, note = transform.refresh_rule(warehouse, work, dbt_vars, dbt_args)
        if note:
            print(note, flush=True)
        argv, env = transform.dbt_invocation(warehouse, work, dbt_vars, dbt_args)
        code = subprocess.run(argv, env=env, cwd=transform.DBT_PROJECT_DIR).returncode
        if code == 0:
            transform.record_whole_build(warehouse, work, dbt_vars, dbt_args)
        return code
def _plain(result: Any) -> Any:
    """A flow's typed result as the JSON-ready dicts and lists it prints as."""
    if isinstance(result, list):
        return [_plain(item) for item in result]
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def main(argv: list[str] | None = None) -> int:
    logs.configure()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
    # a busy machine starts the temporary Prefect server in more than its default 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    parser, operate = _parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        if args.command != "doctor":  # doctor reports a bad config among its findings
            settings.app  # noqa: B018 -- a config error is one line here, not a traceback
        prefect_under(settings.home, settings.prefect_port)
        commands = {"demo": demo.cmd_demo, "generate": demo.cmd_generate, "serve": cmd_serve,
                    "up": cmd_up, "trackers": cmd_trackers, "filters": cmd_filters,
                    "report": cmd_report, "dbt": cmd_dbt, "batch": batch_command.run,
                    "experiments": experiments.cmd_experiments,
                    **models.COMMANDS, **operate, "models": models.cmd_models_group}
        code = commands.get(args.command,
                            lambda a: cmd_flow(a.command, **_flow_options(a)))(args)
    except Exception as exc:  # one clear line, not a traceback, for the operator
        if os.environ.get("SLUICE_DEBUG"):
            raise
        print(f"sluice {args.command}: {_one_line(exc)}", file=sys.stderr)
        if not isinstance(exc, ConfigError | ValidationError | InputError | StoreError):
            # those name the field or file and say what to do: all there is
            print("set SLUICE_DEBUG=1 for the full traceback", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid environment: {validation_message(exc)}"
    if isinstance(exc, ConfigError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("demo", "generate"):
        p = sub.add_parser(name, help=f"{name} (synthetic history on the embedded defaults)")
        p.add_argument("--users", type=positive_int, default=5_000)
        p.add_argument("--items", type=positive_int, default=2_000)
        p.add_argument("--events", type=positive_int, default=200_000)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--force", action="store_true", help="regenerate even if present")
    serve = sub.add_parser("serve", help="run the API in the foreground on SLUICE_PORT")
    serve.add_argument("--workers", type=positive_int, default=1)
    sub.add_parser("up", help="Prefect server + deployments + API")
    report = sub.add_parser("report", help="write the HTML analytics report")
    report.add_argument("--tenant", type=tenant_name, default="default")
    report.add_argument("--out", type=Path, default=None,
                        help="default: $SLUICE_HOME/report/index.html")
    _named_parsers(sub)
    models.add_parsers(sub)
    experiments.add_parser(sub)
    for name in ("ingest", "train", "tune", "pipeline"):
        sub.add_parser(name, help=f"run the `{name}` flow once")
    sub.add_parser("transform", help="run the `transform` flow once").add_argument(
        "--full-refresh", action="store_true",
        help="rebuild the incremental models from the whole history, not only new events")
    dbt = sub.add_parser("dbt", help="dbt on the project with the flow's warehouse, vars, lock",
                         usage="sluice dbt -- <dbt command and flags>, e.g. sluice dbt -- build")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    batch_command.add_parser(sub)
    return parser, _add_operate_commands(sub)


def _named_parsers(sub: Any) -> None:
    trackers = sub.add_parser("trackers", help="event trackers (one per tenant)")
    tracker_sub = trackers.add_subparsers(dest="tracker_command", required=True)
    tracker_sub.add_parser("create", help="create a tracker; prints its trackingId").add_argument(
        "name", help="the tenant (dataset group) the tracker writes into")
    tracker_sub.add_parser("list", help="list trackingId -> tenant")
    named = sub.add_parser("filters", help="named filters for the Personalize API (filterArn)")
    named_sub = named.add_subparsers(dest="filter_command", required=True)
    create = named_sub.add_parser("create", help="create NAME from a Personalize expression")
    create.add_argument("name")
    create.add_argument("expression", help="e.g. 'EXCLUDE ItemID WHERE Items.GENRE IN ($G)'")
    named_sub.add_parser("list", help="list name -> expression")


if __name__ == "__main__":
    sys.exit(main())
