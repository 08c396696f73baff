"""Inputs no other test wrote: wrong JSON types on the Personalize routes, odd but valid ids,
empty answers. Never a 5xx; every answer that serving logs is an event ingest accepts."""

from __future__ import annotations

import json
import re

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import READ, WRITE
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server
from tests.utils.waits import log_lines, wait_until

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/default"
DATASET = "arn:aws:personalize:us-east-1:000000000000:dataset/default/ITEMS"
FEW = settings(max_examples=40, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("inputs")
    env = environment(home)
    register_champion(synthetic_bundle(), env["MLFLOW_TRACKING_URI"], home / "artifacts")
    with running_server(env) as base:
        yield {"base": base, "home": home}


def _post(server, path: str, body, headers=READ) -> httpx.Response:
    # json, not orjson: integers beyond 64 bits and Infinity are sent as written
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server['base']}{path}", content=content, timeout=30,
                      headers={**headers, "content-type": "application/json"})


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"userId": ["u1"]}, "userId", "SerializationException"),
    ({"userId": {"a": 1}}, "userId", "SerializationException"),
    ({"userId": True}, "userId", "SerializationException"),
    ({"userId": 7}, "userId", "SerializationException"),
    ({"userId": "u" * 300}, "userId", "InvalidInputException"),  # a string: too long
    ({"itemId": ["i1"]}, "itemId", "SerializationException"),
    ({"itemId": {"a": 1}}, "itemId", "SerializationException"),
    ({"userId": "u1", "itemId": False}, "itemId", "SerializationException"),
])
def test_get_recommendations_ids_of_the_wrong_type_are_malformed(server, body, field, code):
    r = _post(server, "/personalize/recommendations", {"campaignArn": CAMPAIGN, **body})
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-ErrorType"] == code
    assert r.json()["message"].startswith(f"{field}: ")


def test_personalized_ranking_refuses_an_id_longer_than_every_other_api_takes(server):
    r = _post(server, "/personalize/personalize-ranking",
              {"campaignArn": CAMPAIGN, "userId": "u" * 257, "inputList": ["i1"]})
    assert r.status_code == 400 and r.json()["message"].startswith("userId")


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity",
                                   b"123456789012345678901234567890"])
def test_filter_values_that_no_field_can_hold_are_refused_by_field(server, value):
    body = (b'{"user_id": "u1", "filters": [{"field": "color", "op": "eq", "value": '
            + value + b'}]}')
    r = _post(server, "/v1/recommendations", body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "filters[0].value"


def test_a_misspelt_member_of_a_filter_condition_is_refused_by_name(server):
    """`opp` is not ignored (the condition would filter on `eq`), as `num_result` is not."""
    r = _post(server, "/v1/recommendations",
              b'{"user_id": "u1", "filters": [{"field": "color", "opp": "ne", "value": "red"}]}')
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "filters[0].opp"
    assert "misspelt" in r.json()["detail"][0]["reason"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3), max_leaves=6)
_VALID = {
    "/personalize/recommendations": {"campaignArn": CAMPAIGN, "userId": "u1", "itemId": "i1",
                                     "numResults": 5, "context": {"device": "web"},
                                     "filterArn": "arn:aws:personalize:::filter/x",
                                     "filterValues": {"A": "b"}},
    "/personalize/personalize-ranking": {"campaignArn": CAMPAIGN, "userId": "u1",
                                         "inputList": ["i1", "i2"]},
    "/personalize/events": {"trackingId": "demo-tracking-id", "sessionId": "s", "userId": "u",
                            "eventList": [{"eventType": "click", "itemId": "i1",
                                           "sentAt": 1_767_225_600}]},
    "/personalize/items": {"datasetArn": DATASET, "items": [{"itemId": "i1"}]},
    "/personalize/users": {"datasetArn": DATASET.replace("ITEMS", "USERS"),
                           "users": [{"userId": "u1"}]},
}


