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
    wanted = None if among is None else set(among)
    found: set[str] = set()
    for path, size in segment_sizes(location(root)):
        if wanted is not None and wanted <= found:
            break
        try:
            data, _ = read_complete(path, 0, size=size if is_url(path) else None)
        except FileNotFoundError:
            continue
        names = wanted if wanted is not None else {
            DEFAULT_TENANT, *(m.decode("utf-8", "replace") for m in _TENANT_FIELD.findall(data))}
        for name in names - found:
            if _interaction_of(data, name):
                found.add(name)
    return found


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
