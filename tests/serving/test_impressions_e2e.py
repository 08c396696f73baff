"""An impression sent with a recommendationId is the list that id names: one shown list.

Personalize's PutEvents: `recommendationId` names the list the user was shown, `impression`
lists its items (explicit impressions). The real boto3 clients call a real server: it answers
GetRecommendations (the answer is logged under its recommendationId), then PutEvents reports
a click on that answer with its impression, two clicks on a list from elsewhere (an id Sluice
never served) each with its impression, and a click with an impression and no id. A real
ingest of the raw log into a DuckDB file and a real `dbt build` must show each list once:
the answer with its own slots (source, propensity) and the click, the foreign list under its
id with both clicks, the list without an id under its event's impression.
"""

from __future__ import annotations

import time

import duckdb
import orjson
import pytest

from sluice.intake.eventlog import segments
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build
from tests.utils.auth import WRITE, boto_client
from tests.utils.waits import wait_until
from tests.warehouse.test_dbt import dbt_vars

REAL_SERVER = True
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"


def _logged(home) -> list[dict]:
    return [orjson.loads(line) for path in segments(home / "raw")
            for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def built(server, tmp_path_factory) -> dict:
    home, http = server["home"], server["http"]
    catalog = [{"event": "interaction", "id": f"seed-{n}", "timestamp": 1_700_000_000_000 + n,
                "user": f"seed{n % 3}", "item": f"i{n % 5}", "type": "click"}
               for n in range(15)]
    assert http.post("/v1/events", json=catalog, headers=WRITE).status_code == 200
    runtime = boto_client(server["base"], "personalize-runtime")
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="alice", numResults=3)
    served = [i["itemId"] for i in answer["itemList"]]
    answer_id = answer["recommendationId"]
    wait_until(lambda: [e for e in _logged(home) if e["id"] == answer_id],
               "the answer in the raw log")
    events = boto_client(server["base"], "personalize-events")
    now = time.time()
    events.put_events(trackingId="demo-tracking-id", userId="alice", sessionId="s-a",
                      eventList=[
        {"eventId": "click-answer", "eventType": "click", "itemId": served[1], "sentAt": now,
         "recommendationId": answer_id, "impression": served},
        {"eventId": "click-foreign-1", "eventType": "click", "itemId": "f2", "sentAt": now,
         "recommendationId": "ext-list-1", "impression": ["f1", "f2", "f3"]},
        {"eventId": "click-foreign-2", "eventType": "click", "itemId": "f3", "sentAt": now + 1,
         "recommendationId": "ext-list-1", "impression": ["f1", "f2", "f3"]},
        {"eventId": "click-plain", "eventType": "click", "itemId": "g1", "sentAt": now,
         "impression": ["g1", "g2"]},
    ])
    root = tmp_path_factory.mktemp("impressions")
    warehouse = root / "warehouse.duckdb"
    Ingestor(warehouse, home / "raw", root / "landing").run()
    dbt_build(warehouse, root / "dbt", dbt_vars())
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select ranking_id, shown_in, position, item_id, is_clicked, recommendation_source,"
            " propensity from intermediate.int_impressions where tenant = 'default' "
            "order by ranking_id, position").fetchall()
        outcomes = con.execute("select ranking_id, item_id, is_clicked from "
                               "marts.ranking_outcomes order by 1, 2").fetchall()
        slots = con.execute("select recommendation_id, item_id, is_clicked from "
                            "marts.slot_propensities order by 1, position").fetchall()
    return {"answer_id": answer_id, "served": served, "rows": rows, "outcomes": outcomes,
            "slots": slots}


def _lists(built: dict) -> dict[str, list[tuple]]:
    lists: dict[str, list[tuple]] = {}
    for ranking_id, *rest in built["rows"]:
        lists.setdefault(ranking_id, []).append(tuple(rest))
    return lists


def test_each_shown_list_is_there_once(built):
    assert sorted(_lists(built)) == sorted(
        [built["answer_id"], "ext-list-1", "click-plain:impression"])


def test_an_impression_of_a_served_answer_is_that_answer_with_its_click(built):
    answer = _lists(built)[built["answer_id"]]
    assert [(shown_in, item) for shown_in, _, item, *_ in answer] == [
        ("recommendation", item) for item in built["served"]]
    assert [clicked for *_, clicked, _, _ in answer] == [False, True, False]
    assert all(source is not None and propensity is not None
               for *_, source, propensity in answer)
    assert [(i, c) for r, i, c in built["slots"] if r == built["answer_id"]] == [
        (item, item == built["served"][1]) for item in built["served"]]


def test_a_list_from_elsewhere_is_shown_under_its_id_with_every_click(built):
    assert _lists(built)["ext-list-1"] == [
        ("ranking", 1, "f1", False, None, None), ("ranking", 2, "f2", True, None, None),
        ("ranking", 3, "f3", True, None, None)]
    assert [o for o in built["outcomes"] if o[0] == "ext-list-1"] == [
        ("ext-list-1", "f1", False), ("ext-list-1", "f2", True), ("ext-list-1", "f3", True)]


def test_an_impression_without_an_id_is_its_events_own_list(built):
    assert [o for o in built["outcomes"] if o[0] == "click-plain:impression"] == [
        ("click-plain:impression", "g1", True), ("click-plain:impression", "g2", False)]
    assert {o[0] for o in built["outcomes"]} == {"ext-list-1", "click-plain:impression"}
