"""`sluice models [show | promote | rollback]`, `sluice promote | rollback`: the registry,
steered from the command line (the logic is sluice/learn/versions.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.options import tenant_name
from sluice.settings import get_settings


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c)
              for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


def cmd_models(args: argparse.Namespace) -> None:
    from sluice.learn import versions

    settings = get_settings()
    metric = settings.app.evaluation.gate_metric
    rows = [v.row() for v in versions.versions(
        settings.mlflow_tracking_uri, f"{settings.app.model.name}-", metric, args.tenant)]
    if not rows and args.tenant:
        print(f"no registered versions for tenant {args.tenant!r} "
              f"({settings.registered_model_name(args.tenant)}): `sluice models` lists every "
              "tenant's; `sluice train` registers one once the tenant has enough data")
        return
    if not rows:
        print("no registered models yet: run `sluice train` (or `sluice pipeline`)")
        return
    print(table(rows, ["tenant", "version", "algorithm", metric, "data window", "alias", "age",
                        "gate"]))


def picked_up(settings: Any, what: str) -> str:
    """Serving reloads now (sluice.reloads): what the command says it did."""
    from sluice.reloads import reload_serving

    return reload_serving(settings.home, settings.app.serving.reload_wait_seconds, what)


def cmd_promote(args: argparse.Namespace) -> None:
    from sluice.learn import versions

    settings = get_settings()
    name = settings.registered_model_name(args.tenant or "default")
    previous = versions.promote(settings.mlflow_tracking_uri, name, args.version, args.reason)
    print(f"{name}@champion: v{previous or '-'} -> v{args.version} ({args.reason}); "
          f"{picked_up(settings, f'v{args.version}')}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from sluice.learn import versions

    settings = get_settings()
    name = settings.registered_model_name(args.tenant or "default")
    was, now = versions.rollback(settings.mlflow_tracking_uri, name, args.reason)
    print(f"{name}@champion: v{was} -> v{now} ({args.reason}); "
          f"{picked_up(settings, f'v{now}')}")


def cmd_model_show(args: argparse.Namespace) -> None:
    """`sluice models show VERSION`: what a version learned from, how it was judged."""
    from sluice.learn.tracking import lineage

    settings = get_settings()
    record = lineage(settings.mlflow_tracking_uri,
                     settings.registered_model_name(args.tenant or "default"), args.version)
    print(json.dumps(record, indent=2, default=str))


def cmd_models_group(args: argparse.Namespace) -> None:
    """`sluice models` lists the versions; `sluice models show VERSION` gives one's lineage;
    `sluice models promote | rollback` are `sluice promote | rollback`."""
    command = getattr(args, "models_command", None)
    if command == "show":
        cmd_model_show(args)
    elif command in ("promote", "rollback"):
        COMMANDS[command](args)
    else:
        cmd_models(args)


def add_parsers(sub: Any) -> None:
    models = sub.add_parser("models", help="registered versions per tenant: algorithm, metric, "
                                           "data window, alias, age")
    models.add_argument("--tenant", type=tenant_name, default=None,
                        help="one tenant (default: every tenant)")
    models_sub = models.add_subparsers(dest="models_command")  # none: list the versions
    show = models_sub.add_parser("show", help="a version's lineage: data, dbt run, code, gate")
    show.add_argument("version")
    show.add_argument("--tenant", type=tenant_name, default=argparse.SUPPRESS)  # as below
    # `sluice promote` and `sluice models promote` alike (rollback too)
    for parent, tenant in ((sub, "default"), (models_sub, argparse.SUPPRESS)):
        promote = parent.add_parser("promote", help="make VERSION the tenant's champion")
        promote.add_argument("version")
        rollback = parent.add_parser("rollback",
                                     help="give `champion` back to the one it replaced")
        for p in (promote, rollback):  # under `models`, its --tenant before them counts too
            p.add_argument("--tenant", type=tenant_name, default=tenant)
            p.add_argument("--reason", default="by hand",
                           help="recorded as a tag on the version")


COMMANDS = {"models": cmd_models, "promote": cmd_promote, "rollback": cmd_rollback}
