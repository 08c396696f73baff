"""Event trackers: a trackingId per tenant (a dataset group), from config or created at run time.

Trackers created with `sluice trackers create` live in `$SLUICE_HOME/trackers.json`, written
atomically; serving re-reads the file when it meets an id it does not know.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid

from sluice.settings import Settings

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TrackerError(ValueError):
    pass


class Trackers:
    def __init__(self, settings: Settings):
        self.path = settings.home / "trackers.json"
        self._configured = {t.tracking_id: t.tenant for t in settings.app.trackers}
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._created: dict[str, str] = {}

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._mtime:
            self._created = json.loads(self.path.read_text())
            self._mtime = mtime

    def all(self) -> dict[str, str]:
        with self._lock:
            self._reload()
            return {**self._created, **self._configured}

    def tenant(self, tracking_id: str) -> str | None:
        found = self._configured.get(tracking_id) or self._created.get(tracking_id)
        return found if found is not None else self.all().get(tracking_id)

    def tenants(self) -> set[str]:
        return set(self.all().values())

    def create(self, tenant: str) -> str:
        if not _TENANT_RE.match(tenant):
            raise TrackerError(f"tenant {tenant!r}: 1-64 letters, digits, '_', '.', '-'")
        with self._lock:
            self._reload()
            existing = {**self._created, **self._configured}
            if tenant in existing.values():
                raise TrackerError(f"tenant {tenant!r} already has an event tracker "
                                   "(one tracker per tenant, as in Personalize)")
            tracking_id = str(uuid.uuid4())
            created = {**self._created, tracking_id: tenant}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(created, indent=2))
            os.replace(tmp, self.path)
            self._created, self._mtime = created, self.path.stat().st_mtime
            return tracking_id
