"""Input limits, in process: body sizes per route, JSON depth before parsing, field bounds.

Every refusal is a 4xx naming the field, and nothing of a refused call is written. (Landing
files: links out of the landing folder are skipped, tests/warehouse/test_ingest.py.)
"""

from __future__ import annotations

import pytest

from serving.api.routes import personalize
from tests.utils.auth import ADMIN, READ, WRITE
from tests.utils.factories import interaction
from tests.utils.waits import nothing_logged


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(("path", "limit", "headers"), [
    ("/v1/recommendations", 256 * 1024, READ),
    ("/v1/rank", 256 * 1024, READ),
    ("/personalize/events", personalize.MAX_EVENTS_BODY_BYTES, WRITE),  # botocore's largest
    ("/admin/trackers", 64 * 1024, ADMIN),
])
def test_bodies_over_the_route_limit_are_refused_before_parsing(server, path, limit, headers):
    body = b'{"user_id": "' + b"x" * limit + b'"}'
    r = server["http"].post(path, content=body,
                            headers={**headers, "content-type": "application/json"})
    assert r.status_code == 413
    if path.startswith("/personalize"):
        assert r.headers["x-amzn-ErrorType"] == "InvalidInputException"
        assert r.json()["message"].startswith("body: larger than")
    else:
        assert r.json()["detail"][0]["field"] == "body"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = server["http"].post(path, content=chunks(), headers=headers)
    assert streamed.status_code == 413


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/v1/events", WRITE, 422),
    ("/v1/recommendations", READ, 422),
    ("/v1/rank", READ, 422),
    ("/personalize/events", WRITE, 400),
    ("/personalize/items", WRITE, 400),
])
def test_deeply_nested_json_is_refused_early(server, path, headers, status):
    headers = {**headers, "content-type": "application/json"}
    with nothing_logged(server["http"], server["home"]):
        body = b'{"events": ' + nested(40) + b"}"
        r = server["http"].post(path, content=body, headers=headers)
        assert r.status_code == status
        assert "nested deeper than 32" in r.text
        if path.startswith("/personalize"):  # malformed, as restJson1 reads a body
            assert r.headers["x-amzn-ErrorType"] == "SerializationException"
            assert r.json()["message"] == "body: JSON nested deeper than 32 levels"
    # nesting within the limit goes on to the parser (and is refused there, as a 4xx)
    shallow = server["http"].post(path, content=nested(30), headers=headers)
    assert 400 <= shallow.status_code < 500


def test_deep_nesting_inside_strings_does_not_count(server):
    event = {**interaction("u", "i"), "fields": {"note": "[" * 100}}
    r = server["http"].post("/v1/events", json=event, headers=WRITE)
    assert r.status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "u", "exclude_ids": ["x" * 257]}, "exclude_ids[0]"),
    ({"user_id": "u", "exclude_ids": ["x"] * 501}, "exclude_ids"),
    ({"user_id": "u", "num_results": 501}, "num_results"),
    ({"user_id": "u" * 257}, "user_id"),
    ({"tenant": "../etc", "user_id": "u"}, "tenant"),
    ({"user_id": "u", "filters": [{"field": "color"}] * 33}, "filters"),
    ({"user_id": "u", "template": "t" * 65}, "template"),
])
def test_recommendation_fields_have_bounds_named_in_the_answer(server, body, field):
    r = server["http"].post("/v1/recommendations", json=body, headers=READ)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == field
    assert r.json()["detail"][0]["reason"]


def test_rank_items_are_bounded(server):
    for items, field in ((["x"] * 501, "items"), ([], "items"), (["x" * 257], "items[0]")):
        r = server["http"].post("/v1/rank", json={"user_id": "u", "items": items},
                                headers=READ)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field


def test_malformed_json_is_a_4xx_naming_the_body(server):
    for path, headers in (("/v1/recommendations", READ), ("/v1/events", WRITE)):
        r = server["http"].post(path, content=b'{"user_id": ', headers={
            **headers, "content-type": "application/json"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["field"] == "body"
    aws = server["http"].post("/personalize/events", content=b"{nope", headers={
        **WRITE, "content-type": "application/json"})
    assert aws.status_code == 400 and aws.json()["message"].startswith("body: not JSON")


def test_answers_logged_back_leave_no_state_behind():
    # every answer is logged as a recommendation event and followed back: kept ids would grow
    # with every read, for ever (benchmarks/soak.py watches resident memory for this)
    from sluice.serve.realtime import RealtimeState

    state = RealtimeState()
    answers = [{"event": "recommendation", "id": f"r{n}", "tenant": "default", "user": "u",
                "items": [{"id": "i"}]} for n in range(1000)]
    assert state.apply(answers) == 0
    assert state.apply([{**interaction("u", "i1"), "tenant": "default"}]) == 1
    assert len(state.tenant("default").event_ids) == 1
