"""Online experiments: their definitions, validation, durable store and arm assignment.

An experiment splits one tenant's traffic (one template, or all: `*`) between two or more
arms, each a registered model version or alias. A template is a built-in one (it then covers
the configured templates built on it too) or one the config defines (then only requests naming
it, and it wins over one on its base). Kind `ab` sends each visitor to one arm by share; kind
`interleaving` merges two arms into every answer (team draft, sluice.serve).

Assignment: each experiment hashes one unit per request, set by its `unit`:

- `session` (the default, and every experiment stored before `unit` existed): the request's
  session id when it carries one, else its user id. An anonymous session that logs in sends
  the same session id with the user id, so it keeps its arm; but a logged-in user who starts
  a new session on each visit is hashed afresh each time, so sees both arms across sessions
  and counts as several units (contamination, and units that are not independent).
- `user`: the request's user id when it carries one, else its session id. A logged-in user
  keeps one arm in every session, worker, restart and replica, and counts as one unit; the
  trade-off is at login: an anonymous session is hashed by its session id until it sends a
  user id, then by the user's, so its arm may change at login, and its anonymous answers
  count as their own (session) unit. Pick `user` when most traffic is logged in and users
  come back across sessions; keep `session` for anonymous-heavy traffic, or when a visitor
  seeing both arms at login would spoil the metric (a checkout flow).

Either way, a request with neither id has no unit to keep: its arm is drawn by share for that
answer alone (the answer log records such an answer as its own session,
`anonymous-<recommendation id>`, so the marts count it as its own unit; one shared hash would
send them all to one arm). Every answer of an experiment logs its `unit`, and the marts
(int_experiment_slots) take each answer's unit id by the same rule, so the analysis counts
the units assignment hashed: with `user`, one user's sessions are one unit, and a unit seen
in several arms is still counted as crossed and left out of every arm.
Definitions live in `$SLUICE_HOME/experiments.json` (sluice.store), so every worker sees one
created by the CLI or the admin routes within a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sluice.errors import InputError, NotFoundError
from sluice.store import JsonStore, StoreError
from sluice.vocabulary import TEMPLATES, TENANT_RULE, is_tenant

log = logging.getLogger(__name__)

ALL_TEMPLATES = "*"
KINDS = ("ab", "interleaving")
UNITS = ("session", "user")  # what assignment hashes first (module doc); session: the default
METRICS = ("click_through_rate", "conversion_rate", "purchases_per_user")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
INTERLEAVED = "interleaved"  # the answer-level arm of an interleaved answer
REFRESH_SECONDS = 1.0


class ExperimentError(InputError):
    """An experiment definition that is wrong (field + reason)."""


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # a registered version number ("3") or an alias ("champion", "challenger")
    share: float


@dataclass(frozen=True)
class Experiment:
    id: str
    tenant: str
    arms: tuple[Arm, ...]
    template: str = ALL_TEMPLATES
    kind: str = "ab"
    metric: str = "click_through_rate"
    start_ms: int = 0
    end_ms: int | None = None
    stopped_ms: int | None = None
    unit: str = "session"  # UNITS: a stored experiment without one is `session`
    _bounds: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        edges, total = [], 0.0
        for arm in self.arms:
            total += arm.share
            edges.append(total)
        object.__setattr__(self, "_bounds", tuple(edges))

    def running(self, now_ms: int) -> bool:
        ends = [t for t in (self.end_ms, self.stopped_ms) if t is not None]
        return self.start_ms <= now_ms and all(now_ms < t for t in ends)

    def covers(self, template: str) -> bool:
        return self.template in (ALL_TEMPLATES, template)

    def assign(self, user_id: str | None, session_id: str | None,
               draw: Callable[[], float] = random.random) -> Arm:
        """The unit's arm: stable for (experiment, unit) in every process; without a unit,
        drawn by share for this answer alone (`draw`, uniform on [0, 1); see module doc)."""
        unit = unit_id(self.unit, user_id, session_id)
        if unit:
            digest = hashlib.blake2b(f"{self.id}\x00{unit}".encode("utf-8", "surrogatepass"),
                                     digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2.0**64 * self._bounds[-1]
        else:
            point = draw() * self._bounds[-1]
        for arm, edge in zip(self.arms, self._bounds, strict=True):
            if point < edge:
                return arm
        return self.arms[-1]

    def as_dict(self) -> dict:
        found = asdict(self)
        found.pop("_bounds")
        return found

    @classmethod
    def from_dict(cls, raw: dict) -> Experiment:
        """An experiment as stored (or sent); one stored without `unit` is `session`, the
        rule it was assigned by; an unknown unit is refused (ExperimentError names it)."""
        arms = tuple(Arm(str(a["name"]), str(a["model"]), float(a["share"])) for a in raw["arms"])
        found = cls(**{**{k: v for k, v in raw.items() if k != "_bounds"}, "arms": arms})
        _validate_unit(found.unit)
        return found


def unit_id(unit: str, user_id: str | None, session_id: str | None) -> str | None:
    """The id an experiment with this `unit` hashes for a request (None: neither id)."""
    return (user_id or session_id) if unit == "user" else (session_id or user_id)


def parse_arms(specs: Iterable[str]) -> tuple[Arm, ...]:
    """Arms from `name=model:share` (CLI form); share defaults to an equal split."""
    parsed = []
    for spec in specs:
        name, _, rest = spec.partition("=")
        model, _, share = rest.partition(":")
        if not name or not model:
            raise ExperimentError("arms", f"{spec!r}: write NAME=MODEL[:SHARE], e.g. "
                                  "control=champion:0.5")
        try:
            parsed.append((name, model, float(share) if share else None))
        except ValueError:
            raise ExperimentError("arms", f"{spec!r}: the share must be a number") from None
    equal = 1.0 / len(parsed) if parsed else 0.0
    return tuple(Arm(n, m, equal if s is None else s) for n, m, s in parsed)


def validate(exp: Experiment, others: Iterable[Experiment],
             model_exists: Callable[[str], bool] | None = None,
             templates: Iterable[str] = TEMPLATES) -> None:
    """Raises ExperimentError naming the first field at fault. `templates`: the names an
    experiment may split (the built-in ones, and those the config defines)."""
    if not ID_PATTERN.match(exp.id):
        raise ExperimentError("id", "1-64 letters, digits, '_', '.', '-', starting with a "
                              "letter or digit")
    if not is_tenant(exp.tenant):
        raise ExperimentError("tenant", TENANT_RULE)
    templates = tuple(templates)
    if exp.template != ALL_TEMPLATES and exp.template not in templates:
        raise ExperimentError("template", f"no template {exp.template!r}: one of "
                              f"{', '.join(templates)} or '*' (all)")
    if exp.kind not in KINDS:
        raise ExperimentError("kind", f"one of {', '.join(KINDS)}")
    if exp.metric not in METRICS:
        raise ExperimentError("metric", f"one of {', '.join(METRICS)}")
    _validate_unit(exp.unit)
    _validate_arms(exp, model_exists)
    if exp.end_ms is not None and exp.end_ms <= exp.start_ms:
        raise ExperimentError("end_ms", "must be after the start")
    for other in others:
        if other.id == exp.id:
            raise ExperimentError("id", f"experiment {exp.id!r} exists already")
        if _overlaps(exp, other):
            raise ExperimentError("template", f"overlaps experiment {other.id!r} on the same "
                                  "tenant and template: stop it first or pick other traffic")


def _validate_unit(unit: object) -> None:
    if unit not in UNITS:
        raise ExperimentError("unit", f"{unit!r} is not a unit: one of {', '.join(UNITS)} "
                              "(session: the session id, else the user id; user: the user id, "
                              "else the session id)")


def _validate_arms(exp: Experiment, model_exists: Callable[[str], bool] | None) -> None:
    if len(exp.arms) < 2:
        raise ExperimentError("arms", "an experiment needs at least two arms")
    if exp.kind == "interleaving" and len(exp.arms) != 2:
        raise ExperimentError("arms", "interleaving merges exactly two arms")
    names = [a.name for a in exp.arms]
    if len(set(names)) != len(names) or not all(ID_PATTERN.match(n) for n in names):
        raise ExperimentError("arms", "arm names must be distinct ids (letters, digits, _.-)")
    if any(not (a.share > 0) or not math.isfinite(a.share) for a in exp.arms):
        raise ExperimentError("arms", "every share must be a positive number")
    if abs(sum(a.share for a in exp.arms) - 1.0) > 1e-6:
        raise ExperimentError("arms", f"shares sum to {sum(a.share for a in exp.arms):g}, "
                              "not 1")
    for arm in exp.arms:
        if model_exists is not None and not model_exists(arm.model):
            raise ExperimentError("arms", f"arm {arm.name!r}: no registered version or alias "
                                  f"{arm.model!r} for tenant {exp.tenant!r}: train or alias "
                                  "one first")


def _overlaps(a: Experiment, b: Experiment) -> bool:
    if a.tenant != b.tenant or not (a.covers(b.template) or b.covers(a.template)):
        return False
    a_end = min((t for t in (a.end_ms, a.stopped_ms) if t is not None), default=math.inf)
    b_end = min((t for t in (b.end_ms, b.stopped_ms) if t is not None), default=math.inf)
    return a.start_ms < b_end and b.start_ms < a_end


class Experiments:
    """The experiments of a home; `running` is cheap enough to call on every answer.

    One stored experiment that cannot be read (a hand edit, a unit or kind this version does
    not know, written by a newer replica) is left out, named once in the log and kept in
    `unreadable`: the others, of its tenant and of every other, go on being applied."""

    def __init__(self, home: Path):
        self._store = JsonStore(Path(home) / "experiments.json")
        self._lock = threading.Lock()
        self._checked = -math.inf
        self._all: dict[str, Experiment] = {}
        self.unreadable: dict[str, str] = {}  # experiment id -> what is wrong, and what to do
        self._said: set[str] = set()  # the problems logged already (each said once)

    def all(self, fresh: bool = False) -> dict[str, Experiment]:
        """Every readable experiment; re-read at most once a second unless `fresh` (answers
        ask often, the CLI and admin routes want what another process wrote a moment ago).
        A store that is not JSON at all raises StoreError when `fresh`; answers then go on
        with the last experiments read."""
        with self._lock:
            if fresh or time.monotonic() - self._checked >= REFRESH_SECONDS:
                self._checked = time.monotonic()
                try:
                    self._all, self.unreadable = self._parse(self._store.read())
                except StoreError as exc:
                    if fresh:
                        raise
                    self._say(f"experiments not applied: {exc}")
                for problem in self.unreadable.values():
                    self._say(f"experiment not applied, answers go on outside it: {problem}")
            return self._all

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            log.warning("%s", message)

    def _parse(self, stored: dict[str, str]) -> tuple[dict[str, Experiment], dict[str, str]]:
        """The stored definitions that are experiments, and for each one that is not (a
        missing field, an unknown unit) a line naming the file, the experiment and the field."""
        found, unreadable = {}, {}
        for key, value in stored.items():
            try:
                found[key] = Experiment.from_dict(json.loads(value))
            except ExperimentError as exc:
                unreadable[key] = (f"{self._store.path}: experiment {key!r}: {exc}: fix it, "
                                   "or remove the experiment")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                unreadable[key] = (f"{self._store.path}: experiment {key!r} is not an "
                                   f"experiment ({type(exc).__name__}: {exc}): fix it, or "
                                   "remove it")
        return found, unreadable

    def get(self, experiment_id: str) -> Experiment:
        found = self.all(fresh=True).get(experiment_id)
        if found is None:
            if experiment_id in self.unreadable:
                raise StoreError(self.unreadable[experiment_id])
            raise NotFoundError("experiment", f"no experiment {experiment_id!r}: "
                                "`sluice experiments list` shows them")
        return found

    def running(self, tenant: str, template: str, now_ms: int | None = None,
                name: str | None = None) -> Experiment | None:
        """The experiment splitting this traffic: `template` is the built-in template the
        request resolved to, `name` the configured template it named (if any). The most
        specific wins: one on that configured template, else one on its built-in template
        (or all)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        broad = None
        for exp in self.all().values():
            if exp.tenant != tenant or not exp.running(now):
                continue
            if name is not None and exp.template == name:
                return exp
            if broad is None and exp.covers(template):
                broad = exp
        return broad

    def create(self, exp: Experiment, model_exists: Callable[[str], bool] | None = None,
               templates: Iterable[str] = TEMPLATES) -> Experiment:
        validate(exp, self.all(fresh=True).values(), model_exists, templates)
        if exp.id in self.unreadable:
            raise ExperimentError("id", f"experiment {exp.id!r} exists already and cannot be "
                                        f"read: {self.unreadable[exp.id]}")
        self._put(exp)
        return exp

    def stop(self, experiment_id: str, now_ms: int | None = None) -> Experiment:
        exp = self.get(experiment_id)
        if exp.stopped_ms is None:
            stopped = int(time.time() * 1000) if now_ms is None else now_ms
            exp = Experiment.from_dict({**exp.as_dict(), "stopped_ms": stopped})
            self._put(exp)
        return exp

    def _put(self, exp: Experiment) -> None:
        self._store.read()  # what another process wrote is kept by the write that follows
        stored = exp.as_dict()
        if stored["unit"] == "session":  # as before `unit` existed: older readers read it too
            stored.pop("unit")
        self._store.put(exp.id, json.dumps(stored))
        self._checked = -math.inf
