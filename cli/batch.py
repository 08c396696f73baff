"""`sluice batch`: run the `batch` flow once (recommendations or segments into exports/)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from cli.options import positive_int, tenant_name
from sluice.errors import InputError
from sluice.vocabulary import DEFAULT_TENANT

if TYPE_CHECKING:
    from flows.batch import BatchOutcome


def add_parser(sub: Any) -> None:
    p = sub.add_parser("batch", help="batch recommendations (or --segments) into "
                                     "$SLUICE_HOME/exports/<job>/")
    p.add_argument("--input", default=None,
                   help="JSON Lines of {\"userId\"} (or {\"itemId\"}): a landing-folder name, a "
                        "path or an fsspec URL; default: every user (every item with --segments)")
    p.add_argument("--tenant", type=tenant_name, action="append", default=None,
                   help="default: default; repeat for several tenants (each into its own "
                        "folder <job>/<tenant>/; one tenant's failure does not stop the others)")
    p.add_argument("--template", default="personalized")
    p.add_argument("--num-results", type=positive_int, default=None)
    p.add_argument("--filters", default=None,
                   help="native conditions as JSON, e.g. '[{\"field\": \"color\", \"op\": \"eq\", "
                        "\"value\": \"red\"}]'")
    p.add_argument("--filter-name", default=None, help="a named (Personalize) filter")
    p.add_argument("--filter-value", action="append", default=[], metavar="NAME=VALUE",
                   help="a $NAME of the named filter (repeat for each)")
    p.add_argument("--no-fill-with-random", dest="fill_with_random", action="store_false",
                   default=None)
    p.add_argument("--model-version", default=None, help="default: the champion")
    p.add_argument("--segments", action="store_true",
                   help="for each item, its top --num-results users (default 100)")
    p.add_argument("--log-answers", action="store_true",
                   help="log answers as recommendation events (for click attribution)")
    p.add_argument("--output", default=None, help="a folder or fsspec URL")


def run(args: argparse.Namespace) -> BatchOutcome | list[BatchOutcome]:
    """Checks the options against the config, the input, the output's place, the tenants and
    the model version first (a typo fails before Prefect starts), then runs the flow: `batch`,
    or `batch-tenants` for several."""
    tenants = list(dict.fromkeys(args.tenant or [DEFAULT_TENANT]))
    options = {"input": args.input, "template": args.template, "num_results": args.num_results,
               "filters": _filters(args.filters), "filter_name": args.filter_name,
               "filter_values": _values(args.filter_value),
               "fill_with_random": args.fill_with_random, "segments": args.segments,
               "log_answers": args.log_answers, "output": args.output}
    _check(options, several=len(tenants) > 1, model_version=args.model_version)
    from flows.preconditions import check_batch
    from sluice.settings import get_settings

    check_batch(get_settings(), tenants, segments=args.segments,
                model_version=args.model_version)
    from cli.processes import quiet_flow_tracebacks
    from flows.batch import batch, batch_tenants

    quiet_flow_tracebacks()
    if len(tenants) > 1:
        results = batch_tenants(tenants=tenants, **options)
        for result in results:
            _say(result)
        return results
    result = batch(tenant=tenants[0], model_version=args.model_version, **options)
    _say(result)
    return result


def _check(options: dict[str, Any], several: bool, model_version: str | None) -> None:
    from flows.batch_options import check_options

    if several and model_version is not None:
        raise InputError("--model-version", "a version is one tenant's: give one --tenant, "
                                            "or leave it out (each tenant's champion)")
    try:
        check_options(options)
    except InputError as exc:  # named as the operator typed it
        field = next((option + exc.field[len(prefix):] for prefix, option in _OPTIONS
                      if exc.field.startswith(prefix)), exc.field)
        raise type(exc)(field, exc.reason) from None


# the job's fields (InputError.field, by prefix) and the options that set them
_OPTIONS = (("template", "--template"), ("num_results", "--num-results"),
            ("filters", "--filters"), ("filterArn", "--filter-name"),
            ("filter", "--filter-value"), ("input", "--input"), ("output", "--output"))


def _say(result: BatchOutcome) -> None:
    counts = result.counts
    model = (f"model v{result.model_version}" if result.model_version is not None
             else "no champion: popular and random tiers")
    print(f"{result.output}: {counts['answered']:,} answered, {counts['errors']:,} error "
          f"lines, {counts['slots']:,} slots ({model})")


def _filters(raw: str | None) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError("--filters", f"not JSON ({exc}): a list of conditions") from exc


def _values(pairs: list[str]) -> dict[str, str] | None:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InputError("--filter-value", f"{pair!r}: write NAME=VALUE")
        values[name] = value
    return values or None
