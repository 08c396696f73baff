"""The experiments flow decides each running experiment on its own: one tenant's failure (here
a shipped arm whose alias is gone from its registry) is named when the flow fails, and every
other tenant's experiment is still decided, promoted and published."""

from __future__ import annotations

import pytest

from sluice.experiments import Arm, Experiment, Experiments
from sluice.learn import registry
from sluice.settings import get_settings
from sluice.warehouse.db import connect
from tests.utils.factories import environ, environment
from tests.utils.models import two_versions

RESULTS = ("create table marts.experiment_results (tenant varchar, experiment varchar, "
           "metric varchar, baseline_arm varchar, arm varchar, units bigint, "
           "baseline_units bigint, arm_value double, baseline_value double, difference double, "
           "ci_low double, ci_high double)")
ASSIGNMENT = ("create table marts.experiment_assignment (tenant varchar, experiment varchar, "
              "chi_square double, srm_passed boolean, crossed_units bigint default 0)")


def _experiment(tenant: str) -> Experiment:
    return Experiment(f"{tenant}-exp", tenant, (Arm("control", "champion", 0.5),
                                                Arm("treatment", "challenger", 0.5)))


def test_one_tenants_failing_decision_does_not_stop_the_others(tmp_path, prefect_harness):
    from flows.experiments import DecisionFailed, experiments

    env = environment(tmp_path, experiments={"min_units_per_arm": 10, "auto_promote": True})
    with environ(env):
        settings = get_settings()
        client = registry.client(settings.mlflow_tracking_uri)
        versions = {}
        for tenant in ("bad", "good"):  # "bad" sorts first: its failure comes before "good"
            versions[tenant] = two_versions(env["MLFLOW_TRACKING_URI"], tmp_path / "artifacts",
                                            f"sluice-{tenant}", challenger=True)
            Experiments(settings.home).create(_experiment(tenant))
        client.delete_registered_model_alias("sluice-bad", "challenger")
        con = connect(settings.warehouse_path)
        con.execute("create schema marts")
        con.execute(RESULTS)
        con.execute(ASSIGNMENT)
        for tenant in ("bad", "good"):  # the treatment clearly better in both
            con.execute("insert into marts.experiment_results values (?, ?, "
                        "'click_through_rate', 'control', 'treatment', 500, 500, 0.2, 0.1, "
                        "0.1, 0.05, 0.15)", [tenant, f"{tenant}-exp"])
            con.execute("insert into marts.experiment_assignment (tenant, experiment, "
                        "chi_square, srm_passed) values (?, ?, 0.1, true)",
                        [tenant, f"{tenant}-exp"])
        con.close()
        with pytest.raises(DecisionFailed) as failure:
            experiments()
        assert "1 of 2 experiments not decided: bad-exp (tenant bad): " in str(failure.value)
        assert str(failure.value).endswith("decided: good-exp")
        good = registry.alias_version(client, "sluice-good", registry.CHAMPION).version
        bad = registry.alias_version(client, "sluice-bad", registry.CHAMPION).version
        assert (str(good), str(bad)) == (versions["good"][1], versions["bad"][0])
