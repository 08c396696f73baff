"""The synthetic event history: valid events, anonymous visitors, position bias, determinism."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from sluice.intake.events import parse_event
from sluice.intake.synthetic import CATEGORIES, SyntheticSpec, generate

SPEC = {"users": 300, "items": 120, "events": 6000, "files": 2}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    result = generate(out, SyntheticSpec(**SPEC))
    events = []
    for path in result.paths:
        with open(path) as handle:
            events.extend(json.loads(line) for line in handle)
    return out, result, events


@pytest.fixture(scope="module")
def parsed(generated):
    return [parse_event(e) for e in generated[2]]


def test_files_and_totals(generated):
    out, result, events = generated
    assert len(result.paths) == SPEC["files"]
    assert all(p.parent == out and p.suffix == ".jsonl" for p in result.paths)
    assert sorted(out.iterdir()) == sorted(result.paths)  # no temporary files left behind
    assert len(events) >= SPEC["events"]
    assert result.events == len(events)
    assert sum(result.counts.values()) == len(events)
    kinds = defaultdict(int)
    for e in events:
        kinds[e["event"]] += 1
    assert dict(kinds) == {k: v for k, v in result.counts.items() if v}
    assert result.interactions == kinds["interaction"]
    assert len({e["id"] for e in events}) == len(events)


def test_every_line_parses(generated, parsed):
    assert len(parsed) == len(generated[2])
    assert {e["event"] for e in parsed} == {"item", "user", "ranking", "interaction"}
    assert all(e["tenant"] == "default" for e in parsed)


def test_item_events_carry_metadata(parsed):
    items = [e for e in parsed if e["event"] == "item"]
    assert len(items) == SPEC["items"]
    assert {e["item"] for e in items} == {f"i{n}" for n in range(SPEC["items"])}
    for e in items:
        f = e["fields"]
        assert {"title", "category", "brand", "color", "price", "tags", "in_stock"} <= set(f)
        assert f["category"] in CATEGORIES
        assert isinstance(f["price"], float) and f["price"] > 0
        assert isinstance(f["in_stock"], bool)
        assert f["category"] in f["tags"]


def test_referenced_items_and_users_exist(parsed):
    catalog = {e["item"] for e in parsed if e["event"] == "item"}
    users = {f"u{n}" for n in range(SPEC["users"])}
    for e in parsed:
        if e["event"] == "ranking":
            assert {i["id"] for i in e["items"]} <= catalog
            assert len(e["items"]) == len({i["id"] for i in e["items"]})
        if e["event"] == "interaction":
            assert e["item"] in catalog
            assert e["type"] in {"click", "purchase"}
        if "user" in e:
            assert e["user"] in users


def _sessions(parsed) -> dict[str, list[dict]]:
    by_session: dict[str, list[dict]] = defaultdict(list)
    for e in parsed:
        if "session" in e:
            by_session[e["session"]].append(e)
    for events in by_session.values():
        events.sort(key=lambda e: (e["timestamp"], e["id"]))
    return by_session


def test_some_sessions_log_in_part_way(parsed):
    logged_in_later = []
    for session, events in _sessions(parsed).items():
        flags = [("user" in e) for e in events]
        if not flags[0] and any(flags):
            # once a user shows up, every later event of the session carries the same user
            first = flags.index(True)
            assert all(flags[first:])
            assert len({e["user"] for e in events[first:]}) == 1
            logged_in_later.append(session)
    assert logged_in_later


def test_some_sessions_never_log_in(parsed):
    anonymous = [s for s, events in _sessions(parsed).items()
                 if not any("user" in e for e in events)]
    assert anonymous
    known = [s for s, events in _sessions(parsed).items()
             if all("user" in e for e in events)]
    assert len(known) > len(anonymous)


def test_result_names_real_examples(generated, parsed):
    _, result, _ = generated
    sessions = _sessions(parsed)
    assert result.anonymous_session in sessions
    assert not any("user" in e for e in sessions[result.anonymous_session])
    users = {e["user"] for e in parsed if "user" in e}
    assert result.known_user in users and result.stitched_user in users


def test_click_through_falls_with_position(parsed):
    positions = {}
    shown = defaultdict(int)
    for e in parsed:
        if e["event"] == "ranking":
            positions[e["id"]] = {item["id"]: p for p, item in enumerate(e["items"], start=1)}
            for p in range(1, len(e["items"]) + 1):
                shown[p] += 1
    clicks = defaultdict(int)
    for e in parsed:
        if e["event"] == "interaction" and e["type"] == "click":
            clicks[positions[e["ranking"]][e["item"]]] += 1
    ctr = {p: clicks[p] / shown[p] for p in shown}
    assert ctr[1] > ctr[10]
    assert ctr[1] > 1.5 * ctr[10]
    assert sum(ctr[p] for p in (1, 2, 3)) > sum(ctr[p] for p in (8, 9, 10))


def test_purchases_follow_clicks(parsed):
    clicks = {(e["ranking"], e["item"]) for e in parsed
              if e["event"] == "interaction" and e["type"] == "click"}
    purchases = [e for e in parsed if e["event"] == "interaction" and e["type"] == "purchase"]
    assert purchases
    assert all((p["ranking"], p["item"]) in clicks for p in purchases)
    assert all(p["fields"]["price"] > 0 for p in purchases)


def _contents(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def test_same_seed_same_files(generated, tmp_path):
    _, first, _ = generated
    again = generate(tmp_path / "again", SyntheticSpec(**SPEC))
    assert [p.name for p in again.paths] == [p.name for p in first.paths]
    assert _contents(again.paths) == _contents(first.paths)
    assert again.counts == first.counts


def test_different_seed_different_files(generated, tmp_path):
    _, first, _ = generated
    other = generate(tmp_path / "other", SyntheticSpec(**SPEC, seed=SyntheticSpec().seed + 1))
    assert [p.name for p in other.paths] != [p.name for p in first.paths]
    assert _contents(other.paths) != _contents(first.paths)
    first_ids = {json.loads(line)["id"]: line for p in first.paths for line in p.read_text()
                 .splitlines()}
    other_lines = [line for p in other.paths for line in p.read_text().splitlines()]
    differing = sum(1 for line in other_lines
                    if first_ids.get(json.loads(line)["id"]) != line)
    assert differing > len(other_lines) // 2
