"""Event trackers: a trackingId per tenant (a dataset group), from config or created at run time.

Trackers created with `sluice trackers create` live in `$SLUICE_HOME/trackers.json`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from sluice.settings import Settings
from sluice.store import JsonStore
from sluice.vocabulary import TENANT_RULE, is_tenant


class TrackerError(ValueError):
    pass


class Trackers:
    def __init__(self, settings: Settings):
        self._configured = {t.tracking_id: t.tenant for t in settings.app.trackers}
        self._created = JsonStore(settings.home / "trackers.json")

    def all(self) -> dict[str, str]:
        return {**self._created.read(), **self._configured}

    def tenant(self, tracking_id: str) -> str | None:
        """The tenant of a trackingId (a write credential: compared in constant time)."""
        presented = hashlib.sha256(tracking_id.encode("utf-8", "surrogatepass")).digest()
        found = None
        for known, tenant in self.all().items():
            digest = hashlib.sha256(known.encode("utf-8", "surrogatepass")).digest()
            if hmac.compare_digest(digest, presented) and found is None:
                found = tenant
        return found

    def tenants(self) -> set[str]:
        return set(self.all().values())

    def create(self, tenant: str) -> str:
        if not is_tenant(tenant):
            raise TrackerError(f"tenant {tenant!r}: {TENANT_RULE}")
        if tenant in self.tenants():
            raise TrackerError(f"tenant {tenant!r} already has an event tracker "
                               "(one tracker per tenant, as in Personalize)")
        tracking_id = str(uuid.uuid4())
        self._created.put(tracking_id, tenant)
        return tracking_id
