"""Metarank's events as its documentation writes them, sent verbatim to a real server and
dropped into the landing folder: accepted, loaded exactly once, nothing dropped.

tests/fixtures/metarank/docs-events.jsonl holds events shaped as the examples of Metarank's
event schema page and quickstart, with values of our own: item, user, ranking with per-item
`relevancy`, interaction; string, number, boolean, string list and number list fields;
`fields: []`; the `event` key first or last; timestamps as millisecond strings, millisecond
numbers and ISO-8601; one per line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import WRITE

REAL_SERVER = True  # a real uvicorn takes them over HTTP (conftest's `server`)
EVENTS = Path(__file__).parents[1] / "fixtures" / "metarank" / "docs-events.jsonl"


def _ingest(home: Path):
    return Ingestor(home / "warehouse.duckdb", home / "raw", home / "landing").run()


def test_metarank_documented_events_are_kept_exactly_once(server):
    http, home = server["http"], server["home"]
    lines = EVENTS.read_bytes()
    events = [orjson.loads(line) for line in lines.splitlines()]
    headers = {**WRITE, "content-type": "application/x-ndjson"}
    assert http.post("/v1/events", content=lines, headers=headers).json() == {
        "accepted": len(events)}
    assert http.post("/v1/events", json=events, headers=WRITE).json() == {
        "accepted": len(events)}  # sent again as an array: the same ids
    (home / "landing").mkdir(exist_ok=True)
    shutil.copy(EVENTS, home / "landing" / "metarank.jsonl")

    report = _ingest(home)
    assert (report.rows_loaded, report.rows_quarantined) == (len(events), 0)
    assert report.duplicates_skipped == 2 * len(events)
    assert _ingest(home).rows_loaded == 0
    with connect(home / "warehouse.duckdb", read_only=True) as con:
        kinds = dict(con.execute("select event_type, count(*) from raw.events "
                                 "group by all").fetchall())
        [items] = con.execute("select items from raw.events where event_id = "
                              "'5d0c1a52-7a43-4c3e-9b5f-1f0e6c2b9a03'").fetchone()
        [fields] = con.execute("select fields from raw.events where event_id = "
                               "'5d0c1a52-7a43-4c3e-9b5f-1f0e6c2b9a01'").fetchone()
        [iso] = con.execute("select epoch_ms(event_at) from raw.events "
                            "where event_id = 'iso1'").fetchone()
    assert kinds == {"item": 2, "user": 1, "ranking": 2, "interaction": 4}
    assert orjson.loads(items) == [{"id": "item3", "fields": {"relevancy": 2.0}},
                                   {"id": "item1", "fields": {"relevancy": 1.0}},
                                   {"id": "item2", "fields": {"relevancy": 0.5}}]
    assert orjson.loads(fields) == {"title": "A striped scarf", "color": ["red", "grey"],
                                    "in_stock": True}
    assert iso == 1655896899000  # 2022-06-22T11:21:39Z


def test_metarank_events_refused_name_index_field_and_reason(server):
    bad = [
        {"event": "ranking", "id": "r", "timestamp": "1599391467000", "user": "u",
         "items": [{"id": "a", "relevancy": "high"}]},
        {"event": "item", "id": "m", "timestamp": "1599391467000", "item": "i",
         "fields": [{"name": "mixed", "value": [1, "a"]}]},
        {"event": "interaction", "id": "t", "timestamp": "yesterday", "user": "u",
         "type": "click", "item": "i"},
    ]
    answer = server["http"].post("/v1/events", json=bad, headers=WRITE)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [(d["index"], d["field"]) for d in detail] == [
        (0, "items[0].relevancy"), (1, "fields.mixed"), (2, "timestamp")]
    assert "expected a number" in detail[0]["reason"] and "ISO-8601" in detail[2]["reason"]


# every id of a native event, and the tenant: numbers are refused, never written as text
# (as "1" and "1.0" they would be two users)
_BASE = {"event": "interaction", "id": "n", "timestamp": "1599391467000", "user": "u",
         "session": "s", "item": "i", "type": "click", "ranking": "r", "tenant": "default"}
_RANKING = {"event": "ranking", "id": "nr", "timestamp": "1599391467000", "user": "u",
            "items": [{"id": "a"}]}


@pytest.mark.parametrize(("event", "field"), [
    ({**_BASE, "user": 42}, "user"), ({**_BASE, "user": 1.0}, "user"),
    ({**_BASE, "item": 1.0}, "item"), ({**_BASE, "session": 7}, "session"),
    ({**_BASE, "ranking": 3}, "ranking"), ({**_BASE, "id": 5}, "id"),
    ({**_BASE, "tenant": 1}, "tenant"), ({**_BASE, "user": True}, "user"),
    ({**_RANKING, "items": [{"id": 2}]}, "items[0].id"),
    ({**_RANKING, "ranking": 9.5}, "ranking"),
    ({"event": "item", "id": "ni", "timestamp": "1599391467000", "item": 17}, "item"),
    ({"event": "user", "id": "nu", "timestamp": "1599391467000", "user": 17}, "user"),
])
def test_a_numeric_id_is_refused_naming_the_field_and_nothing_is_stored(server, event, field):
    sent = [{**_BASE, "id": "ok-before"}, event]
    answer = server["http"].post("/v1/events", json=sent, headers=WRITE)
    assert answer.status_code == 422, answer.text
    [detail] = answer.json()["detail"]
    assert (detail["index"], detail["field"]) == (1, field)
    assert detail["reason"].startswith("must be a string, got "), detail
    landing = server["home"] / "landing"
    landing.mkdir(exist_ok=True)
    name = f"numeric-{len(list(landing.iterdir()))}.jsonl"
    (landing / name).write_bytes(orjson.dumps(event) + b"\n")
    report = _ingest(server["home"])
    assert report.rows_quarantined == 1 and report.rows_loaded == 0  # bulk files alike
    with connect(server["home"] / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("select count(*) from raw.events where event_id = 'ok-before'"
                           ).fetchone()[0] == 0


@pytest.mark.parametrize("typo", ["tenat", "sesion", "valeu", "field"])
def test_a_misspelt_member_of_an_event_is_refused_by_name_nothing_stored(server, typo):
    """Not dropped: `tenat` would store the event under the key's tenant, `valeu` without
    its value."""
    sent = [{**_BASE, "id": f"ok-before-{typo}"}, {**_BASE, "id": f"typo-{typo}", typo: "x"}]
    answer = server["http"].post("/v1/events", json=sent, headers=WRITE)
    assert answer.status_code == 422, answer.text
    [detail] = answer.json()["detail"]
    assert (detail["index"], detail["field"]) == (1, typo)
    assert "misspelt" in detail["reason"] and "tenant" in detail["reason"]
    landing = server["home"] / "landing"
    landing.mkdir(exist_ok=True)
    (landing / f"typo-{typo}.jsonl").write_bytes(orjson.dumps(sent[1]) + b"\n")
    report = _ingest(server["home"])
    assert report.rows_quarantined == 1 and report.rows_loaded == 0  # bulk files alike
    with connect(server["home"] / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("select count(*) from raw.events where event_id like ?",
                           [f"%-{typo}"]).fetchone()[0] == 0
        [reason] = con.execute("select reason from raw.quarantine where source_file like ?",
                               [f"%typo-{typo}.jsonl"]).fetchone()
    assert reason.startswith(f"{typo}: not a member of an event"), reason


BOM = b"\xef\xbb\xbf"  # what .NET's UTF8Encoding(true) and Windows PowerShell 5 put first


@pytest.mark.parametrize("form", ["object", "array", "lines"])
def test_a_body_that_starts_with_a_byte_order_mark_is_accepted(server, form):
    """Some .NET and Windows PowerShell clients send UTF-8 with a BOM; JSON readers may ignore
    it (RFC 8259 §8.1), as the landing folder's JSON Lines reader does."""
    events = [{"event": "interaction", "id": f"bom-{form}-{n}", "timestamp": "1599391467000",
               "user": "u", "item": f"i{n}", "type": "click"} for n in range(2)]
    body = {"object": orjson.dumps(events[0]), "array": orjson.dumps(events),
            "lines": b"\r\n".join(orjson.dumps(e) for e in events)}[form]
    content_type = "application/x-ndjson" if form == "lines" else "application/json"
    answer = server["http"].post("/v1/events", content=BOM + body,
                                 headers={**WRITE, "content-type": content_type})
    assert answer.status_code == 200, answer.text
    expected = 1 if form == "object" else 2
    assert answer.json() == {"accepted": expected}
    home = server["home"]
    stored = [orjson.loads(line)["id"] for path in sorted((home / "raw").rglob("*.jsonl"))
              for line in path.read_bytes().splitlines()]
    assert [i for i in stored if i.startswith(f"bom-{form}-")] == [
        e["id"] for e in events[:expected]]


