"""The `sluice` command line: what the Makefile calls.

    sluice demo | serve | ingest | transform | train | tune | pipeline | generate | up | dbt
    sluice batch | models | promote VERSION | rollback | report | trackers | filters
    sluice experiments create|list|show|stop|decide         (online experiments)
    sluice rebuild | backup DEST | restore SRC | upgrade | doctor   (operating a home)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
from cli import demo, experiments, models, operate
from cli.options import positive_int, tenant_name
from cli.processes import (
    metrics_folder,
    prefect_under,
    quiet_flow_tracebacks,
    start_server,
    stop_server,
)
from sluice import formats, logs
from sluice.errors import InputError, NotReadyError, OperatorError
from sluice.settings import PROJECT_ROOT, ConfigError, get_settings, validation_message
from sluice.store import StoreError


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from sluice.auth import KeyTable, is_loopback
    from sluice.learn import registry

    settings = get_settings()
    if not settings.raw_url:  # a newer raw log is refused here in one line, not at start-up
        formats.check_marker(settings.raw_dir, "raw_log")
    keys = KeyTable.from_settings(settings)
    if not keys.enabled and not is_loopback(settings.host):
        raise SystemExit(f"sluice serve: auth is off (no API keys configured), so serving keeps "
                         f"to loopback: SLUICE_HOST={settings.host} refused; configure "
                         f"auth.keys or SLUICE_API_KEYS")
    from sluice.operate.services import port_taken

    if port_taken(settings.host, settings.port):  # said now, not by uvicorn after start-up
        raise SystemExit(f"sluice serve: port {settings.port} on {settings.host} is taken "
                         f"(another `sluice serve`?): stop what holds it, or set SLUICE_PORT "
                         f"to a free port")
    # once, before the workers start: each would otherwise migrate a new store at once
    not_ready = registry.prepare_store(settings.mlflow_tracking_uri)
    if not_ready:
        print(f"sluice serve: {not_ready}; serving starts, and each worker polls it",
              file=sys.stderr)
    folder = metrics_folder() if args.workers > 1 else None
    if folder is not None:  # /metrics adds up every worker's values
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        uvicorn.run("serving.main:app", host=settings.host, port=settings.port,
                    workers=args.workers, log_level=args.log_level)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def cmd_up(args: argparse.Namespace) -> None:
    from flows import deployments

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
              f"Deployments     {deployments.summary()}\n"
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
                        *tenant_experiments(settings, args.tenant), tenant=args.tenant)
    print(f"report written to {path}")




def cmd_flow(name: str, **options: Any) -> None:
    """Run a flow once (options: its parameters, e.g. transform's full_refresh), once what it
    needs from earlier steps is there (`flows.preconditions`, checked before Prefect starts)."""
    from flows.preconditions import check

    check(name, get_settings())
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


def cmd_dbt(args: argparse.Namespace) -> int:
    """dbt on the project, as the transform flow runs it: same warehouse, vars and lock."""
    from sluice.warehouse import docs_site, transform
    from sluice.warehouse.engine import from_settings

    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    if not dbt_args:
        raise ValueError("name a dbt command after `--`, e.g. `sluice dbt -- build`")
    settings = get_settings()
    warehouse, work, dbt_vars = from_settings(settings), settings.home / "dbt", settings.dbt_vars()
    if dbt_args[:2] == ["docs", "serve"]:  # dbt's would put back the page's broken assets
        return docs_site.serve(work / "target", dbt_args[2:],
                               say=functools.partial(print, flush=True))
    if not transform.opens_warehouse(dbt_args):
        return transform.run_dbt(warehouse, work, dbt_vars, dbt_args).returncode
    with warehouse.lock(say=print):
        dbt_args, note = transform.refresh_rule(warehouse, work, dbt_vars, dbt_args)
        if note:
            print(note, flush=True)
        code = transform.run_dbt(warehouse, work, dbt_vars, dbt_args).returncode
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
    parser, operate_commands = _parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        if args.command not in ("doctor", "restore"):  # doctor reports these among its
            formats.check_home(settings.home)  # findings; restore brings the home back (and
            settings.app  # noqa: B018 -- the config): a config error is one line here
        prefect_under(settings.home, settings.prefect_port)
        commands = {"demo": demo.cmd_demo, "generate": demo.cmd_generate, "serve": cmd_serve,
                    "up": cmd_up, "trackers": cmd_trackers, "filters": cmd_filters,
                    "report": cmd_report, "dbt": cmd_dbt, "batch": batch_command.run,
                    "experiments": experiments.cmd_experiments,
                    **models.COMMANDS, **operate_commands, "models": models.cmd_models_group}
        full_refresh = {"full_refresh": True} if getattr(args, "full_refresh", False) else {}
        code = commands.get(args.command, lambda a: cmd_flow(a.command, **full_refresh))(args)
    except Exception as exc:  # one clear line, not a traceback, for the operator
        if os.environ.get("SLUICE_DEBUG"):
            raise
        print(f"sluice {args.command}: {_one_line(exc)}", file=sys.stderr)
        if not isinstance(exc, ConfigError | ValidationError | InputError | StoreError
                          | OperatorError | NotReadyError):
            # those name the field or file and say what to do: all there is
            print("set SLUICE_DEBUG=1 for the full traceback", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid environment: {validation_message(exc)}"
    if isinstance(exc, ConfigError | OperatorError):
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
    serve.add_argument("--log-level", default="info",
                       choices=("critical", "error", "warning", "info", "debug", "trace"),
                       help="uvicorn's (info: a line a request); Sluice's is SLUICE_LOG_LEVEL")
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
    return parser, operate.add_commands(sub)


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
