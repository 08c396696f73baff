"""What serving knows beyond the model: every event in the raw log, applied as it arrives.

Histories are keyed like training keys them: the user id, or for an anonymous visitor the
configured prefix + session id. The first event carrying both user and session ties that
session to the user, and the session's history moves to the user at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sluice.intake.log_positions import NO_POSITION
from sluice.serve.held import HeldColumns, HeldSnapshot
from sluice.vocabulary import DEFAULT_TENANT

_STATEFUL = frozenset({"item", "interaction", "ranking"})


@dataclass(slots=True)
class Interaction:
    item_id: str
    type: str
    timestamp: int
    value: float | None = None
    # where the event's line ends in the raw log (sluice.intake.log_positions): whether a
    # model trained on it is told by this, not by its time; NO_POSITION when not known
    position: int = NO_POSITION


@dataclass
class TenantState:
    histories: dict[str, list[Interaction]] = field(default_factory=lambda: defaultdict(list))
    session_user: dict[str, str] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> latest fields
    versions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    event_ids: set[str | None] = field(default_factory=set)  # as logged: an id, or none
    # the interactions of `histories` again, by column, and each item's count of them
    held: HeldColumns = field(default_factory=HeldColumns)
    interactions: int = 0


class RealtimeState:
    """Thread-safe per-tenant histories, identity map and item catalog updates."""

    def __init__(self, anonymous_prefix: str = "session:"):
        self.anonymous_prefix = anonymous_prefix
        self._tenants: dict[str, TenantState] = defaultdict(TenantState)
        self._lock = threading.Lock()
        self.applied = 0

    def tenant(self, tenant: str) -> TenantState:
        return self._tenants[tenant]

    def tenants(self) -> list[str]:
        """The tenants with a user's history."""
        return sorted(t for t, state in list(self._tenants.items()) if state.histories)

    def has(self, tenant: str) -> bool:
        """Whether an event of `tenant` was applied (asking creates nothing)."""
        return tenant in self._tenants

    def user_key(self, tenant: str, user_id: str | None, session_id: str | None) -> str | None:
        if user_id:
            return user_id
        if session_id:
            state = self._tenants[tenant]
            return state.session_user.get(session_id, self.anonymous_prefix + session_id)
        return None

    def history(self, tenant: str, key: str | None) -> list[Interaction]:
        if key is None:
            return []
        with self._lock:
            return list(self._tenants[tenant].histories.get(key, ()))

    def histories(self, tenant: str) -> list[list[Interaction]]:
        """Every history of `tenant`, as the lists themselves: read them without the lock (an
        event appended meanwhile is one more at the end)."""
        with self._lock:
            state = self._tenants.get(tenant)
            return list(state.histories.values()) if state is not None else []

    def held(self, tenant: str) -> HeldSnapshot:
        """Every interaction of `tenant` held now, by column (`sluice.serve.held`)."""
        with self._lock:
            state = self._tenants.get(tenant)
            return (state.held if state is not None else HeldColumns()).snapshot()

    def version(self, tenant: str, key: str) -> int:
        return self._tenants[tenant].versions.get(key, 0)

    def apply(self, events: list[dict[str, Any]], positions: Sequence[int] | None = None) -> int:
        """Apply events (internal form); an event id seen before is ignored. Returns applied.
        `positions`: each event's position in the raw log, when known (as written or read)."""
        applied = 0
        with self._lock:
            for number, event in enumerate(events):
                kind = event.get("event")
                if kind not in _STATEFUL:  # answers logged back, users: no state, no id kept
                    continue
                state = self._tenants[event.get("tenant", DEFAULT_TENANT)]
                event_id = event.get("id")
                if event_id in state.event_ids:
                    continue
                state.event_ids.add(event_id)
                applied += 1
                if kind == "item":
                    state.items.setdefault(event["item"], {}).update(event.get("fields") or {})
                elif kind in ("interaction", "ranking"):
                    self._identify(state, event.get("user"), event.get("session"))
                    if kind == "interaction":
                        self._record(state, event,
                                     NO_POSITION if positions is None else positions[number])
        self.applied += applied
        return applied

    def _identify(self, state: TenantState, user: str | None, session: str | None) -> None:
        if not (user and session) or session in state.session_user:
            return
        state.session_user[session] = user
        anonymous = state.histories.pop(self.anonymous_prefix + session, None)
        if anonymous:
            state.histories[user] = sorted(
                [*state.histories.get(user, []), *anonymous], key=lambda i: i.timestamp)
            state.versions[user] += 1

    def _record(self, state: TenantState, event: dict[str, Any], position: int) -> None:
        user, session = event.get("user"), event.get("session")
        key = user or state.session_user.get(session or "", self.anonymous_prefix + str(session))
        state.histories[key].append(Interaction(event["item"], event["type"],
                                                event["timestamp"], event.get("value"), position))
        state.versions[key] += 1
        state.held.add(event["item"], event["timestamp"], position)
        state.interactions += 1

    def popular(self, tenant: str, n: int) -> list[tuple[str, float]]:
        """The n items interacted with most often in the log (a fallback without a model)."""
        state = self._tenants.get(tenant)
        if state is None:
            return []
        with self._lock:
            names, counts = state.held.counted()
        top = np.argsort(-counts, kind="stable")[:n]  # ties: the item seen first first
        return [(names[j], float(counts[j])) for j in top.tolist()]
