"""What a trained model is, for the gate's refresh rule: its family, its parameters, the matrix
config it trained on, and the settings that shaped the interactions mart before the matrix
was built from it.

The last part matters because the champion is refit on this run's marts: when
`events.weights` or `events.event_value_threshold` changed since it trained, that refit
already carries the change, so it ties the candidate without the change ever being weighed.
Each bundle records them (meta `interactions`, and the run's params and tag
`training.interactions`); a champion without that record (trained before it was kept) is
never the candidate's own configuration. `events.anonymous_user_prefix` renames anonymous
users' rows without changing them, and `events.item_fields` never reaches the matrix: neither
is part of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sluice.settings import EventsConfig

IGNORED_PARAMS = ("device", "num_threads")  # where a model ran is no part of its configuration
INTERACTIONS = ("weights", "event_value_threshold")  # events.* that shape marts.interactions


def interactions_meta(events: EventsConfig) -> dict[str, Any]:
    """The settings that turned the raw events into the interactions mart a model saw."""
    return {"weights": dict(sorted(events.weights.items())),
            "event_value_threshold": events.event_value_threshold}


@dataclass(frozen=True)
class Configuration:
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    matrix: dict[str, Any] | None = None        # None: not compared (a comparison of params)
    interactions: dict[str, Any] | None = None  # None: not recorded (an older bundle)

    @classmethod
    def of_bundle(cls, meta: dict[str, Any]) -> Configuration:
        return cls(str(meta.get("algorithm")), dict(meta.get("params") or {}),
                   dict(meta.get("matrix") or {}), meta.get("interactions"))


def differences(candidate: Configuration, champion: Configuration) -> list[str]:
    """What tells the champion's configuration from the candidate's, one phrase each, the
    champion's value first (empty: the same configuration). The matrix is compared when both
    have one; the interactions settings always, and a champion without their record differs
    by that."""
    found = []
    if candidate.family != champion.family:
        found.append(f"family {champion.family} -> {candidate.family}")
    said = _changed(_without(champion.params), _without(candidate.params))
    if said:
        found.append(f"parameters ({said})")
    if candidate.matrix is not None and champion.matrix is not None:
        said = _changed(champion.matrix, candidate.matrix)
        if said:
            found.append(f"matrix config ({said})")
    if champion.interactions is None:
        found.append("no record of events.weights and events.event_value_threshold "
                     "(trained before they were recorded)")
        return found
    for key in INTERACTIONS:
        theirs, ours = champion.interactions.get(key), (candidate.interactions or {}).get(key)
        if _plain(theirs) != _plain(ours):
            found.append(f"events.{key} {_shown(theirs)} -> {_shown(ours)}")
    return found


def same_configuration(candidate: Configuration, champion: Configuration) -> bool:
    """Whether two models are one configuration (`differences` finds nothing)."""
    return not differences(candidate, champion)


def _without(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in IGNORED_PARAMS}


def _plain(value: Any) -> str:
    """A value as comparable text: 4 and 4.0 (JSON read back, YAML written by hand) are one."""
    def numbers(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: numbers(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [numbers(x) for x in v]
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
    return json.dumps(numbers(value), sort_keys=True, default=str)


def _shown(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in sorted(value.items())) or "none"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _changed(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    """The keys whose values differ, as `key champion's -> this run's`."""
    keys = sorted(k for k in {*theirs, *ours} if _plain(theirs.get(k)) != _plain(ours.get(k)))
    return ", ".join(f"{k} {_shown(theirs.get(k))} -> {_shown(ours.get(k))}" for k in keys)
