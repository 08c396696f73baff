"""`sluice doctor`: checks the environment and the home, and says how to fix each problem.

Package versions are checked against `requirements.lock` when the project has one (exact
versions), else against the ranges that pyproject.toml declares.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import shutil
import sqlite3
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import duckdb
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from sluice import formats
from sluice.operate import services, upgrade
from sluice.operate.services import Finding
from sluice.settings import PROJECT_ROOT, ConfigError, Settings
from sluice.warehouse.db import count
from sluice.warehouse.engine import MissingTable, from_settings

LOCK_FILE = "requirements.lock"
MIN_FREE_BYTES = 1 << 30


def diagnose(settings: Settings, root: Path = PROJECT_ROOT,
             min_free: int = MIN_FREE_BYTES) -> list[Finding]:
    checks: list[Callable[[], Iterator[Finding]]] = [
        lambda: _config(settings),
        lambda: _python(root), lambda: _packages(root), lambda: _folders(settings),
        lambda: _home(settings),
        lambda: _disk(settings, min_free), lambda: _warehouse(settings),
        lambda: _mlflow(settings), lambda: _formats(settings), lambda: services.prefect(),
        lambda: services.ports(settings),
    ]
    return [finding for check in checks for finding in check()]


def _config(settings: Settings) -> Iterator[Finding]:
    """The config file loads: every key known, every value in range (what each flow needs)."""
    try:
        settings.app  # noqa: B018 -- loading is the check
    except ConfigError as exc:
        yield Finding("config", str(exc), f"edit {settings.config} (or point SLUICE_CONFIG "
                                          "at a valid one)")
    else:
        yield Finding("config", note=str(settings.config))


def _python(root: Path) -> Iterator[Finding]:
    wanted = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    here = platform.python_version()
    if here in SpecifierSet(wanted):
        yield Finding("python", note=here)
    else:
        yield Finding("python", f"Python {here} is outside {wanted}",
                      f"install Python {wanted}, then `make install`")


def _packages(root: Path) -> Iterator[Finding]:
    wanted = _locked(root / LOCK_FILE) or _declared(root / "pyproject.toml")
    source = LOCK_FILE if (root / LOCK_FILE).exists() else "pyproject.toml"
    wrong = []
    for name, spec in sorted(wanted.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if spec and have not in SpecifierSet(spec):
            wrong.append(f"{name} {have} not {spec}")
    if wrong:
        yield Finding("packages", f"{len(wrong)} package(s) differ from {source}: "
                      + ", ".join(wrong[:5]), "make install")
    else:
        yield Finding("packages", note=f"{len(wanted)} as {source} says")


def _locked(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip-tools/uv lock (hashes and comments skipped)."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        found[canonicalize_name(req.name)] = str(req.specifier)
    return found


def _declared(path: Path) -> dict[str, str]:
    project = tomllib.loads(path.read_text())["project"]
    return {canonicalize_name(r.name): str(r.specifier)
            for r in map(Requirement, project["dependencies"])}


def _folders(settings: Settings) -> Iterator[Finding]:
    """Every folder Sluice writes into takes a new file, and the files it rewrites open for
    writing (a read-only mount, an immutable flag or another owner stop them)."""
    folders = [settings.home] + ([] if settings.raw_url else [settings.raw_dir])
    files = [settings.warehouse_path]
    if isinstance(settings.artifact_root, Path):  # a bucket is MLflow's to reach, not a folder
        folders.append(settings.artifact_root)
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        files.append(Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")))
        folders.append(files[-1].parent)
    for path in [*dict.fromkeys(folders), *files]:
        try:
            if path in folders:
                path.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path):
                    pass
            elif path.exists():
                with open(path, "ab"):  # opened for writing, nothing written
                    pass
        except OSError as exc:
            yield Finding("folders", f"{path} is not writable ({exc.strerror})",
                          _write_fix(path, exc))
            return
    yield Finding("folders", note="writable")


def _write_fix(path: Path, exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return (f"remount the filesystem of {path} read-write, or point SLUICE_HOME at a "
                "writable place")
    if exc.errno == errno.EPERM:
        return f"chattr -i {path}  (it is immutable), or point SLUICE_HOME elsewhere"
    return f"chown -R $(id -un) {path} && chmod -R u+w {path}  (or move SLUICE_HOME)"


def _home(settings: Settings) -> Iterator[Finding]:
    """A restore that did not finish, a WAL left without its warehouse, the warehouse lock."""
    try:
        formats.check_home(settings.home)
    except formats.RestoreUnfinishedError as exc:
        yield Finding("home", str(exc), "sluice restore SRC  (the backup it names)")
        return
    warehouse = settings.warehouse_path
    wal = Path(f"{warehouse}.wal")
    if wal.exists() and not warehouse.exists():
        yield Finding("home", f"{wal} is left without {warehouse.name}: it would be replayed "
                      "onto a new warehouse", "sluice rebuild  (sets it aside, then rebuilds "
                      "the warehouse from the raw log and landing folder)")
        return
    yield Finding("home", note=f"warehouse lock {_lock_state(warehouse)}")


def _lock_state(warehouse: Path) -> str:
    path = Path(f"{warehouse}.lock")
    if not path.exists():
        return "free"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return "not readable"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held by a running ingest, transform or train (other flows wait for it)"
    finally:
        os.close(fd)  # releases what was taken
    return "free (its file outlives the runs that held it: nothing to remove)"


def _disk(settings: Settings, min_free: int) -> Iterator[Finding]:
    free = shutil.disk_usage(_existing(settings.home)).free
    if free < min_free:
        yield Finding("disk", f"only {free / 2**30:.1f} GiB free under {settings.home}",
                      f"free space there, or move SLUICE_HOME (needs {min_free / 2**30:.0f} GiB)")
    else:
        yield Finding("disk", note=f"{free / 2**30:.1f} GiB free")


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _warehouse(settings: Settings) -> Iterator[Finding]:
    try:
        postgres = settings.app.warehouse.engine == "postgres"
    except ConfigError:  # the config's own check reports it
        postgres = False
    if postgres:
        yield from _postgres_warehouse(settings)
        return
    path = settings.warehouse_path
    if not path.exists():
        yield Finding("warehouse", note="none yet (`sluice ingest` creates it)")
        return
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():  # a running ingest/transform/train holds it: fine
            yield Finding("warehouse", note="in use by a running job")
            return
        yield Finding("warehouse", f"{path} cannot be read: {exc}", _warehouse_fix(path))
        return
    except duckdb.Error as exc:
        yield Finding("warehouse", f"{path} cannot be read: {exc}", _warehouse_fix(path))
        return
    try:
        rows = count(con, "select count(*) from raw.events")
        yield Finding("warehouse", note=f"{rows:,} raw events")
    except duckdb.Error as exc:
        yield Finding("warehouse", f"{path} cannot be read: {exc}", _warehouse_fix(path))
    finally:
        con.close()


def _postgres_warehouse(settings: Settings) -> Iterator[Finding]:
    """The server at SLUICE_WAREHOUSE_DSN answers, and how many raw events it holds."""
    try:
        warehouse = from_settings(settings)
    except (ConfigError, ValueError) as exc:  # no DSN, or one that does not parse
        yield Finding("warehouse", str(exc).splitlines()[0],
                      "export SLUICE_WAREHOUSE_DSN=postgresql://USER:PASSWORD@HOST:5432/DB")
        return
    try:
        rows = warehouse.rows("select count(*) from raw.events")[0][0]
    except MissingTable:
        yield Finding("warehouse", note=f"{warehouse.uri()}: none yet (`sluice ingest` "
                                        "creates it)")
    except Exception as exc:  # the driver's errors: server down, auth, network
        yield Finding("warehouse", f"{warehouse.uri()} cannot be reached: "
                                   f"{str(exc).strip().splitlines()[0]}",
                      "start the server or fix SLUICE_WAREHOUSE_DSN (host, port, user, "
                      "password, database)")
    else:
        yield Finding("warehouse", note=f"{warehouse.uri()}: {rows:,} raw events")


def _warehouse_fix(path: Path) -> str:
    return f"sluice rebuild  (rebuilds {path.name} from the raw log; or `sluice restore BACKUP`)"


def _mlflow(settings: Settings) -> Iterator[Finding]:
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:///"):
        yield Finding("mlflow", note=f"{uri} (not checked: not a SQLite file)")
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        yield Finding("mlflow", note="no store yet (`sluice train` creates it)")
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            models = con.execute("select count(*) from registered_models").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        yield Finding("mlflow", f"MLflow store {path} cannot be read: {exc}",
                      "sluice restore BACKUP  (into a fresh home)")
        return
    yield Finding("mlflow", note=f"{models} registered model(s)")


def _formats(settings: Settings) -> Iterator[Finding]:
    try:
        steps = upgrade.plan(settings)
    except formats.FormatTooNewError as exc:
        yield Finding("formats", str(exc), "install the Sluice version that wrote this data")
        return
    except upgrade.UpgradeError as exc:
        yield Finding("formats", str(exc), "sluice restore BACKUP  or  sluice rebuild")
        return
    except (duckdb.Error, OSError, ValueError) as exc:  # the part's own check names it too
        yield Finding("formats", f"versions cannot be read: {exc}", "see the problems above")
        return
    if steps:
        yield Finding("formats", f"{len(steps)} migration(s) pending: "
                      + ", ".join(f"{s.kind} -> {s.to_version}" for s in steps), "sluice upgrade")
    else:
        yield Finding("formats", note="current")


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        if f.ok:
            lines.append(f"ok       {f.check}: {f.note}")
        else:
            lines.append(f"PROBLEM  {f.check}: {f.problem}\n         fix: {f.fix}")
    problems = sum(not f.ok for f in findings)
    lines.append(f"{problems} problem(s)" if problems else "no problems found")
    return "\n".join(lines)
