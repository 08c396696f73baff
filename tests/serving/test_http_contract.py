"""The native HTTP API's contract, probed over real HTTP (uvicorn on loopback, a champion in a
real MLflow registry): bad input is a 4xx naming the field in one shape on every route, what is
accepted is stored once, and every slot says where it came from.

The Personalize emulation has its own tests (test_personalize_*.py)."""

from __future__ import annotations

import json
import urllib.parse

import duckdb
import httpx
import jsonschema
import pytest

from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import ADMIN, READ, WRITE
from tests.utils.factories import environment, interaction
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.waits import nothing_logged, wait_until

REAL_SERVER = True
SOURCES = {"model_personalized", "model_non_personalized", "model_fallback", "fallback"}
ARMS = [{"name": "a", "model": "champion", "share": 0.5}, {"name": "b", "model": "1",
                                                            "share": 0.5}]
RECOMMEND = ("/v1/recommendations", READ)
RANK = ("/v1/rank", READ)
TRACKERS = ("/admin/trackers", ADMIN)
EXPERIMENTS = ("/admin/experiments", ADMIN)


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("http_contract")
    env = environment(home)
    register_champion(synthetic_bundle(), env["MLFLOW_TRACKING_URI"], home / "artifacts")
    return env


def _send(server, route: tuple[str, dict], body, content_type: str | None = "application/json"
          ) -> httpx.Response:
    path, headers = route
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {**headers, **({"content-type": content_type} if content_type else {})}
    return server["http"].post(path, content=content, headers=sent)


def _refused(r: httpx.Response, status: int, field: str) -> str:
    """The one error shape: {"detail": [{"field", "reason"}]}; returns the reason."""
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert detail[0]["field"] == field, detail
    assert detail[0]["reason"], detail
    return detail[0]["reason"]


def _counts_hold(answer: dict) -> None:
    assert {s["recommendation_source"] for s in answer["items"]} <= SOURCES
    assert answer["personalized_count"] == answer["model_personalized_count"]
    assert answer["non_personalized_count"] == (answer["model_non_personalized_count"]
                                                 + answer["model_fallback_count"])
    assert answer["total"] == (answer["personalized_count"] + answer["non_personalized_count"]
                               + answer["fallback_count"]) == len(answer["items"])


# a JSON body carries typed values: nothing is converted, nothing unknown is dropped
@pytest.mark.parametrize(("route", "body", "field"), [
    (RECOMMEND, {"user_id": "u1", "num_results": True}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "num_results": "5"}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "num_results": 2.5}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "num_results": 0}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "num_results": -3}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "num_results": 10**30}, "num_results"),
    (RECOMMEND, {"user_id": "u1", "fill_with_random": "yes"}, "fill_with_random"),
    (RECOMMEND, {"user_id": "u1", "exclude_seen": 1}, "exclude_seen"),
    (RECOMMEND, {"user_id": "u1", "exclude_seen": None}, "exclude_seen"),
    (RECOMMEND, {"user_id": 5}, "user_id"),
    (RECOMMEND, {"user_id": ""}, "user_id"),
    (RECOMMEND, {"user_id": "u1", "context": {"page": 1}}, "context.page"),
    (RECOMMEND, {"user_id": "u1", "num_result": 5}, "num_result"),
    (RECOMMEND, {"user_id": "u1", "exclude_ids": "i1"}, "exclude_ids"),
    (RANK, {"user_id": "u1", "items": ["i1"], "item": "i2"}, "item"),
    (RANK, {"user_id": "u1", "items": [None]}, "items[0]"),
    (TRACKERS, {"tenant": "shop", "tenants": ["other"]}, "tenants"),
    (EXPERIMENTS, {"id": "e1", "arms": [{**ARMS[0], "share": "0.5"}, ARMS[1]]},
     "arms[0].share"),
    (EXPERIMENTS, {"id": "e1", "arms": ARMS, "start_ms": "1"}, "start_ms"),
])
def test_wrong_types_and_unknown_fields_are_refused_by_name(server, route, body, field):
    with nothing_logged(server["http"], server["home"]):
        _refused(_send(server, route, body), 422, field)


