"""Steering the registry: list versions, move `champion` by hand (promote, roll back), and
keep the registry from growing without bound (retention).

Every move of `champion` records on the new champion who held it before
(`champion.previous`), when and why (`champion.reason`), so a rollback knows where to go and
the MLflow UI shows the history. Retention keeps the champion, the champion it replaced and the
newest `keep_candidates` other versions; older versions go with their model artifacts (their
runs, with params and metrics, stay for the history).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from sluice.learn import registry

log = logging.getLogger(__name__)

PREVIOUS, REASON, MOVED_AT = "champion.previous", "champion.reason", "champion.moved_at"


class RegistryError(ValueError):
    """A promote or rollback that cannot be done; the message says what to do instead."""


@dataclass
class Version:
    tenant: str
    name: str
    version: str
    algorithm: str
    metric: str
    value: float | None
    window: str  # the first and last interaction trained on
    aliases: list[str]
    created_ms: int
    status: str  # the gate's validation_status

    def age(self, now: float | None = None) -> str:
        seconds = max(0.0, (now or time.time()) - self.created_ms / 1000)
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds / size:.0f}{unit}"
        return f"{seconds:.0f}s"

    def row(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "version": self.version, "algorithm": self.algorithm,
                self.metric: "-" if self.value is None else f"{self.value:.4f}",
                "data window": self.window, "alias": ",".join(self.aliases) or "-",
                "age": self.age(), "gate": self.status}


def versions(tracking_uri: str, prefix: str, metric: str,
             tenant: str | None = None) -> list[Version]:
    """Every version of the models named `<prefix><tenant>`, newest first per tenant."""
    c = registry.client(tracking_uri)
    names = [tenant] if tenant else sorted(
        m.name.removeprefix(prefix) for m in c.search_registered_models(f"name LIKE '{prefix}%'"))
    found = []
    for t in names:
        aliases = _aliases(c, f"{prefix}{t}")
        for v in c.search_model_versions(f"name = '{prefix}{t}'"):
            found.append(_describe(c, t, v, metric, aliases.get(str(v.version), [])))
    return sorted(found, key=lambda v: (v.tenant, -int(v.version)))


def _aliases(c: Any, name: str) -> dict[str, list[str]]:
    """version -> its aliases (a search of versions leaves them out)."""
    try:
        held = c.get_registered_model(name).aliases or {}
    except MlflowException:
        return {}
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(held.items()):
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def _describe(c: Any, tenant: str, v: Any, metric: str, aliases: list[str]) -> Version:
    tags, value, window = {}, None, "-"
    try:
        run = c.get_run(v.run_id) if v.run_id else None
    except MlflowException:
        run = None
    if run is not None:
        tags = run.data.tags
        value = run.data.metrics.get(metric)
        if tags.get("dataset.time_min"):
            window = f"{tags['dataset.time_min'][:10]}..{tags.get('dataset.time_max', '')[:10]}"
    return Version(tenant, v.name, str(v.version), tags.get("algorithm", "?"), metric, value,
                   window, aliases, int(v.creation_timestamp or 0),
                   (v.tags or {}).get("validation_status", "-"))


def move_champion(c: Any, name: str, version: str, reason: str) -> str | None:
    """Point `champion` at `version`, recording the one it replaces; returns that one."""
    current = registry.alias_version(c, name, registry.CHAMPION)
    previous = str(current.version) if current is not None else None
    if previous == str(version):
        return previous
    if previous is not None:
        c.set_model_version_tag(name, version, PREVIOUS, previous)
    c.set_model_version_tag(name, version, REASON, reason[:5000])
    c.set_model_version_tag(name, version, MOVED_AT, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                    time.gmtime()))
    c.set_registered_model_alias(name, registry.CHAMPION, version)
    return previous


def promote(tracking_uri: str, name: str, version: str, reason: str) -> str | None:
    """Make `version` the champion by hand; returns the version it replaced. A version that
    serving could not load (not a Sluice bundle: say a model a notebook logged with another
    flavour under the tenant's name) is refused, and the champion stays."""
    c = registry.client(tracking_uri)
    try:
        c.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}: `sluice models` lists them"
                            ) from None
    check_servable(tracking_uri, name, version)
    return move_champion(c, name, version, f"promoted by hand: {reason}")


