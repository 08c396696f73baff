"""Which model each tenant serves: the registry's `champion` alias, downloaded and loaded when
it moves, with a status per tenant for readiness (and the reason when it could not load)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass

from sluice.bundle import ModelBundle
from sluice.intake.trackers import Trackers
from sluice.learn import registry
from sluice.serve.model import LoadedModel
from sluice.settings import Settings
from sluice.vocabulary import DEFAULT_TENANT

log = logging.getLogger(__name__)


@dataclass
class ModelStatus:
    tenant: str
    version: str | None = None
    loaded_at: float | None = None
    error: str | None = None
    cutoff_ms: int | None = None
    trained_at_ms: int | None = None


class Champions:
    """The champion of every known tenant, polled from the registry."""

    def __init__(self, settings: Settings, trackers: Trackers):
        self.settings, self.trackers = settings, trackers
        self.models: dict[str, ModelStatus] = {}

    def tenants(self) -> list[str]:
        known = {DEFAULT_TENANT, *self.trackers.tenants(), *self.models}
        prefix = f"{self.settings.app.model.name}-"
        try:
            client = registry.client(self.settings.mlflow_tracking_uri)
            for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
                known.add(model.name.removeprefix(prefix))
        except Exception as exc:  # the registry being down must not stop serving
            log.warning("model registry unreachable: %s", exc)
            registry.reset_connections(self.settings.mlflow_tracking_uri)
        return sorted(known)

    def poll(self, tenant: str) -> LoadedModel | None:
        """The tenant's champion when it moved since the last poll (loaded), else None; the
        caller swaps it in, then calls `served`."""
        status = self.models.setdefault(tenant, ModelStatus(tenant))
        name = self.settings.registered_model_name(tenant)
        try:
            found = self._download(status, name)
            if found is None:
                return None
            bundle, version = found
        except Exception as exc:  # a broken store or artifact: keep answering from fallbacks
            registry.reset_connections(self.settings.mlflow_tracking_uri)
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            status.error = f"champion of {name} could not be loaded: {type(exc).__name__}: {reason}"
            log.warning(status.error)
            return None
        serving = self.settings.app.serving
        return LoadedModel(bundle, version, serving.ranking_cache_size, serving.ann)

    def served(self, tenant: str, model: LoadedModel) -> None:
        """Readiness reports the model once it answers."""
        status = self.models[tenant]
        status.version, status.loaded_at, status.error = model.version, time.time(), None
        status.cutoff_ms = model.bundle.meta.get("cutoff_ms")
        status.trained_at_ms = model.bundle.meta.get("trained_at_ms")
        log.info("serving %s v%s", self.settings.registered_model_name(tenant), model.version)

    def _download(self, status: ModelStatus, name: str) -> tuple[ModelBundle, str] | None:
        """The champion's bundle and version, unless there is none or it is the one served."""
        client = registry.client(self.settings.mlflow_tracking_uri)
        version = registry.alias_version(client, name, registry.CHAMPION)
        if version is None:
            status.error = status.error or f"no models:/{name}@champion yet"
            return None
        if str(version.version) == status.version:
            return None
        target = registry.local_copy(self.settings.mlflow_tracking_uri, name,
                                     str(version.version), self.settings.home / "serving-models")
        try:
            return ModelBundle.load(target), str(version.version)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)  # download again at the next poll
            raise
