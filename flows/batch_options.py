"""The batch flows' options checked against the config, the input (there and readable) and
the output's place, without a model, the raw log or Prefect: `sluice batch` calls this before
any flow starts, so a typo fails at once (the flows resolve them again against the tenant's
items)."""

from __future__ import annotations

from typing import Any

from sluice.filters import NamedFilters
from sluice.serve.batch_io import check_input, check_output, check_source, input_location
from sluice.serve.resolve import base_template, check_batch
from sluice.settings import get_settings


def check_options(options: dict[str, Any]) -> None:
    """Raises an InputError naming the job's field (`template`, `num_results`, `filters`,
    `filterArn`, `input`, `output`) at fault."""
    settings = get_settings()
    check_batch(settings.app, NamedFilters(settings.app.filters, settings.home / "filters.json"),
                template=options["template"], filters=options["filters"],
                filter_name=options["filter_name"], filter_values=options["filter_values"],
                count=options["num_results"], fill_with_random=options["fill_with_random"],
                segments=options["segments"])
    source = input_location(settings.landing_location, options["input"])
    if not options["segments"]:  # segments without an input answer every item
        check_source(base_template(settings.app, options["template"]), source)
    if source is not None:
        check_input(source)
    if options.get("output") is not None:
        check_output(options["output"])
