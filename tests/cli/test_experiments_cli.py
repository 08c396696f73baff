"""`sluice experiments create --unit`: the unit given, else the config's
experiments.default_unit; an unknown one refused naming the option or the config field."""

from __future__ import annotations

import json

import pytest

from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle


def test_create_takes_the_unit_given_else_the_configs_default(monkeypatch, capsys, tmp_path):
    from cli import main as cli

    env = environment(tmp_path, experiments={"default_unit": "user"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                      tmp_path / "artifacts")
    arms = ["--arm", "a=champion", "--arm", "b=1"]
    assert cli.main(["experiments", "create", "e1", "--template", "personalized", *arms]) in (
        0, None)
    assert json.loads(capsys.readouterr().out)["unit"] == "user"  # the config's default
    cli.main(["experiments", "create", "e2", "--template", "popular", "--unit", "session",
              *arms])
    assert json.loads(capsys.readouterr().out)["unit"] == "session"
    cli.main(["experiments", "list"])
    listed = {line.split("\t")[0]: line.split("\t")[4]
              for line in capsys.readouterr().out.splitlines()}
    assert listed == {"e1": "user", "e2": "session"}
    with pytest.raises(SystemExit) as exit_:
        cli.main(["experiments", "create", "e3", "--unit", "visitor", *arms])
    assert exit_.value.code == 2
    assert "argument --unit: invalid choice: 'visitor'" in capsys.readouterr().err
    # a config naming an unknown unit is refused in one line naming the field
    env = environment(tmp_path / "other", experiments={"default_unit": "visitor"})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["experiments", "list"]) != 0
    error = capsys.readouterr().err
    assert "experiments.default_unit" in error and "'session' or 'user'" in error, error
