"""`sluice experiments create|list|show|stop|decide`: online experiments (sluice.experiments);
`decide` runs the decision flow once (flows/experiments.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cli.models import picked_up
from cli.options import tenant_name
from sluice.experiments import (
    ALL_TEMPLATES,
    KINDS,
    METRICS,
    UNITS,
    Experiment,
    Experiments,
    parse_arms,
)
from sluice.intake.events import parse_timestamp
from sluice.settings import get_settings
from sluice.vocabulary import TEMPLATES


def add_parser(sub: Any) -> None:
    experiments = sub.add_parser("experiments", help="online experiments between models")
    commands = experiments.add_subparsers(dest="experiment_command", required=True)
    create = commands.add_parser("create", help="start splitting a tenant's traffic")
    create.add_argument("id")
    create.add_argument("--tenant", type=tenant_name, default="default")
    create.add_argument("--arm", action="append", required=True, dest="arms",
                        help="NAME=MODEL[:SHARE], MODEL a version or alias; repeat per arm, "
                             "the first is the control")
    create.add_argument("--template", default=ALL_TEMPLATES,
                        help="a built-in or configured template, or * (all)")
    create.add_argument("--kind", choices=KINDS, default="ab")
    create.add_argument("--metric", choices=METRICS, default="click_through_rate")
    create.add_argument("--unit", choices=UNITS, default=None,
                        help="what assignment keeps an arm for: session (the session id, else "
                             "the user id) or user (the user id, else the session id: a "
                             "logged-in user keeps one arm across sessions, an anonymous "
                             "session may change arm at login); default: the config's "
                             "experiments.default_unit (session)")
    create.add_argument("--start", help="ISO-8601 or epoch ms; default now")
    create.add_argument("--end", help="ISO-8601 or epoch ms; default open-ended")
    commands.add_parser("list", help="every experiment, running or not")
    commands.add_parser("decide", help="run the decision flow once (reads the result marts)")
    for name in ("show", "stop"):
        commands.add_parser(name, help=f"{name} one experiment").add_argument("id")


def cmd_experiments(args: argparse.Namespace) -> None:
    settings = get_settings()
    store = Experiments(settings.home)
    if args.experiment_command == "decide":
        from flows.preconditions import check

        check("experiments", settings)  # the marts it reads, before Prefect starts
        from cli.processes import quiet_flow_tracebacks
        from flows.experiments import experiments

        quiet_flow_tracebacks()
        print(json.dumps(experiments(), indent=2, default=str))
    elif args.experiment_command == "create":
        from sluice.learn import registry  # MLflow: loaded only when a command needs it

        now = int(time.time() * 1000)
        exp = Experiment(
            id=args.id, tenant=args.tenant, arms=parse_arms(args.arms), template=args.template,
            kind=args.kind, metric=args.metric,
            unit=args.unit or settings.app.experiments.default_unit,
            start_ms=parse_timestamp(args.start, "start") if args.start else now,
            end_ms=parse_timestamp(args.end, "end") if args.end else None)
        name = settings.registered_model_name(args.tenant)
        store.create(exp, lambda ref: registry.ref_exists(settings.mlflow_tracking_uri,
                                                          name, ref),
                     templates=[*TEMPLATES, *settings.app.templates])
        print(json.dumps(exp.as_dict(), indent=2))
        print(picked_up(settings, f"experiment {exp.id!r}"), file=sys.stderr)
    elif args.experiment_command == "list":
        now = int(time.time() * 1000)
        for exp in sorted(store.all(fresh=True).values(), key=lambda e: e.id):
            arms = ", ".join(f"{a.name}={a.model}:{a.share:g}" for a in exp.arms)
            state = "running" if exp.running(now) else "not running"
            print(f"{exp.id}\t{exp.tenant}\t{exp.template}\t{exp.kind}\t{exp.unit}\t{state}\t"
                  f"{arms}")
        for key, problem in sorted(store.unreadable.items()):
            print(f"{key}\t-\t-\t-\t-\tunreadable, not applied\t{problem}")
    else:
        found = store.stop(args.id) if args.experiment_command == "stop" else store.get(args.id)
        print(json.dumps(found.as_dict(), indent=2))
        if args.experiment_command == "stop":
            print(picked_up(settings, f"the stop of experiment {args.id!r}"), file=sys.stderr)
