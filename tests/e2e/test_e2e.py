"""End to end: the real `pipeline` flow, a real MLflow store, a real server with two workers."""

from __future__ import annotations

import httpx
import pytest

from sluice.intake.events import parse_event
from sluice.intake.synthetic import SyntheticSpec
from sluice.learn import registry
from sluice.vocabulary import SOURCES
from tests.utils.auth import READ, WRITE, boto_client
from tests.utils.factories import environ, interaction, synthetic_home
from tests.utils.waits import log_lines, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_harness):
    home = tmp_path_factory.mktemp("e2e")
    env, info = synthetic_home(home, SyntheticSpec(users=400, items=150, events=12_000, files=2,
                                                   seed=11))
    with environ(env):
        from flows.pipeline import pipeline

        outcome = pipeline()
        yield {"home": home, "env": env, "info": info, "outcome": outcome}


REAL_SERVER = True  # two worker processes that each follow the raw log
SERVER_WORKERS = 2


@pytest.fixture(scope="module")
def server_env(trained):
    return trained["env"]


@pytest.fixture(scope="module")
def api(server) -> str:
    return server["base"]


def ask(base: str, **body) -> dict:
    response = httpx.post(f"{base}/v1/recommendations", json=body, timeout=10, headers=READ)
    assert response.status_code == 200, response.text
    return response.json()


def assert_counts(answer: dict) -> None:
    sources = [slot["recommendation_source"] for slot in answer["items"]]
    assert set(sources) <= set(SOURCES)
    assert answer["model_personalized_count"] == sources.count("model_personalized")
    assert answer["model_fallback_count"] == sources.count("model_fallback")
    assert answer["fallback_count"] == sources.count("fallback")
    assert answer["personalized_count"] == answer["model_personalized_count"]
    assert answer["non_personalized_count"] == (
        answer["model_non_personalized_count"] + answer["model_fallback_count"])
    assert answer["total"] == (answer["personalized_count"] + answer["non_personalized_count"]
                               + answer["fallback_count"]) == len(answer["items"])
    ids = [slot["item_id"] for slot in answer["items"]]
    assert len(ids) == len(set(ids)), "an item repeats in one answer"
    assert [slot["position"] for slot in answer["items"]] == list(range(1, len(ids) + 1))