@pytest.mark.parametrize("route", [RECOMMEND, RANK, TRACKERS, EXPERIMENTS])
def test_a_tenant_name_that_breaks_the_rule_is_refused_in_words_not_a_regex(server, route):
    body = {"user_id": "u1", "items": ["i1"], "id": "e1", "arms": ARMS, "tenant": "my shop!"}
    reason = _refused(_send(server, route, body), 422, "tenant")
    assert reason == ("a tenant is 1-64 letters, digits, '_', '.', '-', starting with a letter "
                      "or digit, got 'my shop!'")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused_by_field(server, literal):
    r = _send(server, RECOMMEND, b'{"user_id": "u1", "num_results": ' + literal + b"}")
    _refused(r, 422, "num_results")
    share = (b'{"id": "e1", "arms": [{"name": "a", "model": "champion", "share": ' + literal
             + b'}, {"name": "b", "model": "1", "share": 0.5}]}')
    assert "finite" in _refused(_send(server, EXPERIMENTS, share), 422, "arms[0].share")


@pytest.mark.parametrize("route", [RECOMMEND, RANK, TRACKERS, EXPERIMENTS])
def test_a_key_given_twice_is_refused_not_last_one_wins(server, route):
    body = b'{"user_id": "u1", "tenant": "default", "items": ["i1"], "tenant": "shop"}'
    assert "'tenant' appears twice" in _refused(_send(server, route, body), 422, "body")
    nested = b'{"user_id": "u1", "context": {"page": "a", "page": "b"}}'
    assert "'page'" in _refused(_send(server, RECOMMEND, nested), 422, "body")


@pytest.mark.parametrize("route", [RECOMMEND, RANK, TRACKERS, EXPERIMENTS])
@pytest.mark.parametrize("body", [b'{"user_id": "\xff\xfe"}', b"\xef\xbb\xbf\xff{}",
                                  '{"user_id": "é"}'.encode("latin-1")])
def test_a_body_that_is_not_utf8_is_refused_naming_the_body(server, route, body):
    assert "not UTF-8" in _refused(_send(server, route, body), 422, "body")


