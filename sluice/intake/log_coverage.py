"""How far into the raw log a model's marts went, in a record that does not grow with every
segment: what training writes into the bundle (meta `raw_coverage`,
sluice.warehouse.positions) and serving reads (sluice.serve.model.TrainedLog).

The explicit form (bundles made before this record was compacted, meta `raw_log`) names
every segment: `{"covered": {name: bytes}, "unknown": [names]}`. On an object store each
group commit is a segment of its own, so that is one entry per object, some 60 bytes: 60 MB
of meta at a million objects. The compact form says the same in a few entries per writer:

    {"whole_through": {writer: ms}, "covered": {name: bytes}, "unknown": [names],
     "unloaded": [names]}

A segment's name is `segment-<13-digit ms>-<writer>.jsonl` (`EventLog._next_name`): one
EventLog starts its segments at strictly increasing milliseconds and writes them one after
the other, each finished (its object stored, or its file left for the next) before the next
is started. `whole_through[writer] = ms` says that every segment of that writer started at or
before `ms` was trained on whole (every line it will ever have), except those named in
`covered` (trained on up to those bytes), `unknown` (how far is not known: by event time) and
`unloaded` (not loaded when the marts were built: nothing in it was trained on). A segment
neither named nor inside a writer's prefix was not loaded when the marts were built, as in
the explicit form.

`compact` leaves a segment to the prefix only when it is trained on whole for certain: the
marts hold its bytes as the log lists it, and it can never grow (an object store's objects
are immutable; elsewhere its writer has started a newer segment since). Every other segment
of the writer at or before the prefix's end that training knows of (the manifest, a listing
of the log made after the manifest was read) is named. One it does not know of cannot be
there: such a segment was started before the prefix's last one, which the manifest lists, so
the listing made later lists it too (Sluice never deletes a segment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

from sluice.intake.log_positions import OFFSET_MASK

# The compact record has a key of its own: a server from before it reads no record in a new
# bundle and goes by event time (coarser, never wrong), where reading the compact form as the
# explicit one would take every segment inside a prefix for one the model never saw.
META_KEY = "raw_coverage"
EXPLICIT_META_KEY = "raw_log"  # bundles before the compact record

WHOLE = OFFSET_MASK  # trained on whole: no line in it ends past this
UNKNOWN = -1  # trained on in part, how far is not known: its events go by time
UNSEEN = -2  # not loaded when the marts were built: every event in it is new


def writer_and_start(name: str) -> tuple[str, int] | None:
    """(writer, start ms) of a segment named as `EventLog` names them
    (`segment-<13 digits>-<writer>.jsonl`), else None."""
    start = name[8:21]
    if (len(name) > 28 and name.startswith("segment-") and name[21] == "-"
            and name.endswith(".jsonl") and start.isascii() and start.isdigit()):
        return name[22:-6], int(start)
    return None


def compact(loaded: Mapping[str, tuple[int, bool]], listed: Mapping[str, int] | None,
            immutable: bool) -> dict[str, Any]:
    """The record of the raw log as the marts held it. `loaded`: per segment in the
    manifest, (bytes loaded, whether the marts hold them all: else unknown); `listed`: the
    size of each segment the log lists, listed after the manifest was read (None: no
    listing, and the explicit form); `immutable`: segments never grow once listed (one
    object per group commit)."""
    covered = {name: size for name, (size, seen) in loaded.items() if seen}
    unknown = sorted(name for name, (_, seen) in loaded.items() if not seen)
    if listed is None:
        return {"covered": dict(sorted(covered.items())), "unknown": unknown}
    names = {name: writer_and_start(name)
             for name in chain(loaded, (n for n in listed if n not in loaded))}
    newest: dict[str, int] = {}  # each writer's newest segment training knows of
    for parsed in names.values():
        if parsed is not None and parsed[1] > newest.get(parsed[0], -1):
            newest[parsed[0]] = parsed[1]
    through: dict[str, int] = {}
    whole: set[str] = set()
    for name, size in covered.items():
        parsed = names[name]
        if (parsed is None or listed.get(name) != size
                or not (immutable or parsed[1] < newest[parsed[0]])):
            continue  # not known whole, or it may still grow: named with its bytes
        whole.add(name)
        through[parsed[0]] = max(through.get(parsed[0], -1), parsed[1])
    return {"whole_through": dict(sorted(through.items())),
            "covered": {n: covered[n] for n in sorted(covered) if n not in whole},
            "unknown": unknown,
            "unloaded": sorted(n for n in listed if n not in loaded and _inside(names[n],
                                                                                through))}


class Coverage:
    """A raw-log record (either form) read for lookups: `of_segment(name)` gives the bytes
    trained on, WHOLE, UNKNOWN or UNSEEN."""

    def __init__(self, covered: Mapping[str, int], unknown: Iterable[str],
                 unloaded: Iterable[str] = (), whole_through: Mapping[str, int] | None = None):
        self.covered = {str(k): int(v) for k, v in covered.items()}
        self.unknown, self.unloaded = frozenset(unknown), frozenset(unloaded)
        self.whole_through = {str(k): int(v) for k, v in (whole_through or {}).items()}

    @classmethod
    def of_meta(cls, meta: Mapping[str, Any]) -> Coverage | None:
        """The record a bundle's meta keeps, in either form; None when there is none."""
        return cls.of(meta.get(META_KEY) or meta.get(EXPLICIT_META_KEY))

    @classmethod
    def of(cls, record: Mapping[str, Any] | None) -> Coverage | None:
        """The record as a bundle's meta keeps it; None when there is none (by time)."""
        if not record:
            return None
        return cls(record.get("covered") or {}, record.get("unknown") or (),
                   record.get("unloaded") or (), record.get("whole_through"))

    def of_segment(self, name: str) -> int:
        covered = self.covered.get(name)
        if covered is not None:
            return covered
        if name in self.unknown:
            return UNKNOWN
        if name in self.unloaded or not _inside(writer_and_start(name), self.whole_through):
            return UNSEEN
        return WHOLE


def _inside(parsed: tuple[str, int] | None, whole_through: Mapping[str, int]) -> bool:
    """Whether a segment (its writer and start) falls in its writer's prefix."""
    return parsed is not None and parsed[1] <= whole_through.get(parsed[0], -1)