def test_pipeline_trains_and_promotes_a_champion(trained):
    (result,) = trained["outcome"].train
    assert trained["outcome"].ingest.rows_loaded == trained["info"].events
    assert result.promoted is True
    client = registry.client(trained["env"]["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("sluice-default", "champion")
    assert str(champion.version) == result.version
    assert champion.tags["validation_status"] == "passed"
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["ndcg_at_10"] == pytest.approx(result.metrics["ndcg_at_10"])
    assert "popularity.ndcg_at_10" in metrics


def test_the_pipeline_publishes_artifacts_and_the_report(trained):
    from pathlib import Path

    from prefect.client.orchestration import get_client

    outcome = trained["outcome"]
    assert Path(outcome.report).exists()
    (sufficiency,) = outcome.transform.sufficiency
    assert sufficiency["tenant"] == "default" and sufficiency["is_sufficient"]
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts()}
    assert {"ingest-summary", "data-sufficiency", "train-default", "analytics-report"} <= set(
        artifacts)
    assert "ndcg_at_10" in artifacts["train-default"].data


def test_known_user_gets_personalized_slots(trained, api):
    answer = ask(api, user_id=trained["info"].known_user, num_results=20)
    assert_counts(answer)
    assert answer["model_personalized_count"] == 20
    assert answer["model_version"] == trained["outcome"].train[0].version


def test_answers_through_the_api_are_what_offline_evaluation_scores(trained, api, tmp_path):
    """The champion's own top 10 for trained users (user factors against item factors,
    training items left out, as the evaluation ranks) is what the API answers, slot by slot,
    so figures measured offline hold for what is served (before any new event arrives)."""
    import numpy as np

    from sluice.bundle import ModelBundle

    champion = registry.download_alias(trained["env"]["MLFLOW_TRACKING_URI"], "sluice-default",
                                       registry.CHAMPION, tmp_path)
    bundle = ModelBundle.load(champion.local_path)
    assert bundle.meta["algorithm"] == "als"
    users = [u for u in sorted(bundle.user_ids) if not u.startswith("session:")][:40]
    for user in users:
        row = bundle.user_index[user]
        scores = bundle.item_factors @ bundle.user_factors[row]
        scores[bundle.user_items[row].indices] = -np.inf
        offline = bundle.item_ids[np.argsort(-scores, kind="stable")[:10]].tolist()
        answer = ask(api, user_id=user, num_results=10)
        assert [s["item_id"] for s in answer["items"]] == offline, user
        assert answer["model_personalized_count"] == 10


def test_unknown_user_gets_popular_fallback(api):
    answer = ask(api, user_id="nobody-ever", num_results=15)
    assert_counts(answer)
    assert answer["model_personalized_count"] == 0
    assert answer["model_fallback_count"] == 15


def test_anonymous_session_is_served_from_its_own_history(trained, api):
    answer = ask(api, session_id=trained["info"].anonymous_session, num_results=10)
    assert_counts(answer)
    assert answer["model_personalized_count"] == 10


def test_metrics_show_sources_fallback_share_and_model_age(trained, api):
    for _ in range(20):  # each worker keeps its own counters: make sure both answered some
        ask(api, user_id="nobody-ever", num_results=5)
    text = httpx.get(f"{api}/metrics").text
    assert 'sluice_recommendation_slots_total{source="model_fallback",tenant="default"}' in text
    assert 'sluice_fallback_share{tenant="default"}' in text
    assert 'sluice_model_answers{path="precomputed",tenant="default"}' in text
    version = trained["outcome"].train[0].version
    assert f'sluice_model_version{{tenant="default"}} {float(version)}' in text
    age = float(text.split('sluice_model_age_seconds{tenant="default"} ')[1].split()[0])
    assert 0 <= age < 3600


def test_tiers_fill_in_order_when_the_catalog_runs_short(trained, api):
    answer = ask(api, user_id=trained["info"].known_user, num_results=500)
    assert_counts(answer)
    sources = [slot["recommendation_source"] for slot in answer["items"]]
    # tiers never interleave: personalized, then popular, then random
    assert sources == sorted(sources, key=["model_personalized", "model_fallback",
                                           "fallback"].index)
    no_random = ask(api, user_id="nobody-ever", num_results=500, fill_with_random=False)
    assert_counts(no_random)
    assert no_random["fallback_count"] == 0


def test_an_interaction_changes_the_next_answer_of_every_worker(trained, api):
    # serving folds the log in every `serving.log_poll_seconds` (well under a second); the
    # deadline here is generous because CI machines are loaded: speed is benchmarks' business
    user = trained["info"].known_user
    before = ask(api, user_id=user, num_results=10)
    top = before["items"][0]["item_id"]
    sent = httpx.post(f"{api}/v1/events", json=[interaction(user, top, "purchase")], timeout=10,
                      headers=WRITE)
    assert sent.status_code == 200, sent.text

    def ids(answer: dict) -> list[str]:
        return [s["item_id"] for s in answer["items"]]

    after = wait_until(lambda: ask(api, user_id=user, num_results=10),
                       f"the purchased item {top} to leave the answer", interval=0.05,
                       until=lambda answer: top not in ids(answer))
    assert after["model_personalized_count"] == 10

    # two workers: not only the one that took the write must know it
    wait_until(lambda: [ids(ask(api, user_id=user, num_results=10)) for _ in range(8)],
               f"every worker to stop recommending the purchased item {top}", interval=0.05,
               until=lambda later: all(top not in answer for answer in later))


def test_a_new_user_with_a_few_events_gets_personalized_slots(trained, api):
    items = [s["item_id"] for s in ask(api, user_id="nobody-ever", num_results=3)["items"]]
    events = [interaction("brand-new-user", item) for item in items]
    assert httpx.post(f"{api}/v1/events", json=events, timeout=10,
                      headers=WRITE).status_code == 200

    answer = wait_until(lambda: ask(api, user_id="brand-new-user", num_results=10),
                        "10 personalized slots for the new user", interval=0.05,
                        until=lambda answer: answer["model_personalized_count"] == 10)
    assert not set(items) & {s["item_id"] for s in answer["items"]}


def test_logging_in_joins_the_session_history_to_the_user(trained, api):
    items = [s["item_id"] for s in ask(api, user_id="nobody-ever", num_results=2)["items"]]
    session, user = "fresh-session-1", "fresh-user-1"
    events = [interaction(None, items[0], session=session),
              interaction(user, items[1], session=session)]
    assert httpx.post(f"{api}/v1/events", json=events, timeout=10,
                      headers=WRITE).status_code == 200

    wait_until(lambda: {s["item_id"] for s in ask(api, user_id=user, num_results=20)["items"]},
               f"the session's items {items} to leave the logged-in user's answer",
               interval=0.05, until=lambda ids: not ids & set(items))


CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"


def test_boto3_get_recommendations_carries_sources(trained, api):
    runtime = boto_client(api, "personalize-runtime")
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId=trained["info"].known_user,
                                         numResults=7)
    assert len(answer["itemList"]) == 7
    assert {tuple(i["reason"]) for i in answer["itemList"]} == {("model_personalized",)}
    assert answer["recommendationId"]
    cold = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="nobody-ever", numResults=3)
    assert [i["reason"] for i in cold["itemList"]] == [["model_fallback"]] * 3
    similar = runtime.get_recommendations(campaignArn=CAMPAIGN, itemId="i1", numResults=4)
    assert "i1" not in [i["itemId"] for i in similar["itemList"]]
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(campaignArn=CAMPAIGN.replace("default", "nope"), userId="u")
    with pytest.raises(runtime.exceptions.InvalidInputException) as err:
        runtime.get_recommendations(campaignArn=CAMPAIGN)
    assert "userId" in str(err.value)