def test_a_byte_order_mark_anywhere_else_is_still_refused(server):
    event = orjson.dumps({"event": "item", "id": "bom-mid", "timestamp": "1599391467000",
                          "item": "i"})
    answer = server["http"].post("/v1/events", content=b" " + BOM + event,
                                 headers={**WRITE, "content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "body"


_CLICK = b'"event": "interaction", "timestamp": "1599391467000", "item": "i1", "type": "click"'


@pytest.mark.parametrize(("form", "index", "field"), [
    ("object", 0, "user"), ("array", 1, "user"), ("lines", 1, "user"),
    ("nested", 1, "fields[1].name")])
def test_a_key_given_twice_is_refused_naming_event_and_field_nothing_stored(server, form,
                                                                           index, field):
    """`{"user": "u1", ..., "user": "u2"}`: a JSON reader keeps the last value without a word,
    so which user the event is for would be a guess: refused, as on every other route."""
    ok = b'{"id": "twice-ok-' + form.encode() + b'", "user": "u0", ' + _CLICK + b"}"
    bad = (b'{"id": "twice-' + form.encode() + b'", "user": "u1", ' + _CLICK
           + b', "user": "u2"}')
    if form == "nested":
        bad = (b'{"event": "item", "id": "twice-nested", "timestamp": "1599391467000", '
               b'"item": "i9", "fields": [{"name": "a", "value": 1}, '
               b'{"name": "b", "value": 2, "name": "c"}]}')
    body, content_type = {
        "object": (bad, "application/json"),
        "array": (b"[" + ok + b",\n " + bad + b"]", "application/json"),
        "lines": (ok + b"\n" + bad + b"\n", "application/x-ndjson"),
        "nested": (b"[" + ok + b", " + bad + b"]", "application/json")}[form]
    answer = server["http"].post("/v1/events", content=body,
                                 headers={**WRITE, "content-type": content_type})
    assert answer.status_code == 422, answer.text
    [detail] = answer.json()["detail"]
    assert (detail["index"], detail["field"]) == (index, field)
    assert detail["reason"].startswith("given twice in one object"), detail
    stored = [orjson.loads(line)["id"]
              for path in sorted((server["home"] / "raw").rglob("*.jsonl"))
              for line in path.read_bytes().splitlines()]
    assert not [i for i in stored if i.startswith("twice-")]


def test_keys_and_strings_holding_colons_quotes_and_escapes_are_not_a_key_given_twice(server):
    event = {"event": "item", "id": 'colon:"quote"\\', "timestamp": "1599391467000",
             "item": "a:b", "fields": [{"name": 'n:"\\', "value": '{"x": 1, "x": 2}'},
                                       {"name": "big", "value": 1e308}]}
    for body in (orjson.dumps(event), orjson.dumps([event, {**event, "id": "second"}]),
                 orjson.dumps(event) + b"\n" + orjson.dumps({**event, "id": "third"})):
        answer = server["http"].post("/v1/events", content=body,
                                     headers={**WRITE, "content-type": "application/json"})
        assert answer.status_code == 200, answer.text
