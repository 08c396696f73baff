"""An ML engineer's seat, on a real MLflow store and a real server: a model trained by hand (the
Python API a notebook calls, README "Training by hand") sits beside the flow's run with the
same metrics, params and lineage; `sluice models promote` makes it the champion and refuses a
version serving could not load; the pyfunc loads in a fresh process and answers the documented
input; `sluice models rollback` gives the champion back and serving follows at its next poll."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import mlflow
import pytest

from sluice.learn import registry
from sluice.learn.training import train_tenant
from sluice.settings import Settings
from tests.utils.cli import sluice
from tests.utils.factories import environ, environment
from tests.utils.marts import WEIGHTS, taste_history, write_marts
from tests.utils.server import running_server
from tests.utils.waits import wait_until

pytestmark = pytest.mark.slow
NAME = "sluice-default"
SMALL = {"events": {"weights": WEIGHTS},
         "model": {"factors": 8, "iterations": 8, "alpha": 2.0},
         "evaluation": {"holdout_fraction": 0.2, "min_users": 10, "bootstrap_resamples": 100},
         "serving": {"model_poll_seconds": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("notebook")
    env = environment(home, **SMALL)
    with environ(env):
        settings = Settings()
        write_marts(settings.warehouse_path, taste_history(), "default")
        flow = train_tenant(settings, "default")  # what the train flow runs per tenant
        # a notebook: another family and parameters, through the same documented call
        notebook = train_tenant(settings, "default", algorithm="bpr",
                                params={"factors": 4, "iterations": 1})
    return {"env": env, "home": home, "flow": flow, "notebook": notebook}


def test_the_notebook_run_compares_with_the_flow_run(trained):
    c = registry.client(trained["env"]["MLFLOW_TRACKING_URI"])
    runs = [c.get_run(trained[k].run_id) for k in ("flow", "notebook")]
    flow, notebook = runs
    # the same names in both (the gate's against a champion only where there was one)
    named = [{k for k in r.data.metrics if not k.startswith("gate.")} for r in runs]
    assert named[0] == named[1]
    for key in ("ndcg_at_10", "ndcg_at_10_ci_low", "ndcg_at_10_ci_high", "evaluated_users",
                "popularity.ndcg_at_10", "lift_ndcg_at_10"):
        assert key in flow.data.metrics, key
    # the same users, the same holdout and data: the sample size and lineage agree
    assert flow.data.metrics["evaluated_users"] == notebook.data.metrics["evaluated_users"]
    same = ("evaluation.protocol_used", "holdout_cutoff", "weight.purchase")
    assert [flow.data.params[p] for p in same] == [notebook.data.params[p] for p in same]
    assert (flow.data.params["algorithm"], notebook.data.params["algorithm"]) == ("als", "bpr")
    assert notebook.data.params["factors"] == "4"
    assert flow.data.tags["lineage.mart_digest"] == notebook.data.tags["lineage.mart_digest"]
    assert [r.inputs.dataset_inputs[0].dataset.digest for r in runs] == \
        [flow.data.tags["lineage.mart_digest"]] * 2


def test_promote_refuses_a_version_serving_could_not_load(trained):
    env = trained["env"]
    with environ(env):
        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        c = registry.client(env["MLFLOW_TRACKING_URI"])
        champion = c.get_model_version_by_alias(NAME, "champion").version
        with mlflow.start_run(experiment_id=registry.experiment(
                c, "notebook", trained["home"] / "artifacts")):
            info = mlflow.pyfunc.log_model(name="echo", python_model=Echo(),
                                           registered_model_name=NAME)
    other = str(info.registered_model_version)
    refused = sluice(env, "models", "promote", other, "--reason", "try", timeout=300)
    assert refused.returncode == 1
    assert f"{NAME} v{other} cannot be served" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert c.get_model_version_by_alias(NAME, "champion").version == champion  # unmoved


PREDICT = textwrap.dedent("""
    import json, sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/sluice-default@champion")
    counted = model.predict(pd.DataFrame({"user_id": ["u0", "nobody"], "num_results": [5, 3]}))
    plain = model.predict(pd.DataFrame({"user_id": ["u1"]}))
    print(json.dumps({"counted": counted.to_dict("records"),
                      "plain": plain.to_dict("records"),
                      "modules": sorted(m for m in sys.modules if m.startswith("sluice"))[:1]}))
""")


def test_promoted_by_hand_it_loads_in_a_fresh_process_and_rolls_back_in_serving(
        trained, tmp_path):
    env, flow, notebook = trained["env"], trained["flow"], trained["notebook"]
    c = registry.client(env["MLFLOW_TRACKING_URI"])
    assert str(c.get_model_version_by_alias(NAME, "champion").version) == flow.version
    with running_server(env) as base:
        served = wait_until(lambda: httpx.get(f"{base}/ready").json(), "the flow's champion",
                            until=lambda r: r["models"].get("default", {}).get("version"))
        assert served["models"]["default"]["version"] == flow.version
        promoted = sluice(env, "models", "promote", notebook.version, "--reason", "notebook",
                          timeout=300)
        assert promoted.returncode == 0, promoted.stderr
        assert f"v{flow.version} -> v{notebook.version}" in promoted.stdout

        fresh = subprocess.run([sys.executable, "-c", PREDICT], cwd=tmp_path, text=True,
                               capture_output=True, timeout=300,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                    "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
        assert fresh.returncode == 0, fresh.stderr[-3000:]
        answer = json.loads(fresh.stdout.strip().splitlines()[-1])
        mine = [r for r in answer["counted"] if r["user_id"] == "u0"]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]  # integers, in order
        assert len([r for r in answer["counted"] if r["user_id"] == "nobody"]) == 3  # popular
        assert len(answer["plain"]) == 10  # num_results may be left out

        wait_until(lambda: httpx.get(f"{base}/ready").json(), "the notebook's model served",
                   timeout=30, until=lambda r: r["models"]["default"]["version"]
                   == notebook.version)
        back = sluice(env, "models", "rollback", "--reason", "ctr fell", timeout=300)
        assert back.returncode == 0, back.stderr
        assert f"v{notebook.version} -> v{flow.version}" in back.stdout
        # serving.model_poll_seconds is 1 here: the next poll serves the flow's model again
        wait_until(lambda: httpx.get(f"{base}/ready").json(), "the rolled back champion",
                   timeout=30, until=lambda r: r["models"]["default"]["version"]
                   == flow.version)
