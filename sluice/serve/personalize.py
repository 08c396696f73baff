"""Personalize runtime parameters (GetRecommendations, GetPersonalizedRanking), checked against
botocore's `personalize-runtime` model: which ARN names the campaign (its dataset group, the
tenant, and the template its last part selects), the named filter and its values, the context,
the item metadata columns to return, and what Sluice refuses on purpose (promotions). Each
refusal is a `PersonalizeError` naming the parameter (`NotFoundError` for a campaign that does
not exist).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from sluice.errors import NotFoundError
from sluice.intake.personalize import (
    PersonalizeError,
    arn_resource,
    dataset_tenant,
    snake,
)
from sluice.serve.answers import parse_context

MAX_FILTER_VALUES = 25
MAX_FILTER_VALUE = 1000
MAX_METADATA_COLUMNS = 10  # the Personalize guide's limit (the model's list allows 99)
MAX_COLUMN_NAME = 150
MAX_CONTEXT, MAX_CONTEXT_NAME = 150, 150  # botocore's Context map and AttributeName
_FILTER_ARN = re.compile(r"^arn:[a-z\d-]+:personalize:[^:]*:[^:]*:filter/(?P<name>[^/]+)$")
# botocore's patterns for these names are not anchored (a Smithy pattern matches anywhere in
# the value): a name is valid when some character of it is a letter, a digit or `_`
_NAME_PATTERN = re.compile(r"[A-Za-z\d_]")
MAX_FILTER_VALUE_NAME = 50


class Campaign(NamedTuple):
    """What a campaignArn or recommenderArn names: the parameter that gave it, the dataset group
    (the tenant), and the template its last part selects (None: chosen by the ids given)."""

    field: str
    arn: str
    tenant: str
    template: str | None


_KINDS = {"campaignArn": "campaign", "recommenderArn": "recommender"}


def campaign(body: dict[str, Any]) -> Campaign:
    """The campaign of a runtime call: exactly one of campaignArn and recommenderArn, as
    Personalize takes one or the other, read as `<campaign|recommender>/<dataset group>` or
    `<campaign|recommender>/<dataset group>/<template>`. Whether the template exists is
    `check_template`'s (after the caller's key is checked against the tenant)."""
    given = [name for name in _KINDS if body.get(name) is not None]
    if not given:
        raise PersonalizeError("campaignArn", "required: campaignArn or recommenderArn")
    if len(given) > 1:
        raise PersonalizeError("recommenderArn", "give campaignArn or recommenderArn, not both")
    field = given[0]
    arn = body[field]
    tenant = dataset_tenant(arn, field)
    kind, _, rest = arn_resource(arn).partition("/")
    if kind != _KINDS[field]:
        raise NotFoundError(field, f"no {_KINDS[field]} {arn!r:.300}: {field} names a "
                            f"{_KINDS[field]}, arn:aws:personalize:REGION:ACCOUNT:"
                            f"{_KINDS[field]}/GROUP[/TEMPLATE]")
    _, slash, template = rest.partition("/")
    return Campaign(field, arn, tenant, template if slash else None)


def check_template(found: Campaign, templates: Iterable[str]) -> None:
    """A template named by the ARN must be one of `templates` (the built-in ones and those the
    config defines): otherwise the campaign does not exist, as Personalize answers for an ARN
    it does not know, and the message lists the ARNs that do."""
    names = list(templates)
    if found.template is None or found.template in names:
        return
    kind = _KINDS[found.field]
    base = found.arn[:len(found.arn) - len(arn_resource(found.arn))] + f"{kind}/{found.tenant}"
    raise NotFoundError(found.field, f"no {kind} {found.arn!r:.300}: dataset group "
                        f"{found.tenant!r} has {base} (the template chosen by the ids given) "
                        f"and {base}/TEMPLATE for TEMPLATE one of {', '.join(names)}")


def filter_args(body: dict[str, Any]) -> dict[str, Any]:
    """`filterArn` and `filterValues` as the request's named filter (none when not given)."""
    arn, values = body.get("filterArn"), body.get("filterValues")
    if arn is None:
        if values:  # values without a filter would be silently unused
            raise PersonalizeError("filterValues", "given without filterArn: name the filter "
                                   "whose placeholders they fill")
        return {}
    match = _FILTER_ARN.match(arn) if isinstance(arn, str) and len(arn) <= 256 else None
    if not match:
        raise PersonalizeError("filterArn",
                               "expected arn:aws:personalize:REGION:ACCOUNT:filter/NAME")
    values = {} if values is None else values
    if not isinstance(values, dict) or len(values) > MAX_FILTER_VALUES:
        raise PersonalizeError("filterValues",
                               f"a map of up to {MAX_FILTER_VALUES} names to strings")
    for name, value in values.items():
        if not _NAME_PATTERN.search(name) or len(name) > MAX_FILTER_VALUE_NAME:
            raise PersonalizeError("filterValues", f"names of at most {MAX_FILTER_VALUE_NAME} "
                                   f"characters with a letter, digit or _, got {name!r:.60}")
        if not isinstance(value, str) or len(value) > MAX_FILTER_VALUE:
            raise PersonalizeError(f"filterValues.{name}",
                                   f"a string of at most {MAX_FILTER_VALUE} characters")
    return {"filter_name": match.group("name"), "filter_values": values}


def context(raw: Any) -> dict[str, str]:
    """The request's context as botocore's model allows it: 150 names of up to 150
    characters, to strings of up to 1,000 (logged with the answer as `context.<name>`)."""
    parsed = parse_context(raw, max_names=MAX_CONTEXT, max_name=MAX_CONTEXT_NAME)
    for name in parsed:
        if not _NAME_PATTERN.search(name):
            raise PersonalizeError("context", f"names need a letter, digit or _, got {name!r:.60}")
    return parsed


def refuse_promotions(raw: Any) -> None:
    """Promotions are not served: refused by name rather than answered without them."""
    if raw:
        raise PersonalizeError("promotions", "not supported by Sluice: send the request "
                               "without promotions (a filterArn can include or exclude items)")


def metadata_columns(raw: Any, known: Callable[[], set[str]]) -> list[str] | None:
    """`{"ITEMS": [column, ...]}`: the item fields to return with each item (None: none asked).

    `known` gives the tenant's item field names; a column that is none of them is refused."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict) or set(raw) != {"ITEMS"}:
        raise PersonalizeError("metadataColumns", 'expected {"ITEMS": [column names]}: item '
                               "metadata is the only kind Sluice returns")
    columns = raw["ITEMS"]
    if not isinstance(columns, list) or len(columns) > MAX_METADATA_COLUMNS:
        raise PersonalizeError("metadataColumns.ITEMS",
                               f"a list of at most {MAX_METADATA_COLUMNS} column names")
    fields = None
    for index, column in enumerate(columns):
        where = f"metadataColumns.ITEMS[{index}]"
        if not isinstance(column, str) or not 0 < len(column) <= MAX_COLUMN_NAME:
            raise PersonalizeError(where, f"a column name of 1 to {MAX_COLUMN_NAME} characters")
        fields = known() if fields is None else fields
        if snake(column) not in fields and column not in fields:
            raise PersonalizeError(where, f"no item field {column!r:.60} in this dataset group")
    return columns


def metadata(fields: dict[str, Any], columns: list[str]) -> dict[str, str]:
    """An item's values of `columns` as Personalize returns them: text (lists joined by `|`,
    as in a Personalize items CSV); a column the item has no value for is left out."""
    out = {}
    for column in columns:
        value = fields.get(snake(column), fields.get(column))
        if value is not None:
            out[column] = _text(value)
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "|".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
