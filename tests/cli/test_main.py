"""The `sluice` command prints each flow's typed result as the JSON it always printed."""

from __future__ import annotations

import dataclasses
import json


def test_the_cli_prints_typed_results_as_the_json_it_printed(monkeypatch, capsys):
    import flows.pipeline  # noqa: F401  (imported now, it keeps the real flows it imports)
    from cli import main as cli
    from flows.transform import TransformOutcome

    outcome = TransformOutcome(nodes=3, passed=2, sufficiency=[{"tenant": "default"}])
    monkeypatch.setattr("flows.transform.transform", lambda: outcome)
    cli.cmd_flow("transform")
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"nodes": 3, "passed": 2, "sufficiency": [{"tenant": "default"}]}
    assert list(printed) == [f.name for f in dataclasses.fields(TransformOutcome)]
