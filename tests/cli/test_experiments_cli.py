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


def test_list_names_an_unreadable_experiment_and_show_says_what_is_wrong(monkeypatch, capsys,
                                                                         tmp_path):
    """One experiment stored with a unit this version does not know: `list` shows the others
    and names it; `show` and `stop` say what is wrong in one line, without a traceback."""
    from cli import main as cli

    env = environment(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                      tmp_path / "artifacts")
    arms = ["--arm", "a=champion", "--arm", "b=1"]
    for exp, template in (("e1", "personalized"), ("e2", "popular")):
        cli.main(["experiments", "create", exp, "--template", template, "--unit", "user",
                  *arms])
    capsys.readouterr()
    stored = tmp_path / "experiments.json"
    raw = json.loads(stored.read_text())
    raw["e1"] = raw["e1"].replace('"unit": "user"', '"unit": "household"')  # a newer replica's
    stored.write_text(json.dumps(raw))
    cli.main(["experiments", "list"])
    rows = {line.split("\t")[0]: line.split("\t")
            for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == {"e1", "e2"} and rows["e2"][4] == "user"
    assert rows["e1"][5] == "unreadable, not applied"
    assert "unit: 'household' is not a unit" in rows["e1"][6]
    for command in ("show", "stop"):
        assert cli.main(["experiments", command, "e1"]) not in (0, None)
        error = capsys.readouterr().err
        assert "experiment 'e1': unit: 'household' is not a unit" in error, error
        assert "Traceback" not in error
    assert json.loads(stored.read_text())["e1"] == raw["e1"]  # stop did not write over it