@pytest.mark.parametrize("path", list(_VALID))
def test_wrong_json_types_on_personalize_routes_never_answer_5xx(server, path):
    headers = WRITE if path in ("/personalize/events", "/personalize/items",
                                "/personalize/users") else READ

    @FEW
    @given(key=st.sampled_from(sorted(_VALID[path])), value=json_values,
           nested=st.booleans())
    def send(key, value, nested):
        body = orjson.loads(orjson.dumps(_VALID[path]))
        target = body
        entries = next((v for v in body.values() if isinstance(v, list) and v
                        and isinstance(v[0], dict)), None)
        if nested and entries:  # one level down: a field of the first event / item / user
            target = entries[0]
            key = sorted(target)[hash(key) % len(target)]
        target[key] = value
        r = _post(server, path, body, headers)
        assert r.status_code < 500, (body, r.status_code, r.text)
        if r.headers.get("x-amzn-ErrorType") == "SerializationException":  # names the member
            named = rf"(body|([A-Za-z]+\[0\]\.)?{re.escape(key)})\b"
            assert re.match(named, r.json()["message"]), r.text

    send()


ids = st.text(min_size=1, max_size=256) | st.sampled_from(["u1", " ", "u" * 256, "0"])


def _answers_logged(home) -> list[dict]:
    return [orjson.loads(line) for line in log_lines(home) if b'"recommendation"' in line]


def test_every_logged_answer_is_an_event_ingest_accepts(server, tmp_path):
    sent = []

    @FEW
    @given(user=ids, native=st.booleans(), empty=st.booleans(),
           context=st.dictionaries(st.text(min_size=1, max_size=64), st.text(max_size=20),
                                   max_size=3))
    def ask(user, native, empty, context):
        if native:
            body = {"user_id": user, "num_results": 3, "context": context}
            if empty:  # no item is green, and random fill is off: an empty answer
                body |= {"filters": [{"field": "color", "op": "eq", "value": "green"}],
                         "fill_with_random": False}
            r = _post(server, "/v1/recommendations", body)
            assert r.status_code == 200, r.text
            sent.append(r.json()["recommendation_id"])
        else:  # botocore's model: a context name holds a letter, a digit or _
            context = {k: v for k, v in context.items() if re.search(r"[A-Za-z0-9_]", k)}
            body = {"campaignArn": CAMPAIGN, "userId": user, "numResults": 3,
                    "context": context}
            r = _post(server, "/personalize/recommendations", body)
            assert r.status_code == 200, r.text
            sent.append(r.json()["recommendationId"])

    ask()
    wanted = set(sent)
    logged = wait_until(lambda: [a for a in _answers_logged(server["home"]) if a["id"] in wanted],
                        f"the {len(wanted)} answers in the raw log",
                        until=lambda found: len(found) == len(wanted))
    assert any(not a["items"] for a in logged)
    report = Ingestor(tmp_path / "warehouse.duckdb", server["home"] / "raw",
                      tmp_path / "landing").run()
    assert report.rows_quarantined == 0, report.as_dict() if hasattr(report, "as_dict") else ""
    assert report.rows_loaded >= len(sent)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_this_server(server, page):
    html = httpx.get(f"{server['base']}{page}").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", html)  # the OpenAPI document
    assert urls and not [u for u in urls if "//" in u], urls  # no CDN, no other host
    for url in urls:
        assert httpx.get(f"{server['base']}{url}").status_code == 200, url


@pytest.mark.parametrize(("body", "field", "reason"), [
    (b'{"user_id": 42}', "user_id", "must be a string, got number 42"),
    (b'{"user_id": "u1", "num_results": "5"}', "num_results",
     "must be an integer, got string '5'"),
    (b'{"user_id": "u1", "exclude_ids": "i1"}', "exclude_ids", "must be an array, got string"),
])
def test_a_wrong_json_type_is_said_as_the_events_api_says_it(server, body, field, reason):
    """Not pydantic's `Input should be a valid string`: the words of /v1/events."""
    r = _post(server, "/v1/recommendations", body)
    assert r.status_code == 422, r.text
    [detail] = r.json()["detail"]
    assert detail["field"] == field and detail["reason"].startswith(reason), detail


def test_a_query_parameter_that_is_no_integer_names_it_in_the_same_words(server):
    r = httpx.get(f"{server['base']}/v1/recommendations", headers=READ, timeout=30,
                  params={"user_id": "u1", "num_results": "x"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"field": "num_results",
                                   "reason": "must be an integer, got string 'x'"}]
