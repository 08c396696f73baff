"""MLflow tracking and registry: experiments per tenant, aliases `candidate` and `champion`."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

CANDIDATE, CHAMPION = "candidate", "champion"

# MLflow's own chatter (alembic migrations, "model registered") is not Sluice's to show.
for noisy in ("alembic", "mlflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass
class Champion:
    name: str
    version: str
    run_id: str | None
    local_path: Path


def client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# stores MLflow opens in-process (SQLAlchemy) and so migrates on first use; any other
# (http, https, databricks) is a tracking server that migrates its own
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
PREPARE_SECONDS = 30.0  # how long `prepare_store` waits for a database that does not answer


def prepare_store(tracking_uri: str, timeout: float = PREPARE_SECONDS) -> str | None:
    """Create or migrate the tracking and registry tables of a database store now, once:
    serving workers started together (`sluice serve --workers N`) each open the store, and on
    a new or older one each would run MLflow's migrations at the same time, breaking one
    another's ("duplicate column name: step"). A tracking server's store is its own to migrate:
    nothing to do. None when the store is ready; else one line saying why not (a database that
    does not answer within `timeout`: MLflow retries for about 100 s, quietly here), for the
    caller to say and go on (each worker then reaches the store, or not, at its own poll)."""
    if tracking_uri.split(":", 1)[0].split("+", 1)[0] not in DATABASE_SCHEMES:
        return None
    failed: list[str] = []

    def open_both() -> None:
        quiet = logging.getLogger("mlflow.store.db.utils")  # its retry warnings, each a
        level = quiet.level                                  # traceback's worth of lines
        quiet.setLevel(logging.ERROR)
        try:
            c = client(tracking_uri)
            c.search_experiments(max_results=1)  # the tracking store, migrated
            c.search_registered_models(max_results=1)  # the registry's (the same tables)
        except Exception as exc:
            failed.append(_first_line(exc))
        finally:
            reset_connections(tracking_uri)  # the workers open their own: hold none here
            quiet.setLevel(level)

    opening = threading.Thread(target=open_both, name="registry-prepare", daemon=True)
    opening.start()
    opening.join(timeout)
    where = _without_password(tracking_uri)
    if opening.is_alive():
        return f"model registry {where} did not answer within {timeout:.0f} s"
    if failed:
        return f"model registry {where} could not be opened: {failed[0]}"
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def _without_password(uri: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or "/" in credentials or ":" not in credentials:
        return uri
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***{at}{host}"


def experiment(c: MlflowClient, name: str, artifact_root: Path | str) -> str:
    """The experiment's id, created with its artifacts under `artifact_root`: a folder, or a
    URL such as s3://bucket/prefix that MLflow's artifact stores write to themselves."""
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if isinstance(artifact_root, str):
        return c.create_experiment(name, artifact_location=f"{artifact_root}/{name}")
    artifact_root.mkdir(parents=True, exist_ok=True)
    return c.create_experiment(name, artifact_location=(artifact_root / name).as_uri())


def alias_version(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind the alias; None when the model or the alias does not exist. Any
    other failure (a broken store) is raised as itself, so it is reported for what it is."""
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))
        if missing:
            return None
        raise


def version_of(c: MlflowClient, name: str, ref: str) -> ModelVersion | None:
    """The model version a reference names: a version number ("3") or an alias; None if none."""
    if ref.isdigit():
        try:
            return c.get_model_version(name, ref)
        except MlflowException:
            return None
    return alias_version(c, name, ref)


def ref_exists(tracking_uri: str, name: str, ref: str) -> bool:
    """Whether `name` has version or alias `ref` (experiments check their arms with it)."""
    return version_of(client(tracking_uri), name, ref) is not None


def download_alias(tracking_uri: str, name: str, alias: str = CHAMPION,
                   dst: Path | None = None) -> Champion | None:
    """The version behind `models:/<name>@<alias>`, downloaded; None when there is none."""
    c = client(tracking_uri)
    version = alias_version(c, name, alias)
    if version is None:
        return None
    if dst is not None:
        dst.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}@{alias}", dst_path=str(dst) if dst else None)
    return Champion(name, str(version.version), version.run_id, Path(path))


def download_version(tracking_uri: str, name: str, version: str, dst: Path) -> Path:
    """Version `version` of `name`, downloaded into `dst`; NotFoundError when there is none."""
    from sluice.errors import NotFoundError

    c = client(tracking_uri)
    try:
        c.get_model_version(name, version)
    except MlflowException as exc:
        raise NotFoundError("model_version", f"{name} has no version {version!r}: `sluice models` "
                                             "lists them, or leave it out for the champion"
                            ) from exc
    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                    dst_path=str(dst)))


def local_copy(tracking_uri: str, name: str, version: str, root: Path) -> Path:
    """Version `version` of `name` under `root/name/version`, downloaded once.

    The download goes to a private folder first and is renamed into place whole, so the
    processes that share `root` (the workers of one server, a batch job) never read a copy
    that another one is still writing.
    """
    target = root / name / str(version)
    if (target / "ready").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        download_version(tracking_uri, name, str(version), scratch)
        (scratch / "ready").touch()
        try:
            os.rename(scratch, target)
        except OSError:  # another process renamed its copy into place first, or a torn one
            if not (target / "ready").exists():  # is left from before: replace that
                shutil.rmtree(target, ignore_errors=True)
                os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def reset_connections(tracking_uri: str) -> None:
    """Drop MLflow's pooled database connections for `tracking_uri`.

    MLflow keeps one SQLAlchemy engine per store URI for the life of the process; after a
    failure (a corrupt SQLite file that is then replaced, a database that restarted) its
    pooled connections may still point at what broke. Disposing the pool makes the next call
    connect afresh, so serving recovers without a restart.
    """
    try:  # MLflow internals: if they move, recovery needs a restart again, nothing worse
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking
    except ImportError:
        return
    for store in (Tracking, Registry):
        engine = getattr(store, "_engine_map", {}).get(tracking_uri)
        if engine is not None:
            engine.dispose()