@pytest.mark.parametrize("route", [RECOMMEND, RANK, TRACKERS, EXPERIMENTS])
@pytest.mark.parametrize("content_type", [None, "text/plain",
                                          "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_415_naming_the_content_type(server, route, content_type):
    r = _send(server, route, {"user_id": "u1", "items": ["i1"], "tenant": "shop"},
              content_type=content_type)
    assert "application/json" in _refused(r, 415, "content-type")


@pytest.mark.parametrize("route", [RECOMMEND, RANK, TRACKERS, EXPERIMENTS])
@pytest.mark.parametrize("body", [b"", b"null", b"[]", b"5", b'"u1"', b"{nope"])
def test_empty_or_non_object_bodies_are_refused_naming_the_body(server, route, body):
    _refused(_send(server, route, body), 422, "body")


def test_huge_strings_and_arrays_are_refused_by_field_or_size(server):
    _refused(_send(server, RECOMMEND, {"user_id": "u" * 257}), 422, "user_id")
    _refused(_send(server, RECOMMEND, {"user_id": "u", "exclude_ids": ["i"] * 501}), 422,
             "exclude_ids")
    _refused(_send(server, RANK, {"user_id": "u", "items": ["i"] * 501}), 422, "items")
    _refused(_send(server, RECOMMEND, {"user_id": "u" * 300_000}), 413, "body")


def test_query_parameters_convert_text_but_not_unknown_names(server):
    http = server["http"]
    ok = http.get("/v1/recommendations", params={"user_id": "u1", "num_results": "3",
                                                  "fill_with_random": "false"}, headers=READ)
    assert ok.status_code == 200 and len(ok.json()["items"]) <= 3
    _refused(http.get("/v1/recommendations", params={"user_id": "u1", "num_result": "3"},
                      headers=READ), 422, "num_result")
    _refused(http.get("/v1/recommendations", params={"num_results": "x"}, headers=READ), 422,
             "num_results")


def test_get_takes_filters_each_as_the_json_of_one_condition(server):
    """GET documents `filters` as POST does: each condition is one parameter, its JSON."""
    http = server["http"]
    red = json.dumps({"field": "color", "op": "eq", "value": "red"})
    got = http.get("/v1/recommendations", headers=READ,
                   params=[("user_id", "u3"), ("num_results", "20"), ("filters", red)])
    assert got.status_code == 200, got.text
    items = [s["item_id"] for s in got.json()["items"]]
    assert items and all(int(i[1:]) % 2 for i in items), items  # odd items are the red ones
    posted = http.post("/v1/recommendations", headers=READ, json={
        "user_id": "u3", "num_results": 20, "filters": [json.loads(red)]}).json()
    assert items == [s["item_id"] for s in posted["items"]]
    typo = json.dumps({"field": "color", "opp": "eq", "value": "red"})
    _refused(http.get("/v1/recommendations", params={"user_id": "u3", "filters": typo},
                      headers=READ), 422, "filters[0].opp")
    assert '{"field": "color"' in _refused(
        http.get("/v1/recommendations", params={"user_id": "u3", "filters": "red"},
                 headers=READ), 422, "filters[0]")
    # a JSON body keeps its types: a condition sent as text is refused, not parsed
    _refused(_send(server, RECOMMEND, {"user_id": "u3", "filters": [red]}), 422, "filters[0]")


def test_routes_and_methods_that_do_not_exist_have_the_same_error_shape(server):
    http = server["http"]
    _refused(http.get("/v1/nothing-here", headers=READ), 404, "path")
    _refused(http.get("/v2/recommendations", headers=READ), 404, "path")
    moved = http.post("/health")
    _refused(moved, 405, "method")
    assert moved.headers["allow"] == "GET"
    _refused(http.delete("/v1/recommendations", headers=READ), 405, "method")


@pytest.mark.parametrize("ident", ["a/b", "a%2Fb", "%", "100%", "a\x00b", "😀", "e\u0301",
                                   "\u202eabc", " ", "a/../b"])
def test_ids_in_paths_are_404_naming_them_whatever_they_hold(server, ident):
    quoted = urllib.parse.quote(ident, safe="")
    explained = server["http"].get(f"/v1/recommendations/{quoted}", headers=READ)
    assert repr(ident) in _refused(explained, 404, "recommendation_id")
    for path in (f"/admin/experiments/{quoted}", f"/admin/experiments/{quoted}/stop"):
        send = server["http"].post if path.endswith("/stop") else server["http"].get
        _refused(send(path, headers=ADMIN), 404, "experiment")


def test_a_path_id_longer_than_any_answer_id_names_the_field(server):
    r = server["http"].get("/v1/recommendations/" + "x" * 65, headers=READ)
    _refused(r, 422, "recommendation_id")


@pytest.mark.parametrize("user", ["😀", "e\u0301", "\u202eabc", "a\x00b", "a/b%2F",
                                  "user with spaces"])
def test_unicode_ids_are_answered_and_their_history_excludes(server, user):
    http = server["http"]
    first = http.post("/v1/recommendations", json={"user_id": user, "num_results": 5},
                      headers=READ)
    assert first.status_code == 200, first.text
    answer = first.json()
    _counts_hold(answer)
    seen = answer["items"][0]["item_id"]
    r = http.post("/v1/events", json=interaction(user, seen), headers=WRITE)
    assert r.status_code == 200, r.text

    def recommended() -> set[str]:
        again = http.post("/v1/recommendations", json={"user_id": user, "num_results": 5},
                          headers=READ)
        return {slot["item_id"] for slot in again.json()["items"]}

    wait_until(recommended, f"{seen} excluded once {user!r} has seen it",
               until=lambda items: seen not in items)


def test_a_user_with_no_history_gets_the_popular_tier(server):
    for body in ({"user_id": "never-seen-before", "num_results": 10}, {"num_results": 10},
                 {"session_id": "fresh-session", "num_results": 10}):
        r = server["http"].post("/v1/recommendations", json=body, headers=READ)
        assert r.status_code == 200, r.text
        answer = r.json()
        _counts_hold(answer)
        assert len(answer["items"]) == 10
        assert {s["recommendation_source"] for s in answer["items"]} == {"model_fallback"}
        assert answer["items"][0]["item_id"] == "i0"  # the most popular item of the bundle


def test_filters_and_exclusions_hold_in_every_slot(server):
    bundle = synthetic_bundle()
    seen = {f"i{c}" for c in bundle.user_items[3].indices}
    base = {"user_id": "u3", "num_results": 60}
    http = server["http"]
    plain = http.post("/v1/recommendations", json=base, headers=READ).json()
    _counts_hold(plain)
    assert "model_personalized" in {s["recommendation_source"] for s in plain["items"]}
    assert not seen & {s["item_id"] for s in plain["items"]}
    excluded = [s["item_id"] for s in plain["items"][:5]]
    red = http.post("/v1/recommendations", headers=READ, json={
        **base, "exclude_ids": excluded,
        "filters": [{"field": "color", "op": "eq", "value": "red"}]}).json()
    _counts_hold(red)
    items = [s["item_id"] for s in red["items"]]
    assert items and not set(excluded) & set(items) and not seen & set(items)
    assert all(int(i[1:]) % 2 for i in items), items  # odd items are the red ones
    assert len(items) == len(set(items))
    with_seen = http.post("/v1/recommendations", headers=READ,
                          json={**base, "exclude_seen": False, "num_results": 200}).json()
    assert seen <= {s["item_id"] for s in with_seen["items"]}


def test_rank_labels_every_slot_and_keeps_unknown_items_last(server):
    r = server["http"].post("/v1/rank", json={"user_id": "u1", "items": ["zz", "i1", "i2"]},
                            headers=READ)
    assert r.status_code == 200, r.text
    answer = r.json()
    _counts_hold(answer)
    assert [s["item_id"] for s in answer["items"]][-1] == "zz"
    assert answer["items"][-1]["recommendation_source"] == "fallback"


def _stored(server, tmp_path, event_ids: list[str]) -> dict[str, int]:
    Ingestor(tmp_path / "warehouse.duckdb", server["home"] / "raw", tmp_path / "landing").run()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("select event_id, count(*) from raw.events where event_id in "
                           f"({', '.join('?' * len(event_ids))}) group by 1",
                           event_ids).fetchall()
    return dict(rows)


def test_a_batch_retried_after_a_timeout_is_stored_once(server, tmp_path):
    batch = [interaction("retry-user", f"i{n}", id=f"retry-{n}") for n in range(3)]
    for _ in range(2):  # the first answer was lost: the client sends the batch again
        r = server["http"].post("/v1/events", json=batch, headers=WRITE)
        assert r.status_code == 200 and r.json() == {"accepted": 3}
    stored = wait_until(lambda: _stored(server, tmp_path, [e["id"] for e in batch]),
                        "the retried batch in the warehouse", until=lambda s: len(s) == 3)
    assert stored == {e["id"]: 1 for e in batch}


def test_a_batch_with_one_bad_event_is_refused_whole_naming_it(server):
    good = interaction("u1", "i1")
    with nothing_logged(server["http"], server["home"]):
        r = server["http"].post("/v1/events", headers=WRITE,
                                json=[good, {**interaction("u1", "i2"), "timestamp": "soon"}])
        assert r.status_code == 422
        assert r.json()["detail"] == [{"index": 1, "field": "timestamp",
                                       "reason": r.json()["detail"][0]["reason"]}]


def test_experiment_times_are_bounded_and_named_as_sent(server):
    far = {"id": "far", "arms": ARMS, "start_ms": 10**30}
    _refused(_send(server, EXPERIMENTS, far), 422, "start_ms")
    _refused(_send(server, EXPERIMENTS, {"id": "far", "arms": ARMS, "end_ms": 10**20}), 422,
             "end_ms")
    backwards = {"id": "back", "arms": ARMS, "start_ms": 2_000_000_000_000,
                 "end_ms": 1_900_000_000_000}
    _refused(_send(server, EXPERIMENTS, backwards), 422, "end_ms")
    assert server["http"].get("/admin/experiments", headers=ADMIN).json() == []


def test_the_openapi_document_declares_the_error_shape_of_every_native_operation(server):
    schema = server["http"].get("/openapi.json").json()
    problems = "#/components/schemas/Problems"
    for path, operations in schema["paths"].items():
        if not path.startswith(("/v1", "/admin")):
            continue
        for method, operation in operations.items():
            statuses = {s for s in operation["responses"] if s.startswith("4")}
            assert {"401", "403", "422"} <= statuses, (method, path, statuses)
            for status in statuses:
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"]["$ref"] == problems, (method, path, status)
            if method == "post" and "requestBody" in operation and path != "/v1/events":
                assert "415" in statuses, (method, path)
            if "{" in path:
                assert "404" in statuses, (method, path)


def test_the_events_schema_takes_the_events_the_server_takes(server):
    """/openapi.json's body of POST /v1/events against the server's own rules: an anonymous
    visitor's events (a session, no user), interaction types up to 256 characters, epoch
    seconds with a fraction or as digits are accepted by both; a longer type by neither."""
    schema = server["http"].get("/openapi.json").json()
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    events = [interaction(None, "i1", session="s-anon"),
              interaction("u1", "i1", type_="t" * 256),
              interaction("u1", "i1", timestamp=1796117400.25),
              interaction("u1", "i1", timestamp="1796117400"),
              {"event": "ranking", "id": "anon-list", "timestamp": 1796117400000,
               "session": "s-anon", "items": [{"id": "i1"}]}]
    for event in events:
        jsonschema.validate(event, body["schema"])
        r = server["http"].post("/v1/events", json=event, headers=WRITE)
        assert r.status_code == 200, r.text
    longer = interaction("u1", "i1", type_="t" * 257)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(longer, body["schema"])
    r = server["http"].post("/v1/events", json=longer, headers=WRITE)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "type", r.text


def _event_bytes(**raw: str) -> bytes:
    """An interaction written by hand, `raw` values as JSON text (NaN, wide integers)."""
    event = interaction("u1", "i1")
    text = json.dumps(event)[:-1]
    for name, literal in raw.items():
        text = text.replace(f'"{name}": {json.dumps(event[name])}', f'"{name}": {literal}') \
            if name in event else text + f', "{name}": {literal}'
    return (text + "}").encode()


@pytest.mark.parametrize(("raw", "field"), [
    ({"value": "NaN"}, "value"), ({"value": "-Infinity"}, "value"),
    ({"timestamp": "Infinity"}, "timestamp"),
    ({"user": "NaN"}, "user"), ({"item": "Infinity"}, "item"),
    ({"user": "123456789012345678901234567890"}, "user"),
    ({"session": "-123456789012345678901234567890"}, "session"),
    ({"fields": '[{"name": "price", "value": NaN}]'}, "fields.price"),
])
@pytest.mark.parametrize("framing", ["object", "array", "lines"])
def test_events_with_nan_infinity_or_wide_integers_are_refused_naming_the_field(
        server, raw, field, framing):
    bad = _event_bytes(**raw)
    good = json.dumps(interaction("u1", "i2")).encode()
    body, index = {"object": (bad, 0), "array": (b"[" + good + b", " + bad + b"]", 1),
                   "lines": (good + b"\n" + bad + b"\n", 1)}[framing]
    with nothing_logged(server["http"], server["home"]):
        r = server["http"].post("/v1/events", content=body, headers={
            **WRITE, "content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0] | {"reason": ""} == {"index": index, "field": field,
                                                          "reason": ""}


def test_a_tenant_that_nothing_names_is_404_and_leaves_nothing_behind(server):
    http = server["http"]
    for n in range(3):
        tenant = f"typo-{n}"
        _refused(http.post("/v1/recommendations", json={"tenant": tenant, "user_id": "u1"},
                           headers=ADMIN), 404, "tenant")
        _refused(http.get("/v1/recommendations", params={"tenant": tenant}, headers=ADMIN),
                 404, "tenant")
        _refused(http.post("/v1/rank", json={"tenant": tenant, "items": ["i1"]},
                           headers=ADMIN), 404, "tenant")
    # a tenant with a key of its own, but no data yet, is answered (empty: nothing to rank)
    shop = http.post("/v1/recommendations", json={"tenant": "shop"}, headers=ADMIN)
    assert shop.status_code == 200 and shop.json()["items"] == []
    # and one event makes a tenant known: its popular tier answers at once
    r = http.post("/v1/events", json={**interaction("u9", "fresh-item"), "tenant": "typo-0"},
                  headers=ADMIN)
    assert r.status_code == 200, r.text
    answer = wait_until(lambda: http.post("/v1/recommendations", headers=ADMIN, json={
        "tenant": "typo-0", "user_id": "someone"}), "typo-0 answered once it has an event",
        until=lambda r: r.status_code == 200)
    assert [(s["item_id"], s["recommendation_source"]) for s in answer.json()["items"]] == [
        ("fresh-item", "model_fallback")]
