"""One tenant short of data never stops another: `default` (a synthetic history) and `shop`
(one event) through the real `pipeline` flow, a real MLflow store and a real server."""

from __future__ import annotations

import json
import re

import duckdb
import httpx
import pytest

from sluice.intake.synthetic import SyntheticSpec
from sluice.learn import registry
from sluice.serve.explain import logged_answer
from tests.utils.auth import headers
from tests.utils.browser import browser, visit
from tests.utils.factories import environ, interaction, synthetic_home
from tests.utils.server import running_server
from tests.utils.waits import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ran(tmp_path_factory, prefect_harness):
    home = tmp_path_factory.mktemp("isolation")
    env, _ = synthetic_home(home, SyntheticSpec(users=300, items=100, events=8_000, files=1,
                                                seed=5))
    with environ(env):
        with running_server(env) as base:  # shop's one event comes in through the API
            sent = httpx.post(f"{base}/v1/events", json=[interaction("shopper", "lamp")],
                              headers=headers("write", "shop"), timeout=10)
            assert sent.status_code == 200, sent.text
            from flows.pipeline import pipeline

            state = pipeline(return_state=True)
            yield {"home": home, "env": env, "state": state, "base": base}


def test_the_pipeline_completes_and_trains_default_only(ran):
    state = ran["state"]
    assert state.is_completed(), state.message
    outcome = state.result()
    assert [r.tenant for r in outcome.train] == ["default"]
    client = registry.client(ran["env"]["MLFLOW_TRACKING_URI"])
    assert client.get_model_version_by_alias("sluice-default", "champion") is not None
    assert not client.search_registered_models("name = 'sluice-shop'")


def test_shop_is_reported_short_with_its_numbers(ran):
    from prefect.client.orchestration import get_client

    with duckdb.connect(str(ran["home"] / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("select interactions, missing_interactions, is_sufficient "
                          "from marts.data_sufficiency where tenant = 'shop'").fetchone()
    assert row == (1, 999, False)
    with get_client(sync_client=True) as client:
        (run,) = [r for r in client.read_flow_runs()
                  if r.id == ran["state"].state_details.flow_run_id]
        # this run's: another module's flows may have run earlier on this test process's API
        (artifact,) = [a for a in client.read_artifacts()
                       if a.key == "train-skipped" and a.created >= run.start_time]
    skipped = json.loads(artifact.data)
    assert [s["tenant"] for s in skipped] == ["shop"]
    assert "1 interactions (need 1,000)" in skipped[0]["skipped"]
    assert run.name.startswith("pipeline-all-")  # flow, tenant, time; not pipeline-None


def test_shop_is_answered_from_the_lower_tiers(ran):
    base = ran["base"]
    answer = httpx.post(f"{base}/v1/recommendations", headers=headers("read", "shop"),
                        json={"user_id": "someone", "num_results": 5}, timeout=10).json()
    # the server picks the new champion up at its next registry poll
    default = wait_until(lambda: httpx.post(
        f"{base}/v1/recommendations", headers=headers("read"),
        json={"user_id": "never-seen", "num_results": 5}, timeout=10),
        "default's answers from its new champion", timeout=60, interval=1,
        until=lambda r: r.status_code == 200 and r.json().get("model_version"))
    sources = {slot["recommendation_source"] for slot in answer["items"]}
    assert answer["items"] and sources <= {"model_fallback", "fallback"}
    assert answer["items"][0]["item_id"] == "lamp"  # the shop's one popular item comes first
    assert default.json()["model_version"]


def test_the_report_draws_every_chart_in_a_browser(ran):
    """After the answers above are loaded and transformed, every chart has drawn marks in
    headless Chromium (Debian's `chromium`, which .ci/run installs), with no console error
    and no request beyond the file itself."""
    if browser() is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    from flows.ingest import ingest
    from flows.transform import transform
    from sluice.analytics.report import write_report

    base = ran["base"]
    served = []
    for n in range(5):  # answers, one clicked through its recommendation id
        answer = httpx.post(f"{base}/v1/recommendations", headers=headers("read"),
                            json={"user_id": f"reader{n}", "num_results": 5}, timeout=10).json()
        served.append(answer["recommendation_id"])
        click = {**interaction(f"reader{n}", answer["items"][0]["item_id"]),
                 "ranking": answer["recommendation_id"]}
        assert httpx.post(f"{base}/v1/events", json=[click], headers=headers("write"),
                          timeout=10).status_code == 200
    # the server writes its answers back in the background: ingest once they are in the log
    wait_until(lambda: [i for i in served if logged_answer(ran["home"] / "raw", i) is None],
               "the answers in the raw log (still missing)", until=lambda missing: not missing)
    ingest()
    transform()
    out = write_report(ran["home"] / "warehouse.duckdb", ran["env"]["MLFLOW_TRACKING_URI"],
                       "sluice-default", ran["home"] / "report" / "index.html")
    seen = visit(out.as_uri())  # the DOM after its scripts ran, and what the page asked for
    assert seen.errors == [] and seen.failed == [], (seen.errors, seen.failed)
    assert seen.requests == [out.as_uri()]  # one self-contained file: nothing else fetched
    dom = seen.dom
    charts = re.findall(r"<section class=\"chart\">(.*?)</section>", dom, re.DOTALL)
    assert len(charts) == 7, dom[:500]
    marks = [len(re.findall(r'id="mark-\d+"', chart)) for chart in charts]
    assert all(m > 0 for m in marks[:5]), marks
    # no experiment and no explored answers: those two say so instead of drawing
    assert [c.startswith('<p class="empty">') for c in charts[5:]] == [True, True], charts[5:]
    assert "(champion)" in dom
