"""Which tenants the raw event log holds a user's history for, found without applying it:
`sluice batch` checks its tenants with it before Prefect starts (serving and the batch flow
apply the whole log, then know the same)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import orjson

from sluice.intake.eventlog import is_url, location, read_complete, segment_sizes
from sluice.vocabulary import DEFAULT_TENANT

_TENANT_FIELD = re.compile(rb'"tenant":"([^"\\]{1,64})"')


def tenants_with_interactions(root: Path | str, among: Iterable[str] | None = None) -> set[str]:
    """The tenants with at least one interaction in the log (those serving holds a user's
    history for), read as serving reads it: complete lines of every segment. Only lines that
    name a tenant are parsed, so asking about a few (`among`) costs little more than reading
    the bytes, and stops once each is found; None: every tenant the log names."""
    return _scan(root, among, every_if_missing=False)[0]


def asked_and_known(root: Path | str, among: Iterable[str]) -> tuple[set[str], set[str]]:
    """The tenants of `among` with an interaction in the log, and the tenants to name when
    some of `among` have none (every tenant with an interaction), in one reading of the log:
    a refusal reads each segment once, not once for `among` and again for the list. While
    each of `among` is found, the reading stops as `tenants_with_interactions` does and the
    second set is the first."""
    return _scan(root, among, every_if_missing=True)


def _scan(root: Path | str, among: Iterable[str] | None,
          every_if_missing: bool) -> tuple[set[str], set[str]]:
    """(found among `among`, or every tenant when None; every tenant with an interaction
    when `every_if_missing` and some of `among` were not found, else the first set)."""
    wanted = None if among is None else set(among)
    found: set[str] = set()
    others: set[str] = set()  # tenants outside `wanted` with an interaction, while one is missing
    for path, size in segment_sizes(location(root)):
        if wanted is not None and wanted <= found:
            break
        try:
            data, _ = read_complete(path, 0, size=size if is_url(path) else None)
        except FileNotFoundError:
            continue
        names = wanted if wanted is not None else _named(data)
        found |= {name for name in names - found if _interaction_of(data, name)}
        if every_if_missing and wanted is not None and not wanted <= found:
            # the list a refusal names, from the bytes already read; `wanted`'s own are known
            others |= {name for name in _named(data) - others - wanted
                       if _interaction_of(data, name)}
    missing = wanted is not None and not wanted <= found
    return found, (found | others) if every_if_missing and missing else set(found)


def _named(data: bytes) -> set[str]:
    """The tenants lines of `data` name (an event without one is the default tenant's)."""
    return {DEFAULT_TENANT, *(m.decode("utf-8", "replace") for m in _TENANT_FIELD.findall(data))}


_INTERACTION = b'"event":"interaction"'


def _interaction_of(data: bytes, tenant: str) -> bool:
    """Whether a line of `data` is an interaction of `tenant` (the writer is orjson: compact;
    an event without a tenant is the default tenant's, as serving applies it). Lines are
    found by one marker and told apart by the other before any is parsed: the answers logged
    back, most of a busy log, are never parsed."""
    marker = b'"tenant":' + orjson.dumps(tenant)
    searches = [(marker, _INTERACTION)]
    if tenant == DEFAULT_TENANT:
        searches.append((_INTERACTION, b""))
    for find, also in searches:
        at = data.find(find)
        while at >= 0:
            start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
            end = len(data) if end < 0 else end
            line = data[start:end]
            if also in line and _is_interaction_of(line, tenant):
                return True
            at = data.find(find, end)
    return False


def _is_interaction_of(line: bytes, tenant: str) -> bool:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False  # a torn line: serving skips it too
    return (isinstance(event, dict) and event.get("event") == "interaction"
            and event.get("tenant", DEFAULT_TENANT) == tenant)
