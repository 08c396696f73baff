"""Personalized slots collapse (the champion removed): the window gauge on /metrics shows it,
the shipped Prometheus rules fire on it, and the tier-alerts flow fails on the marts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from sluice.learn import registry
from tests.utils.auth import READ, WRITE
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server
from tests.utils.waits import wait_until

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "sluice-alerts.yml"
ALERTS = {"window_minutes": 60, "min_slots": 10, "tier_shares": [
    {"tenant": "*", "template": "personalized", "min_personalized_share": 0.5,
     "max_fallback_share": 0.3}]}
SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
RULE = re.compile(r"^(\w+)\{(.*)\} ([<>]) ([\d.]+)$")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match[1] == name:
            found.append((dict(re.findall(r'(\w+)="([^"]*)"', match[2])), float(match[3])))
    return found


def firing(rules: dict, metrics: str) -> set[str]:
    """The shipped rules evaluated on a scrape (each is `metric{labels} < or > number`)."""
    fired = set()
    for rule in rules["groups"][0]["rules"]:
        name, matchers, op, threshold = RULE.match(rule["expr"].strip()).groups()
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', matchers))
        for labels, value in samples(metrics, name):
            if all(labels.get(k) == v for k, v in wanted.items()) and (
                    value < float(threshold) if op == "<" else value > float(threshold)):
                fired.add(rule["alert"])
    return fired


def test_personalized_slots_collapse_and_the_gauge_the_rules_and_the_flow_fire(
        tmp_path, monkeypatch, prefect_harness):
    env = environment(tmp_path, alerts=ALERTS)
    uri = env["MLFLOW_TRACKING_URI"]
    register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
    rules = yaml.safe_load(RULES.read_text())
    with running_server(env) as base, httpx.Client(timeout=30) as http:
        wait_until(lambda: http.get(f"{base}/ready"), "the champion to be picked up",
                   until=lambda r: r.status_code == 200)
        for _ in range(5):
            assert http.post(f"{base}/v1/recommendations", headers=READ, json={
                "user_id": "u3", "num_results": 5}).json()["model_personalized_count"] == 5
        healthy = http.get(f"{base}/metrics").text
        assert ({"tenant": "default", "template": "personalized", "tier": "personalized"}, 1.0
                ) in samples(healthy, "sluice_window_slot_share")
        assert firing(rules, healthy) == set()
    # the champion is removed; the next start has only the catalog's random items to give
    registry.client(uri).delete_registered_model_alias("sluice-default", registry.CHAMPION)
    with running_server(env) as base, httpx.Client(timeout=30) as http:
        assert http.post(f"{base}/v1/events", headers=WRITE, json=[
            {"event": "item", "id": f"it{i}", "item": f"i{i}", "timestamp": 1_700_000_000_000,
             "fields": []} for i in range(20)]).status_code < 300
        answers = [http.post(f"{base}/v1/recommendations", headers=READ, json={
            "user_id": "u3", "num_results": 5}).json() for _ in range(10)]
        assert all(a["fallback_count"] == a["total"] == 5 for a in answers)
        collapsed = http.get(f"{base}/metrics").text
    shares = {labels["tier"]: value for labels, value in samples(
        collapsed, "sluice_window_slot_share") if labels["template"] == "personalized"}
    assert shares == {"personalized": 0.0, "fallback": 1.0}
    assert firing(rules, collapsed) == {"SluicePersonalizedShareLow", "SluiceFallbackShareHigh"}

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _write_recommendation_mart(tmp_path / "warehouse.duckdb", answers)
    from flows.tier_alerts import TierShareAlert, check_tier_shares

    with pytest.raises(TierShareAlert, match=r"tenant default template personalized: "
                       r"personalized share 0\.0% of 50 slots is below 50%.*fallback share "
                       r"100\.0% of 50 slots is above 30%"):
        check_tier_shares()


def _write_recommendation_mart(warehouse: Path, answers: list[dict]) -> None:
    """marts.recommendation_events as dbt builds it from these answers (its contract's columns)."""
    columns = ["personalized_count", "model_personalized_count", "non_personalized_count",
               "model_non_personalized_count", "model_fallback_count", "fallback_count", "total"]
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.execute("create table marts.recommendation_events (tenant varchar, "
                    "recommendation_id varchar, user_id varchar, session_id varchar, "
                    "template varchar, model_version varchar, "
                    + ", ".join(f"{c} integer" for c in columns)
                    + ", recommended_at timestamp)")
        for a in answers:
            con.execute("insert into marts.recommendation_events values "
                        f"(?, ?, ?, ?, ?, ?, {', '.join('?' * len(columns))}, "
                        "now()::timestamp)", ["default", a["recommendation_id"], "u3", None,
                                              a["template"], a["model_version"],
                                              *[a[c] for c in columns]])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_accepts_the_shipped_rules():
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                             text=True)
    assert checked.returncode == 0 and "2 rules found" in checked.stdout, checked.stderr


def test_the_rules_read_only_gauges_serving_exports():
    from serving.api.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]:
        assert RULE.match(rule["expr"].strip())[1] in exported, rule["alert"]
