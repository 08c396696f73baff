"""The `sluice` command prints each flow's typed result as the JSON it always printed."""

from __future__ import annotations

import dataclasses
import json


def test_the_cli_prints_typed_results_as_the_json_it_printed(monkeypatch, capsys, tmp_path):
    import flows.pipeline  # noqa: F401  (imported now, it keeps the real flows it imports)
    from cli import main as cli
    from flows.transform import TransformOutcome
    from sluice.intake.eventlog import EventLog
    from sluice.warehouse.ingest import Ingestor
    from tests.utils.factories import environment, interaction

    for name, value in environment(tmp_path).items():  # ingested: transform's precondition
        monkeypatch.setenv(name, value)
    log = EventLog(tmp_path / "raw")
    log.append([interaction("u1", "i1")])
    log.close()
    (tmp_path / "landing").mkdir()
    Ingestor(tmp_path / "warehouse.duckdb", tmp_path / "raw", tmp_path / "landing").run()
    outcome = TransformOutcome(nodes=3, passed=2, sufficiency=[{"tenant": "default"}])
    monkeypatch.setattr("flows.transform.transform", lambda: outcome)
    cli.cmd_flow("transform")
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"nodes": 3, "passed": 2, "sufficiency": [{"tenant": "default"}]}
    assert list(printed) == [f.name for f in dataclasses.fields(TransformOutcome)]


def test_a_count_option_below_one_is_refused_naming_it(capsys):
    import pytest

    from cli import main as cli

    for argv, option in ((["generate", "--users", "0"], "--users"),
                         (["demo", "--events", "-1"], "--events"),
                         (["generate", "--items", "many"], "--items"),
                         (["serve", "--workers", "0"], "--workers")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        error = capsys.readouterr().err.splitlines()[-1]
        assert error.startswith(f"sluice {argv[0]}: error: argument {option}: "), error
        assert "below 1" in error or "not a whole number" in error


def test_a_tenant_option_that_is_no_tenant_name_is_refused_naming_it(capsys):
    import pytest

    from cli import main as cli

    for argv in (["models", "--tenant", "bad tenant"], ["promote", "1", "--tenant", "a b"],
                 ["rollback", "--tenant=-x"], ["report", "--tenant", "shop/eu"],
                 ["batch", "--tenant", "x" * 65],
                 ["experiments", "create", "e1", "--tenant", "a b", "--arm", "a=champion"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        error = capsys.readouterr().err.splitlines()[-1]
        assert "error: argument --tenant: " in error and "is not a tenant name: 1-64" in error


def test_serve_on_a_port_another_process_holds_says_so_in_one_line_before_starting(
        monkeypatch, tmp_path):
    import socket

    import pytest

    from cli import main as cli
    from tests.utils.factories import environment

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setenv("SLUICE_PORT", str(port))
        monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("uvicorn started"))
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve"])
    assert str(exit_.value.code) == (f"sluice serve: port {port} on 127.0.0.1 is taken (another "
                                     "`sluice serve`?): stop what holds it, or set SLUICE_PORT "
                                     "to a free port")
