"""One experiment stored so this version cannot read it (a hand edit; a unit written by a newer
replica): serving answers on, the other experiments stay applied, and the admin routes name
what is wrong with a 409 instead of failing."""

from __future__ import annotations

import json

import httpx

from sluice.experiments import Arm, Experiment, Experiments
from tests.utils.auth import ADMIN, READ
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server


def test_the_admin_routes_name_an_unreadable_experiment_and_the_others_go_on(tmp_path):
    env = environment(tmp_path)
    first = register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                              tmp_path / "artifacts")
    store = Experiments(tmp_path)
    for exp_id, template in (("broken", "personalized"), ("fine", "popular")):
        store.create(Experiment(exp_id, "default", (Arm("a", "champion", 0.5),
                                                    Arm("b", first, 0.5)),
                                template=template, start_ms=0, unit="user"))
    stored = tmp_path / "experiments.json"
    raw = json.loads(stored.read_text())
    raw["broken"] = raw["broken"].replace('"unit": "user"', '"unit": "household"')
    stored.write_text(json.dumps(raw))
    with running_server(env) as base, httpx.Client(base_url=base, timeout=30) as http:
        listed = http.get("/admin/experiments", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert [e["id"] for e in listed.json()] == ["fine"]
        for method, path in (("GET", "/admin/experiments/broken"),
                             ("POST", "/admin/experiments/broken/stop")):
            refused = http.request(method, path, headers=ADMIN)
            assert refused.status_code == 409, refused.text
            detail = refused.json()["detail"][0]
            assert detail["field"] == "experiment_id"
            assert "experiment 'broken': unit: 'household' is not a unit" in detail["reason"]
        for template, within in (("personalized", None), ("popular", "fine")):
            answer = http.post("/v1/recommendations", headers=READ, json={
                "user_id": "u1", "num_results": 3, "template": template})
            assert answer.status_code == 200, answer.text
            assert answer.json().get("experiment") == within, answer.text
    assert json.loads(stored.read_text())["broken"] == raw["broken"]
