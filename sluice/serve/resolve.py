"""A recommendation request as the tiers take it, resolved against the config.

The template a name stands for (built in, or configured on top of one with its defaults and
static filters), the request's own filters parsed against the fields the tenant's items carry,
a named filter (Personalize's filterArn) with its values, and `num_results` within
`serving.default_num_results` and `serving.max_num_results`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.errors import NotFoundError
from sluice.filters import NamedFilters, Rule, parse_conditions, parse_expression
from sluice.serve.answers import RecommendationError, RecommendationRequest, parse_context
from sluice.settings import AppConfig, ServingConfig
from sluice.vocabulary import DEFAULT_TENANT, MIN_NUM_RESULTS, PERSONALIZED, TEMPLATES


def request(app: AppConfig, named: NamedFilters, item_fields: Callable[[], set[str]], *,
            tenant: str = DEFAULT_TENANT, template: str = PERSONALIZED,
            filters: list[Any] | None = None, filter_name: str | None = None,
            filter_values: dict[str, str] | None = None,
            **fields: Any) -> RecommendationRequest:
    """A request with the template's chain, defaults and static filters resolved.

    `item_fields` gives the fields the tenant's items carry (asked only when filters need
    checking). Raises an InputError naming the field at fault (NotFoundError: no such filter).
    """
    known: set[str] = set()
    if filters or filter_name is not None:  # the field names are only needed to check them
        known = item_fields() | set(app.events.item_fields)
    name = template if template in app.templates else None
    template, rules = template_rules(app, template, fields)
    rules += parse_conditions(filters, known)
    if filter_name is not None:
        expression = named.get(filter_name)
        if expression is None:
            raise NotFoundError("filterArn", f"no filter named {filter_name!r}")
        rules += parse_expression(expression, filter_values or {}, known)
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["num_results"] = num_results(app.serving, fields.get("num_results"))
    fields["context"] = parse_context(fields.get("context"))
    return RecommendationRequest(tenant=tenant, template=template, template_name=name,
                                 rules=rules, **fields)


def base_template(app: AppConfig, template: str) -> str:
    """The built-in template a name stands for: a configured template's base, or itself."""
    configured = app.templates.get(template)
    return template if configured is None else configured.base


def template_rules(app: AppConfig, template: str,
                   fields: dict[str, Any]) -> tuple[str, list[Rule]]:
    """The built-in template a name stands for and its static filters; a configured
    template's defaults fill the `fields` the request left out."""
    configured = app.templates.get(template)
    if configured is None:
        if template not in TEMPLATES:
            names = [*TEMPLATES, *app.templates]
            raise RecommendationError("template", f"must be one of {', '.join(names)}")
        return template, []
    for key in ("num_results", "fill_with_random"):
        if getattr(configured, key) is not None and fields.get(key) is None:
            fields[key] = getattr(configured, key)
    fields["exploration"] = configured.exploration.share
    return configured.base, parse_conditions(configured.filters,
                                             where=f"templates.{template}.filters")


def num_results(serving: ServingConfig, value: Any, where: str = "num_results") -> int:
    """A request's num_results within the config's bounds (serving.default_num_results
    when it gives none, at most serving.max_num_results)."""
    if value is None:
        return serving.default_num_results
    if isinstance(value, bool) or not isinstance(value, int) or not (
            MIN_NUM_RESULTS <= value <= serving.max_num_results):
        raise RecommendationError(
            where, f"an integer from {MIN_NUM_RESULTS} to {serving.max_num_results}")
    return value


MAX_SEGMENT = 100_000  # users per item in a batch segment


def segment_size(value: Any) -> int:
    """A segment's users per item: a whole number from 1 to MAX_SEGMENT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SEGMENT:
        raise RecommendationError("num_results",
                                  f"an integer from 1 to {MAX_SEGMENT} users per item")
    return value


def check_batch(app: AppConfig, named: NamedFilters, *, template: str = PERSONALIZED,
                filters: list[Any] | None = None, filter_name: str | None = None,
                filter_values: dict[str, str] | None = None, count: int | None = None,
                fill_with_random: bool | None = None, segments: bool = False) -> None:
    """A batch job's parameters checked against the config alone (no model, no log), so a
    typo fails at once; the job resolves them again against the tenant's item fields.
    `count`: num_results (users per item for segments)."""
    if segments:
        segment_size(100 if count is None else count)
        return
    fields: dict[str, Any] = {"num_results": count, "fill_with_random": fill_with_random}
    template_rules(app, template, fields)
    parse_conditions(filters, None)
    if filter_name is not None:
        expression = named.get(filter_name)
        if expression is None:
            raise NotFoundError("filterArn", f"no filter named {filter_name!r}: `sluice filters "
                                             "list` shows them")
        parse_expression(expression, filter_values or {}, None)
    num_results(app.serving, fields["num_results"])
