"""GET /v1/recommendations/{id} on a real server: per slot its source, the tier's reason and
propensity, the model version and its lineage; a template with exploration serves it."""

from __future__ import annotations

import httpx

from tests.utils.auth import READ
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server
from tests.utils.waits import wait_until

TEMPLATES = {"explore": {"base": "personalized", "exploration": {"share": 0.3}}}


def test_an_answer_is_explained_slot_by_slot_with_its_lineage(tmp_path):
    env = environment(tmp_path, serving={"model_poll_seconds": 0.5}, templates=TEMPLATES)
    version = register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                                tmp_path / "artifacts")
    with running_server(env) as base, httpx.Client(headers=READ, timeout=30) as http:
        wait_until(lambda: http.get(f"{base}/ready"), "the champion to be picked up",
                   until=lambda r: r.status_code == 200)
        explored = None
        for _ in range(20):  # 5 slots at 0.3 each: an explored slot comes quickly
            answer = http.post(f"{base}/v1/recommendations", json={
                "user_id": "u3", "num_results": 5, "template": "explore"}).json()
            assert answer["model_personalized_count"] == 5 == answer["total"]
            if any(i["explored"] for i in answer["items"]):
                explored = answer
                break
        assert explored is not None, "no slot explored in 20 answers at share 0.3"
        shown = http.get(f"{base}/v1/recommendations/{explored['recommendation_id']}")
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert body["model_version"] == version and body["lineage"]["version"] == version
        assert body["exploration_pool"] == 5
        for slot, reason in zip(explored["items"], body["items"], strict=True):
            assert reason["item_id"] == slot["item_id"]
            why = reason["reason"]
            assert why["propensity"] == slot["propensity"]
            if slot["explored"]:
                assert why["why"].startswith("exploration") and why["propensity"] == 0.3 / 5
            else:
                assert why["model_rank"] == slot["position"] and why["propensity"] == 0.7
        plain = http.get(f"{base}/v1/recommendations", params={"user_id": "u3"}).json()
        assert {i["propensity"] for i in plain["items"]} == {1.0}
        missing = http.get(f"{base}/v1/recommendations/{'0' * 32}")
        assert missing.status_code == 404
        assert missing.json()["detail"][0]["field"] == "recommendation_id"


def test_any_logged_answer_is_explained_by_any_worker_and_after_a_restart(tmp_path):
    """Two workers: every answer is explained whichever worker is asked; after a restart
    (processes with nothing in memory) the raw log still explains them; an id never served
    is a 404 naming the field and what to do."""
    env = environment(tmp_path, serving={"model_poll_seconds": 0.5})
    register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                      tmp_path / "artifacts")
    served = []
    with running_server(env, workers=2) as base, httpx.Client(headers=READ, timeout=30) as http:
        for n in range(8):
            served.append(http.post(f"{base}/v1/recommendations",
                                    json={"user_id": f"u{n}", "num_results": 4}).json())
        for answer in served:  # a new connection each: the kernel spreads them over workers
            # the worker that served it writes it back in the background (a 404 until then)
            shown = wait_until(lambda a=answer: httpx.get(
                f"{base}/v1/recommendations/{a['recommendation_id']}", headers=READ, timeout=30),
                f"answer {answer['recommendation_id']} to be explained",
                until=lambda r: r.status_code != 404)
            assert shown.status_code == 200, shown.text
            assert [i["item_id"] for i in shown.json()["items"]] == [
                i["item_id"] for i in answer["items"]]
    with running_server(env) as base, httpx.Client(headers=READ, timeout=30) as http:
        for answer in served[:3]:
            body = http.get(f"{base}/v1/recommendations/{answer['recommendation_id']}").json()
            assert body["model_version"] == answer["model_version"]
            assert [(i["recommendation_source"], i["reason"]["propensity"]) for i in
                    body["items"]] == [(i["recommendation_source"], i["propensity"])
                                       for i in answer["items"]]
            assert body["tenant"] == "default" and body["lineage"]["version"]
        missing = http.get(f"{base}/v1/recommendations/never-served")
        assert missing.status_code == 404
        detail = missing.json()["detail"][0]
        assert detail["field"] == "recommendation_id" and "logged by any worker" in detail[
            "reason"]


def test_an_interleaved_answer_is_explained_with_each_arms_lineage(tmp_path):
    """An interleaved answer names two versions ("1+2"): its explanation carries the
    lineage of each, and every slot the arm that placed it."""
    from sluice.experiments import Arm, Experiment, Experiments

    env = environment(tmp_path, serving={"model_poll_seconds": 0.5})
    uri = env["MLFLOW_TRACKING_URI"]
    first = register_champion(synthetic_bundle(seed=1), uri, tmp_path / "artifacts")
    second = register_champion(synthetic_bundle(seed=2), uri, tmp_path / "artifacts")
    Experiments(tmp_path).create(Experiment("il", "default", (
        Arm("a", first, 0.5), Arm("b", second, 0.5)), kind="interleaving"))
    with running_server(env) as base, httpx.Client(headers=READ, timeout=30) as http:
        answer = wait_until(lambda: http.post(f"{base}/v1/recommendations", json={
            "user_id": "u3", "num_results": 6}).json(), "an interleaved answer",
            until=lambda a: a.get("arm") == "interleaved", interval=0.2)
        body = http.get(f"{base}/v1/recommendations/{answer['recommendation_id']}").json()
    assert body["model_version"] == f"{first}+{second}"
    assert answer["experiment_unit"] == body["experiment_unit"] == "session"  # the default
    lineages = body["lineage"]["versions"]
    assert set(lineages) == {first, second}
    assert all(lineages[v]["version"] == v and "error" not in lineages[v] for v in lineages)
    assert {i["arm"] for i in body["items"]} <= {"a", "b"}
    assert all(i["reason"]["tier"] == "interleaving" for i in body["items"])
