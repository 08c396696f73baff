"""The install is reproducible: the environment holds exactly what requirements.lock pins (and
tests/reference-requirements.txt: the reference implementations some tests compare against,
installed without their declared dependencies).

`make install` (and so `.ci/run`) installs from the lock with hashes checked; this test
fails when a package was added, upgraded or left behind outside the lock, or when
pyproject.toml declares a dependency the lock does not pin (run `make lock`).
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
REFERENCE = ROOT / "tests" / "reference-requirements.txt"
TOOLING = {"pip", "setuptools", "wheel", "uv", "sluice"}  # the installer, and the project itself
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(*files: Path) -> dict[str, str]:
    pins = {}
    for line in "\n".join(f.read_text() for f in files or (LOCK, REFERENCE)).splitlines():
        match = PIN.match(line)
        if match and (match[3] is None or Marker(match[3]).evaluate()):
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version
            for d in importlib.metadata.distributions()
            if canonicalize_name(d.metadata["Name"]) not in TOOLING}


def test_every_pin_is_exact_and_has_hashes() -> None:
    for path in (LOCK, REFERENCE):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())[1:]  # [0] is the header
        assert len(blocks) >= len(locked(path)) > 0
        for block in blocks:
            first = block.splitlines()[0]
            assert PIN.match(first), f"not an exact pin: {first}"
            assert "--hash=sha256:" in block, f"no hash for {first}"


def test_the_environment_is_exactly_the_lock() -> None:
    pins, have = locked(), installed()
    wrong = {name: (version, have.get(name)) for name, version in pins.items()
             if have.get(name) != version}
    extra = sorted(set(have) - set(pins))
    assert not wrong, f"installed versions differ from the lock (run `make install`): {wrong}"
    assert not extra, f"installed but not locked (declare them and run `make lock`): {extra}"


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = locked(LOCK)
    for spec in declared:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not locked: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in the lock is outside pyproject's {requirement.specifier}")
