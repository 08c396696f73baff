"""The README's code runs as written against a served API with the embedded default config
(its demo keys and tracker), with no AWS configuration on the machine.

Only the address changes (the test server's free port for 127.0.0.1:8000). Blocks that call
`make` (install, demo, the whole test suite) are what CI runs, not this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def _runnable(kind: str, code: str) -> bool:
    return not (kind == "sh" and re.search(r"^\s*make\b", code, re.M))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("readme")
    env = {"SLUICE_HOME": str(home), "SLUICE_CONFIG": str(ROOT / "config" / "sluice.yaml"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"}
    register_champion(synthetic_bundle(), env["MLFLOW_TRACKING_URI"], home / "artifacts")
    with running_server(env) as base:
        yield base


def _environment(tmp: Path) -> dict[str, str]:
    """This machine's environment without any AWS setting: the README must bring its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"AWS_CONFIG_FILE": str(tmp / "none"),
                  "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"), "HOME": str(tmp)}


def test_the_readme_has_python_and_shell_blocks_and_skips_only_make():
    blocks = _blocks()
    assert {kind for kind, _ in blocks} == {"sh", "python"}
    skipped = [code for kind, code in blocks if not _runnable(kind, code)]
    assert all("make" in code for code in skipped) and len(skipped) < len(blocks)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_a_readme_block_runs_as_written(served, tmp_path, index):
    kind, code = _blocks()[index]
    if not _runnable(kind, code):
        pytest.skip("calls make (install, demo, the whole suite): run by CI, not here")
    code = code.replace("http://127.0.0.1:8000", served)
    command = [sys.executable, "-c", code] if kind == "python" else ["bash", "-euo",
                                                                     "pipefail", "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env=_environment(tmp_path), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    if kind == "python":
        assert "[" in done.stdout  # the answer's items were printed
    else:
        assert '"accepted":1' in done.stdout and '"recommendation_id"' in done.stdout
