"""docs/make_report_png.py (`make docs`) makes docs/report.png: too slow for the suite (two dbt
builds, three trainings, chromium), so only its arguments are checked here, without building
anything; `make docs` runs it whole."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "make_report_png.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_report_png", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_arguments_parse_and_default_to_the_picture_the_readme_links(tmp_path):
    script = _script()
    args = script.parse_args([])
    assert args.out == SCRIPT.parent / "report.png" and args.keep is None
    assert (args.users, args.answers) == (500, 3)
    given = script.parse_args(["--out", str(tmp_path / "r.png"), "--keep", str(tmp_path),
                               "--users", "50", "--chromium", "/bin/true"])
    assert (given.out, given.keep, given.users, given.chromium) == (
        tmp_path / "r.png", tmp_path, 50, "/bin/true")
    with pytest.raises(SystemExit) as exited:
        script.parse_args(["--users", "many"])
    assert exited.value.code == 2
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    assert "(docs/report.png)" in readme and "make docs" in readme


def test_importing_it_builds_nothing():
    before = set(sys.modules)
    _script()
    assert not {name for name in set(sys.modules) - before if name.startswith("sluice")}
