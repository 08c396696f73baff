"""`sluice doctor`: checks the environment and the home, and says how to fix each problem.

Package versions are checked against `requirements.lock` when the project has one (exact
versions), else against the ranges that pyproject.toml declares.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import duckdb
import httpx
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from sluice import formats
from sluice.operate import upgrade
from sluice.settings import PROJECT_ROOT, ConfigError, Settings
from sluice.warehouse.db import count
from sluice.warehouse.engine import MissingTable, from_settings

LOCK_FILE = "requirements.lock"
MIN_FREE_BYTES = 1 << 30


@dataclass
class Finding:
    check: str
    problem: str | None = None  # None: fine
    fix: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def diagnose(settings: Settings, root: Path = PROJECT_ROOT,
             min_free: int = MIN_FREE_BYTES) -> list[Finding]:
    checks: list[Callable[[], Iterator[Finding]]] = [
        lambda: _config(settings),
        lambda: _python(root), lambda: _packages(root), lambda: _folders(settings),
        lambda: _disk(settings, min_free), lambda: _warehouse(settings),
        lambda: _mlflow(settings), lambda: _formats(settings), lambda: _prefect(),
        lambda: _ports(settings),
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
    folders = [settings.home]
    if isinstance(settings.artifact_root, Path):  # a bucket is MLflow's to reach, not a folder
        folders.append(settings.artifact_root)
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        folders.append(Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent)
    for folder in dict.fromkeys(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
        except OSError as exc:
            yield Finding("folders", f"{folder} is not writable ({exc.strerror})",
                          f"chown -R $(id -un) {folder}  (or point SLUICE_HOME elsewhere)")
            return
    yield Finding("folders", note="writable")


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


def _prefect() -> Iterator[Finding]:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        yield Finding("prefect", note="PREFECT_API_URL not set (flows run in-process)")
        return
    try:
        ok = httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        ok = False
    if ok:
        yield Finding("prefect", note=f"{url} answers")
    else:
        yield Finding("prefect", f"the Prefect server at {url} does not answer",
                      "sluice up  (or `prefect server start`), or unset PREFECT_API_URL")


def _ports(settings: Settings) -> Iterator[Finding]:
    wanted = {settings.port: "SLUICE_PORT"}
    answering = []
    if not os.environ.get("PREFECT_API_URL"):
        wanted[settings.prefect_port] = "the Prefect server of `sluice up`"
    for port, who in wanted.items():
        if not _taken(settings.host if who == "SLUICE_PORT" else "127.0.0.1", port):
            continue
        if who != "SLUICE_PORT" and _prefect_answers(port):
            answering.append(port)  # `sluice up` runs: CLI flows go to it (cli.processes)
            continue
        fix = ("stop what holds it, or set SLUICE_PORT to a free port" if who == "SLUICE_PORT"
               else f"stop what holds port {port}, or set SLUICE_PREFECT_PORT to a free port")
        yield Finding("ports", f"port {port} ({who}) is taken (by Sluice itself if it is "
                      "already serving: then ignore this)", fix)
        return
    free = [str(p) for p in wanted if p not in answering]
    note = ", ".join(free) + " free" if free else ""
    if answering:
        note += f"{'; ' if note else ''}the Prefect server of `sluice up` answers on " \
                f"{answering[0]} (flows run there)"
    yield Finding("ports", note=note)


def _prefect_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


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