def check_servable(tracking_uri: str, name: str, version: str) -> None:
    """Load `version`'s bundle as serving would; RegistryError saying why it cannot serve."""
    from sluice.bundle import ModelBundle

    with tempfile.TemporaryDirectory(prefix="sluice-promote-") as tmp:
        try:
            ModelBundle.load(registry.download_version(tracking_uri, name, version, Path(tmp)))
        except Exception as exc:  # what serving would report in /ready, said before the move
            said = (str(exc).strip().splitlines() or [""])[0][:300]
            raise RegistryError(
                f"{name} v{version} cannot be served ({type(exc).__name__}: {said}), so it "
                "stays where it is: register models with `sluice train` or, from a notebook, "
                "sluice.learn.training.train_tenant (README: Training by hand)") from None


def rollback(tracking_uri: str, name: str, reason: str) -> tuple[str, str]:
    """Put the champion before the current one back; returns (from, to)."""
    c = registry.client(tracking_uri)
    current = registry.alias_version(c, name, registry.CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back from: run `sluice train`")
    back = (current.tags or {}).get(PREVIOUS)
    if not back:
        raise RegistryError(f"{name} v{current.version} has no earlier champion recorded: "
                            "pick a version with `sluice promote VERSION`")
    try:
        target = c.get_model_version(name, back)
    except MlflowException:
        raise RegistryError(f"{name} v{back}, the earlier champion, is gone: pick a version "
                            "with `sluice promote VERSION`") from None
    c.set_model_version_tag(name, back, REASON, f"rolled back from v{current.version}: {reason}")
    c.set_model_version_tag(name, back, MOVED_AT,
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    c.set_registered_model_alias(name, registry.CHAMPION, target.version)
    return str(current.version), str(back)


def prune(tracking_uri: str, name: str, keep_candidates: int) -> list[str]:
    """Delete the versions retention does not keep, with their model artifacts.

    Kept: the champion, the champion it replaced, any other aliased version, and the newest
    `keep_candidates` of the rest. Returns the deleted version numbers.
    """
    c = registry.client(tracking_uri)
    all_versions = sorted(c.search_model_versions(f"name = '{name}'"),
                          key=lambda v: -int(v.version))
    champion = registry.alias_version(c, name, registry.CHAMPION)
    keep = set(_aliases(c, name))
    if champion is not None:
        keep.add(str(champion.version))
        keep.add((champion.tags or {}).get(PREVIOUS, ""))
    rest = [v for v in all_versions if str(v.version) not in keep]
    deleted = []
    for v in rest[keep_candidates:]:
        _delete(c, name, v)
        deleted.append(str(v.version))
    if deleted:
        log.info("retention: deleted %s versions %s (kept %d)", name, ", ".join(deleted),
                 len(all_versions) - len(deleted))
    return deleted


def _delete(c: Any, name: str, v: Any) -> None:
    """The version, then its model's artifacts (the bundle: most of the bytes)."""
    c.delete_model_version(name, v.version)
    source = v.source or ""
    try:
        if source.startswith("models:/"):  # MLflow 3: a logged model, with its own folder
            model_id = source.removeprefix("models:/")
            get_artifact_repository(c.get_logged_model(model_id).artifact_location
                                    ).delete_artifacts()
            c.delete_logged_model(model_id)
        elif source:
            get_artifact_repository(source).delete_artifacts()
    except (MlflowException, OSError) as exc:  # the version is gone; the bytes may linger
        log.warning("retention: artifacts of %s v%s not deleted: %s", name, v.version, exc)
