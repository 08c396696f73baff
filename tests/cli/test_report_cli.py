"""`sluice report --tenant T` for a tenant that does not exist fails in one line naming it and
the known tenants, over a real DuckDB file and a real MLflow store."""

from __future__ import annotations

import pytest

from cli.main import main
from sluice.intake.eventlog import EventLog
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle


@pytest.fixture
def home(tmp_path, monkeypatch):
    env = environment(tmp_path / "home")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "home"


def test_a_report_of_an_unknown_tenant_names_it_and_the_known_ones(home, capsys):
    settings = get_settings()
    EventLog(settings.raw_dir).append([{**interaction("u1", "i1"), "tenant": "shop"}])
    Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir).run()
    register_champion(synthetic_bundle(), settings.mlflow_tracking_uri, home / "artifacts",
                      name=settings.registered_model_name("news"))
    out = home / "report" / "index.html"
    capsys.readouterr()
    assert main(["report", "--tenant", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sluice report: NotFoundError: --tenant: 'nope' has no events and no "
                   "model: known tenants are news, shop"]
    assert not out.exists()
    assert main(["report", "--tenant", "shop"]) == 0  # events, no model
    assert main(["report", "--tenant", "news"]) == 0  # a model, no events
    assert out.exists()


def test_a_fresh_home_reports_its_default_tenant_but_no_other(home, capsys):
    assert main(["report", "--tenant", "shop"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tenant has events or a model yet, 'shop' neither" in err[0]
    assert "sluice ingest" in err[0] and not (home / "report").exists()
    assert main(["report"]) == 0  # each section says which run fills it
