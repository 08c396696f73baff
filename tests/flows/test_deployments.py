"""prefect.yaml loads, and a run triggered through Prefect's API completes on a runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from flows.deployments import PREFECT_YAML, load
from sluice.settings import PROJECT_ROOT
from sluice.warehouse.db import connect
from tests.utils.factories import environment
from tests.utils.waits import wait_until


def test_every_deployment_loads_with_its_schedule_and_limit():
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    deployments = {d.name: d for d in load()}
    assert set(deployments) == {d["name"] for d in spec["deployments"]}
    assert {"ingest", "refresh", "pipeline-nightly", "tune-weekly"} <= set(deployments)
    ingest = deployments["ingest"].schedules[0].schedule
    assert ingest.interval.total_seconds() == 300
    assert deployments["refresh"].schedules[0].schedule.cron == "0 */2 * * *"
    assert deployments["pipeline-nightly"].schedules[0].schedule.cron == "0 3 * * *"
    assert all(d.concurrency_limit == 1 for d in deployments.values())
    assert deployments["pipeline-nightly"].parameters == {"tenant": None}


def test_the_nightly_batch_covers_every_tenant_found_at_run_time():
    """Not a tenant written into the deployment: `batch-tenants` with no list finds them when
    it runs (tests/serve/test_batch.py runs it so)."""
    from flows.batch import batch_tenants

    [nightly] = [d for d in load() if d.name == "batch-nightly"]
    assert nightly.flow_name == batch_tenants.name == "batch-tenants"
    assert nightly.entrypoint.endswith("flows/batch.py:batch_tenants")
    assert nightly.parameters["tenants"] is None
    assert not any("tenant" in key and value for key, value in nightly.parameters.items())
    # an hour after pipeline-nightly (03:00), so the night's champions answer
    assert nightly.schedules[0].schedule.cron == "0 4 * * *"
    assert nightly.concurrency_limit == 1


def test_a_run_triggered_through_the_api_completes(tmp_path, prefect_harness):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    landing = tmp_path / "landing"
    landing.mkdir()
    events = [{"event": "interaction", "id": f"e{i}", "timestamp": 1767225600000 + i,
               "user": "u1", "item": f"i{i}", "type": "click"} for i in range(5)]
    (landing / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    env = {**os.environ, **environment(tmp_path), "PREFECT_API_URL": PREFECT_API_URL.value()}
    runner = subprocess.Popen([sys.executable, "-m", "flows.deployments"], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from prefect.client.orchestration import get_client

        def registered() -> tuple[bool, str]:
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("ingest/ingest")
                    return True, ""
                except Exception as exc:  # not registered yet
                    return False, repr(exc)[:300]

        # the runner registers the deployments when it starts
        wait_until(registered, "the runner to register deployment ingest/ingest (found, error)",
                   until=lambda found: found[0], timeout=90, interval=1)
        run = run_deployment("ingest/ingest", timeout=120)
        assert run.state.is_completed(), run.state
    finally:
        runner.terminate()
        runner.wait(timeout=30)
    con = connect(tmp_path / "warehouse.duckdb", read_only=True)
    try:
        assert con.execute("select count(*) from raw.events").fetchone()[0] == 5
    finally:
        con.close()


def test_every_deployment_says_what_it_does_and_names_its_runs():
    """What the Prefect UI lists: a described deployment of a described flow whose runs are
    named `<flow>-<tenant or all>-<UTC time>` (not Prefect's random adjectives)."""
    from flows.deployments import _flow

    spec = yaml.safe_load(PREFECT_YAML.read_text())
    for entry in spec["deployments"]:
        flow = _flow(entry["entrypoint"])
        assert entry.get("description"), entry["name"]
        assert flow.description, f"flow {flow.name} has no docstring"
        assert flow.flow_run_name is not None, f"flow {flow.name} names its runs at random"


def test_a_tier_alerts_run_is_named_for_the_flow_and_time(tmp_path, prefect_harness,
                                                         monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.tier_alerts import check_tier_shares

    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute("create schema if not exists marts")
    counts = ["personalized_count", "model_personalized_count", "non_personalized_count",
              "model_non_personalized_count", "model_fallback_count", "fallback_count", "total"]
    con.execute("create table marts.recommendation_events (tenant varchar, "
                "recommendation_id varchar, user_id varchar, session_id varchar, "
                "template varchar, model_version varchar, "
                + ", ".join(f"{c} integer" for c in counts) + ", recommended_at timestamp)")
    con.close()
    state = check_tier_shares(return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name.startswith("tier-alerts-all-20"), run.name


def test_sluice_up_names_every_deployment_with_its_schedule():
    # `sluice up` printed five of the seven, leaving out experiments-daily and tier-alerts
    from flows.deployments import summary

    said = summary()
    for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]:
        assert f"{entry['name']} (" in said
    assert "ingest (every 5 min)" in said
    assert "experiments-daily (cron 0 5 * * * UTC)" in said