def test_personalized_ranking_orders_known_items_and_keeps_unknown_last(trained, api):
    user = trained["info"].known_user
    top = [s["item_id"] for s in ask(api, user_id=user, num_results=3)["items"]]
    given = ["unknown-b", top[2], "unknown-a", top[0], top[1]]
    runtime = boto_client(api, "personalize-runtime")
    ranked = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId=user, inputList=given)
    order = [i["itemId"] for i in ranked["personalizedRanking"]]
    assert order == [top[0], top[1], top[2], "unknown-b", "unknown-a"]
    native = httpx.post(f"{api}/v1/rank", json={"user_id": user, "items": given},
                        headers=READ).json()
    assert [s["item_id"] for s in native["items"]] == order
    assert native["items"][-1]["recommendation_source"] == "fallback"


def _catalog(trained) -> dict[str, dict]:
    import json

    import duckdb

    con = duckdb.connect(str(trained["home"] / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("select item_id, fields from marts.items").fetchall()
    finally:
        con.close()
    return {item: json.loads(fields) for item, fields in rows}


def test_request_filters_and_configured_templates(trained, api):
    catalog = _catalog(trained)
    user = trained["info"].known_user
    answer = ask(api, user_id=user, num_results=30,
                 filters=[{"field": "category", "op": "in", "value": ["books", "music"]}])
    assert_counts(answer)
    assert answer["items"]
    assert {catalog[s["item_id"]]["category"] for s in answer["items"]} <= {"books", "music"}
    stocked = ask(api, user_id=user, template="personalized_in_stock", num_results=40)
    assert all(catalog[s["item_id"]]["in_stock"] is True for s in stocked["items"])
    cheap = ask(api, template="cheap_picks")
    assert len(cheap["items"]) == 10  # the template's default size
    assert all(catalog[s["item_id"]]["price"] < 20 for s in cheap["items"])
    assert {s["recommendation_source"] for s in cheap["items"]} == {"fallback"}
    bad = httpx.post(f"{api}/v1/recommendations", headers=READ, json={
        "user_id": user, "filters": [{"field": "colour", "op": "eq", "value": "red"}]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "filters[0].field"
    unknown = httpx.post(f"{api}/v1/recommendations", json={"template": "nope"}, headers=READ)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "template"


def test_boto3_filter_arn_with_filter_values(trained, api):
    catalog = _catalog(trained)
    runtime = boto_client(api, "personalize-runtime")
    arn = "arn:aws:personalize:us-east-1:000000000000:filter/genre"
    answer = runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId=trained["info"].known_user, numResults=10,
        filterArn=arn, filterValues={"CATEGORIES": '"books","games"'})
    assert answer["itemList"]
    assert {catalog[i["itemId"]]["category"] for i in answer["itemList"]} <= {"books", "games"}
    with pytest.raises(runtime.exceptions.InvalidInputException) as err:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u", filterArn=arn)
    assert "CATEGORIES" in str(err.value)
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="u",
                                    filterArn=arn.replace("genre", "missing"))


def _logged(trained, recommendation_id: str) -> dict | None:
    import json

    for line in log_lines(trained["home"]):  # complete lines: not one being written
        if recommendation_id.encode() in line:
            return json.loads(line)
    return None


def test_context_is_logged_with_the_answer_and_checked(trained, api):
    user = trained["info"].known_user
    native = ask(api, user_id=user, num_results=3, context={"device": "mobile", "page": "home"})
    logged = wait_until(lambda: _logged(trained, native["recommendation_id"]),
                        "the native answer in the raw log", interval=0.05)
    assert (logged["fields"]["context.device"], logged["fields"]["context.page"]) == (
        "mobile", "home")
    parse_event(logged, allow_internal=True)  # flat fields: ingest takes it, not quarantines
    assert [i["id"] for i in logged["items"]] == [s["item_id"] for s in native["items"]]
    runtime = boto_client(api, "personalize-runtime")
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId=user, numResults=2,
                                         context={"DEVICE": "tablet"})
    logged = wait_until(lambda: _logged(trained, answer["recommendationId"]),
                        "the boto3 answer in the raw log", interval=0.05)
    assert logged["fields"]["context.DEVICE"] == "tablet"
    bad = httpx.post(f"{api}/v1/recommendations", headers=READ,
                     json={"user_id": user, "context": {"device": 3}})
    assert bad.status_code == 422 and "context" in bad.text


def test_a_second_pipeline_run_loads_nothing_twice(trained):
    from flows.pipeline import pipeline

    with environ(trained["env"]):
        again = pipeline()
    import duckdb

    con = duckdb.connect(str(trained["home"] / "warehouse.duckdb"), read_only=True)
    try:
        from_landing = con.execute(
            "select count(*) from raw.events where source_file like '%/landing/%'").fetchone()[0]
        from_log = con.execute(
            "select count(*) from raw.events where source_file like '%/raw/%'").fetchone()[0]
    finally:
        con.close()
    assert from_landing == trained["info"].events  # the landing files were not loaded twice
    assert again.ingest.rows_loaded == from_log  # only what the API wrote since
    (result,) = again.train
    client = registry.client(trained["env"]["MLFLOW_TRACKING_URI"])
    candidate = client.get_model_version_by_alias("sluice-default", "candidate")
    assert str(candidate.version) == result.version
    champion = client.get_model_version_by_alias("sluice-default", "champion")
    assert (str(champion.version) == result.version) == result.promoted
    # the same configuration retrained with the events served since: a refresh of the
    # champion (refit on this run's training part, it ties the candidate by construction)
    assert result.promoted and result.gate["refresh"], result.reason


def test_the_report_shows_every_section_after_the_second_run(trained):
    import re

    from sluice.analytics.report import write_report

    out = write_report(trained["home"] / "warehouse.duckdb", trained["env"]["MLFLOW_TRACKING_URI"],
                       "sluice-default", trained["home"] / "report" / "index.html")
    page = out.read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == ["Events per day by type", "Share of slots by source over time",
                      "Click-through rate", "Model metrics across versions",
                      "Model quality per version (95% intervals)", "Experiments",
                      "Off-policy estimates per version (on the explored answers of the champion)"]
    assert len(re.findall(r"<section class='chart'><svg", page)) == 5
    # the two without data say why and what fills them
    assert "no experiments for this tenant: `sluice experiments create`" in page
    assert "no version has off-policy estimates yet" in page
    assert "2 versions of sluice-default" in page


def test_the_batch_flow_answers_a_file_of_users_as_the_api_does(trained, api, tmp_path):
    """The demo tenant's champion (trained heads and all), a file of known, new and unknown
    users and malformed lines: the flow's answers are the live API's, slot by slot."""
    import json
    from pathlib import Path

    from flows.batch import batch
    from tests.utils.batch import assert_same_as_live, read_output

    info = trained["info"]
    users = [info.known_user, info.stitched_user, "u5", "u17", "never-seen-user"]
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join([json.dumps({"userId": u}) for u in users]
                                + ["{oops", '{"userId": null}', '"u3"']) + "\n")
    result = batch(input=str(source), num_results=10)
    lines, slots, manifest = read_output(Path(result.output))
    assert result.counts == manifest["counts"] and result.job in result.output
    assert manifest["counts"] == {**manifest["counts"], "lines": 8, "answered": 5, "errors": 3,
                                  "slots": 50}
    assert [bool(line["error"]) for line in lines] == [False] * 5 + [True] * 3
    assert manifest["counts"]["by_source"]["model_personalized"] >= 40  # four known users
    # the champion now: the second pipeline run's retrain of the same configuration is a
    # refresh when it ran before this test (the gate promotes it), else the first run's
    champion = registry.client(trained["env"]["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(
        "sluice-default", "champion")
    assert manifest["lineage"]["model_version"] == str(champion.version)
    # two workers poll the registry on their own: every answer in a row of twelve (both
    # workers, all but surely) on the champion, not only the first worker's
    wait_until(lambda: all(httpx.post(f"{api}/v1/recommendations", headers=READ, json={
        "user_id": "u5"}).json()["model_version"] == str(champion.version) for _ in range(12)),
        "both API workers on the current champion (their next registry poll)", timeout=60)
    assert assert_same_as_live(api, slots, users, 10) == 50


def test_clicks_on_batch_logged_answers_are_attributed_by_dbt(trained, api, tmp_path):
    """A batch job with --log-answers logs its answers as recommendation events; a click that
    names one of them is attributed to its slot by the warehouse, as for a live answer."""
    import json
    from pathlib import Path

    import duckdb

    from flows.batch import batch
    from flows.ingest import ingest
    from flows.transform import transform
    from tests.utils.batch import read_output

    user = trained["info"].known_user
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps({"userId": user}) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in trained["env"].items():
            mp.setenv(key, value)
        result = batch(input=str(source), num_results=5, log_answers=True)
        _, slots, _ = read_output(Path(result.output))
        (answer_id,) = {s["recommendation_id"] for s in slots}
        clicked = slots[1]
        sent = httpx.post(f"{api}/v1/events", headers=WRITE, timeout=10, json=[
            interaction(user, clicked["item_id"], "click", ranking=answer_id)])
        assert sent.status_code == 200, sent.text
        ingest()
        transform()
    con = duckdb.connect(str(trained["home"] / "warehouse.duckdb"), read_only=True)
    try:
        (schema,) = {r[0] for r in con.execute(
            "select table_schema from information_schema.tables "
            "where table_name = 'int_impressions'").fetchall()}
        rows = con.execute(
            f"select item_id, position, recommendation_source, is_clicked "
            f"from {schema}.int_impressions where ranking_id = ? order by position",
            [answer_id]).fetchall()
    finally:
        con.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (s["item_id"], s["position"], s["recommendation_source"])
        for s in sorted(slots, key=lambda s: s["position"])]
    assert [r[0] for r in rows if r[3]] == [clicked["item_id"]]
