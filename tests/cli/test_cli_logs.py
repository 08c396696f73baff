"""Quiet, exact operator output: a config error is one line, the API logs the port it binds."""

from __future__ import annotations

from tests.utils.cli import sluice
from tests.utils.factories import environment
from tests.utils.server import running_server


def test_a_config_error_is_one_line_before_any_flow_starts(tmp_path):
    env = environment(tmp_path, model={"algorithm": "item_item"})
    proc = sluice(env, "train")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sluice train: config file ")
    assert "model.algorithm" in lines[0] and "Traceback" not in proc.stderr


def test_a_config_error_shows_its_traceback_with_sluice_debug(tmp_path):
    env = environment(tmp_path, model={"algorithm": "item_item"})
    proc = sluice({**env, "SLUICE_DEBUG": "1"}, "train")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_the_api_logs_the_port_it_is_bound_to(tmp_path):
    env = environment(tmp_path)
    log = tmp_path / "server.log"
    with open(log, "w") as output, running_server(env, output=output) as base:
        port = base.rsplit(":", 1)[1]
    text = log.read_text()
    assert f"serving on 127.0.0.1:{port}," in text
    assert text.count("serving on ") == 1
