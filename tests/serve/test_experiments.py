"""Experiments: validation, stable assignment by share, the durable store, team draft."""

from __future__ import annotations

import json
import logging

import pytest

from sluice.errors import NotFoundError
from sluice.experiments import (
    INTERLEAVED,
    Arm,
    Experiment,
    ExperimentError,
    Experiments,
    parse_arms,
    validate,
)
from sluice.serve.answer_log import recommendation_event as _event
from sluice.serve.answers import Answer, RecommendationRequest, Slot
from sluice.serve.arms import draft_propensities, team_draft
from sluice.store import StoreError
from sluice.vocabulary import MODEL_FALLBACK, MODEL_PERSONALIZED


def _exp(id="e1", arms=None, **kw) -> Experiment:
    arms = arms or (Arm("control", "champion", 0.5), Arm("treatment", "challenger", 0.5))
    return Experiment(id=id, tenant=kw.pop("tenant", "shop"), arms=tuple(arms), **kw)


def test_assignment_is_deterministic_and_follows_the_shares():
    exp = _exp(arms=(Arm("a", "1", 0.2), Arm("b", "2", 0.8)))
    first = [exp.assign(f"u{i}", None).name for i in range(20_000)]
    # a fresh object (another worker, a restart) assigns the same
    again = Experiment.from_dict(exp.as_dict())
    assert [again.assign(f"u{i}", None).name for i in range(20_000)] == first
    share = first.count("a") / len(first)
    assert 0.19 < share < 0.21
    # the session wins over the user: a session that logs in keeps its arm
    for n in range(200):
        anonymous = exp.assign(None, f"s{n}")
        assert exp.assign(f"user-{n}", f"s{n}") == anonymous
    # another experiment splits independently of this one
    other = _exp(id="e2", arms=exp.arms)
    agree = sum(other.assign(f"u{i}", None).name == first[i] for i in range(20_000))
    assert agree / 20_000 < 0.75  # 0.2^2 + 0.8^2 = 0.68 when independent


def test_a_request_without_a_unit_draws_its_arm_by_share():
    """No session and no user: nothing to keep the arm for, and the log counts each such
    answer as its own unit; one shared hash sent every one of them to the same arm."""
    exp = _exp(arms=(Arm("a", "1", 0.2), Arm("b", "2", 0.8)))
    n = 5000
    drawn = sum(exp.assign(None, None).name == "a" for _ in range(n))
    assert abs(drawn - 0.2 * n) <= 4 * (n * 0.2 * 0.8) ** 0.5, drawn
    assert sum(exp.assign("", "").name == "a" for _ in range(n)) not in (0, n)


@pytest.mark.parametrize(("exp", "field", "reason"), [
    (_exp(arms=(Arm("a", "1", 0.5), Arm("b", "2", 0.4))), "arms", "sum to 0.9"),
    (_exp(arms=(Arm("a", "1", 1.0),)), "arms", "at least two"),
    (_exp(arms=(Arm("a", "1", 0.5), Arm("a", "2", 0.5))), "arms", "distinct"),
    (_exp(arms=(Arm("a", "1", 1.5), Arm("b", "2", -0.5))), "arms", "positive"),
    (_exp(kind="interleaving", arms=(Arm("a", "1", 0.4), Arm("b", "2", 0.3),
                                     Arm("c", "3", 0.3))), "arms", "exactly two"),
    (_exp(template="nope"), "template", "one of"),
    (_exp(metric="revenue"), "metric", "one of"),
    (_exp(tenant="bad tenant"), "tenant", "letters"),
    (_exp(id="bad id!"), "id", "letters"),
    (_exp(start_ms=10, end_ms=5), "end_ms", "after the start"),
])
def test_invalid_definitions_name_the_field(exp, field, reason):
    with pytest.raises(ExperimentError) as raised:
        validate(exp, [])
    assert raised.value.field == field and reason in raised.value.reason


def test_unknown_models_and_overlapping_traffic_are_refused():
    with pytest.raises(ExperimentError, match="no registered version or alias 'challenger'"):
        validate(_exp(), [], model_exists=lambda ref: ref == "champion")
    running = _exp(id="running", template="personalized", start_ms=0)
    with pytest.raises(ExperimentError, match="overlaps experiment 'running'"):
        validate(_exp(id="new", template="*", start_ms=5), [running])
    # other tenant, other template, or after the first ended: no overlap
    validate(_exp(id="new", tenant="other"), [running])
    validate(_exp(id="new", template="popular"), [running])
    ended = _exp(id="ended", template="personalized", start_ms=0, end_ms=100)
    validate(_exp(id="new", template="personalized", start_ms=100), [ended])


def test_parse_arms_from_the_command_line():
    assert parse_arms(["control=champion", "treatment=challenger"]) == (
        Arm("control", "champion", 0.5), Arm("treatment", "challenger", 0.5))
    assert parse_arms(["a=3:0.9", "b=4:0.1"])[1] == Arm("b", "4", 0.1)
    with pytest.raises(ExperimentError, match="NAME=MODEL"):
        parse_arms(["champion"])


def test_store_is_shared_by_instances_and_stop_ends_the_experiment(tmp_path):
    writer, reader = Experiments(tmp_path), Experiments(tmp_path)
    writer.create(_exp(start_ms=0, template="personalized"))
    found = reader.get("e1")
    assert found.arms[1] == Arm("treatment", "challenger", 0.5)
    assert reader.running("shop", "personalized", now_ms=1000) == found
    assert reader.running("shop", "popular", now_ms=1000) is None
    with pytest.raises(ExperimentError, match="exists already"):
        writer.create(_exp(start_ms=0))
    writer.stop("e1", now_ms=2000)
    assert Experiments(tmp_path).running("shop", "personalized", now_ms=2001) is None
    assert Experiments(tmp_path).get("e1").running(1999)
    with pytest.raises(NotFoundError):
        reader.get("missing")


def test_an_experiment_on_a_configured_template_wins_over_one_on_its_base(tmp_path):
    store = Experiments(tmp_path)
    with pytest.raises(ExperimentError, match="in_stock") as raised:  # not a configured name
        store.create(_exp(id="narrow", template="in_stock"))
    assert raised.value.field == "template"
    templates = ("personalized", "popular", "in_stock")
    store.create(_exp(id="narrow", template="in_stock", start_ms=0), templates=templates)
    store.create(_exp(id="broad", template="personalized", start_ms=0), templates=templates)
    # a request naming the configured template (base personalized): the narrow experiment
    assert store.running("shop", "personalized", now_ms=1, name="in_stock").id == "narrow"
    # a request for the base template itself, or another configured one: the broad one
    assert store.running("shop", "personalized", now_ms=1).id == "broad"
    assert store.running("shop", "personalized", now_ms=1, name="sale").id == "broad"
    store.stop("broad", now_ms=2)
    assert store.running("shop", "personalized", now_ms=3) is None
    assert store.running("shop", "personalized", now_ms=3, name="in_stock").id == "narrow"


def _answer(items: list[str], source: str = MODEL_PERSONALIZED) -> Answer:
    return Answer("x", "1", "personalized",
                  [Slot(i, 1.0 / (n + 1), n + 1, source) for n, i in enumerate(items)])


def test_team_draft_credits_each_slot_and_keeps_the_counts():
    exp = _exp(kind="interleaving", arms=(Arm("a", "1", 0.5), Arm("b", "2", 0.5)))
    a = _answer(["i1", "i2", "i3", "i4", "i5", "i6"])
    b = _answer(["i2", "i7", "i1", "i8", "i9", "i10"], MODEL_FALLBACK)
    for _ in range(50):
        merged = team_draft(exp, a, b, 6)
        ids = [s.item_id for s in merged.items]
        assert len(ids) == 6 == len(set(ids))
        assert [s.position for s in merged.items] == list(range(1, 7))
        by = {arm: [s for s in merged.items if s.arm == arm] for arm in ("a", "b")}
        assert len(by["a"]) == len(by["b"]) == 3  # team draft: picks stay balanced
        assert all(s.recommendation_source == MODEL_PERSONALIZED for s in by["a"])
        assert all(s.recommendation_source == MODEL_FALLBACK for s in by["b"])
        # each arm's picks are in its own order
        for arm, ranking in (("a", a), ("b", b)):
            order = [s.item_id for s in ranking.items]
            picked = [order.index(s.item_id) for s in by[arm]]
            assert picked == sorted(picked)
        counts = merged.counts()
        assert counts["total"] == 6 and counts["model_fallback_count"] == 3
        assert merged.experiment == "e1" and merged.arm == INTERLEAVED
    # a short list: the other arm fills
    assert len(team_draft(exp, _answer(["i1"]), b, 5).items) == 5


@pytest.mark.parametrize(("first", "second", "size"), [
    (["i1", "i2", "i3", "i4", "i5", "i6"], ["i2", "i7", "i1", "i8", "i9", "i10"], 6),
    (["i1", "i2", "i3"], ["i1", "i2", "i3"], 3),  # the same ranking: the coin never matters
    (["i1"], ["i2", "i1", "i3", "i4", "i5"], 5),  # one arm runs out: the other fills
    (["i1", "i2", "i3", "i4", "i5"], ["i5", "i4", "i3", "i2", "i1"], 5),
])
def test_team_draft_propensities_are_the_chance_over_every_coin_sequence(first, second, size):
    """Every sequence of coin outcomes played (each equally likely): how often each item
    lands at each position is the propensity every slot carries, and per position the
    propensities of the items that can land there sum to one."""
    import itertools
    from collections import Counter

    exp = _exp(kind="interleaving", arms=(Arm("a", "1", 0.5), Arm("b", "2", 0.5)))
    a, b = _answer(first), _answer(second, MODEL_FALLBACK)
    flips = (size + 1) // 2  # at most one coin per pair of slots
    chance = draft_propensities(first, second, size)
    seen: Counter[tuple[int, str]] = Counter()
    for outcome in itertools.product((0.0, 0.9), repeat=flips):
        merged = team_draft(exp, a, b, size, coin=iter(outcome).__next__)
        for slot in merged.items:
            seen[slot.position, slot.item_id] += 1
            assert slot.propensity == pytest.approx(chance[slot.position, slot.item_id])
    expected = {key: n / 2 ** flips for key, n in seen.items()}
    assert chance == pytest.approx(expected)
    by_position: Counter[int] = Counter()
    for (position, _), p in expected.items():
        by_position[position] += p
    assert all(total == pytest.approx(1.0) for total in by_position.values())
    if first == second:
        assert set(expected.values()) == {1.0}


def test_answer_and_log_carry_experiment_and_arm_additively():
    plain = _answer(["i1"])
    assert "experiment" not in plain.as_dict()
    assert "arm" not in _event(RecommendationRequest(user_id="u"), plain)["items"][0]
    tagged = _answer(["i1", "i2"])
    tagged.experiment, tagged.arm, tagged.arm_share = "e1", "b", 0.5
    for slot in tagged.items:
        slot.arm = "b"
    body = tagged.as_dict()
    assert body["experiment"] == "e1" and body["items"][1]["arm"] == "b"
    assert body["items"][0]["recommendation_source"] == MODEL_PERSONALIZED
    event = _event(RecommendationRequest(user_id="u"), tagged)
    assert event["fields"]["experiment"] == "e1" and event["fields"]["arm_share"] == 0.5
    assert [i["arm"] for i in event["items"]] == ["b", "b"]


def test_an_interleaved_answer_is_read_back_from_the_log_and_explained_by_team_draft(tmp_path):
    from sluice.intake.eventlog import EventLog
    from sluice.serve.explain import explain, logged_answer

    exp = _exp(kind="interleaving", arms=(Arm("a", "1", 0.5), Arm("b", "2", 0.5)))
    merged = team_draft(exp, _answer(["i1", "i2", "i3"]), _answer(["i3", "i4", "i5"]), 4)
    log = EventLog(tmp_path / "raw")
    request = RecommendationRequest(tenant="shop", user_id="u1")
    log.append([_event(request, _answer(["i9"])), _event(request, merged),
                _event(request, _answer(["i8"]))])
    log.close()
    tenant, found = logged_answer(tmp_path / "raw", merged.recommendation_id)
    assert tenant == "shop" and found.arm == INTERLEAVED
    shown = explain(tenant, found, None)
    assert [(i["item_id"], i["arm"], i["reason"]["propensity"]) for i in shown["items"]] == [
        (s.item_id, s.arm, s.propensity) for s in merged.items]
    assert all(i["reason"]["why"].startswith("team draft: placed by arm") for i in shown["items"])
    assert logged_answer(tmp_path / "raw", "never-served") is None


def test_a_user_unit_keeps_a_logged_in_users_arm_across_sessions():
    """`unit: user` hashes the user id before the session id: a logged-in user who starts a
    new session each visit keeps one arm; `session` (the default) hashed each session anew,
    so the same users saw both arms across sessions."""
    by_user = _exp(unit="user")
    by_session = _exp()
    assert by_session.unit == "session"
    users = [f"u{n}" for n in range(300)]
    both = 0
    for user in users:
        arms = {by_user.assign(user, f"{user}-visit-{v}").name for v in range(6)}
        assert arms == {by_user.assign(user, None).name}  # the user's arm, whatever the session
        both += len({by_session.assign(user, f"{user}-visit-{v}").name for v in range(6)}) > 1
    assert both > 0.9 * len(users)  # six sessions at 50/50: 1 - 2 / 64 of users see both
    # a fresh object (another worker, a restart) assigns the same
    again = Experiment.from_dict(by_user.as_dict())
    assert [again.assign(u, "s").name for u in users] == [by_user.assign(u, "s").name
                                                          for u in users]
    # the trade-off: an anonymous session is hashed by its session id until it logs in
    moved = sum(by_user.assign(None, f"s{n}") != by_user.assign(f"login-{n}", f"s{n}")
                for n in range(300))
    assert 100 < moved < 200  # about half of the sessions change arm at login
    assert all(by_session.assign(None, f"s{n}") == by_session.assign(f"login-{n}", f"s{n}")
               for n in range(300))
    # neither id: drawn by share, as under `session`
    assert {by_user.assign(None, None).name for _ in range(200)} == {"control", "treatment"}


def test_an_unknown_unit_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ExperimentError) as raised:
        validate(_exp(unit="visitor"), [])
    assert raised.value.field == "unit"
    assert "'visitor' is not a unit: one of session, user" in raised.value.reason
    with pytest.raises(ExperimentError, match="^unit: "):
        Experiments(tmp_path).create(_exp(unit="users"))
    assert not (tmp_path / "experiments.json").exists()


def test_an_experiments_file_without_units_loads_them_as_session(tmp_path):
    """A file written before `unit` existed: each experiment keeps the arm it assigned; one
    created with `user` is stored with it, and a session one is stored as before."""
    old = {"id": "old", "tenant": "shop", "template": "*", "kind": "ab",
           "metric": "click_through_rate", "start_ms": 0, "end_ms": None, "stopped_ms": None,
           "arms": [{"name": "control", "model": "champion", "share": 0.5},
                    {"name": "treatment", "model": "challenger", "share": 0.5}]}
    (tmp_path / "experiments.json").write_text(json.dumps({"old": json.dumps(old)}))
    store = Experiments(tmp_path)
    found = store.get("old")
    assert found.unit == "session" and found.as_dict()["unit"] == "session"
    # the rule it assigned by: the session first
    assert all(found.assign(f"u{n}", f"s{n}") == found.assign(None, f"s{n}") for n in range(50))
    store.create(_exp(id="by-user", tenant="other", unit="user"))
    store.create(_exp(id="by-session", tenant="third"))
    stored = {k: json.loads(v) for k, v in
              json.loads((tmp_path / "experiments.json").read_text()).items()}
    assert stored["old"] == old  # untouched by the writes
    assert stored["by-user"]["unit"] == "user" and "unit" not in stored["by-session"]
    reread = Experiments(tmp_path).all(fresh=True)
    assert {k: e.unit for k, e in reread.items()} == {"old": "session", "by-user": "user",
                                                      "by-session": "session"}


def test_an_unreadable_experiment_is_left_out_alone_and_named_once(tmp_path, caplog):
    """A hand edit, or a unit this version does not know (written by a newer replica): that
    experiment is not applied, said once; every other experiment, of its tenant and of the
    others, goes on; the CLI and admin routes name what is wrong when asked for it."""
    store = Experiments(tmp_path)
    store.create(_exp(start_ms=0, unit="user", template="personalized"))
    store.create(_exp(id="e2", tenant="other", start_ms=0))
    store.create(_exp(id="e3", template="popular", start_ms=0))  # e1's tenant, another template
    assert store.running("shop", "personalized", now_ms=1).unit == "user"
    raw = json.loads((tmp_path / "experiments.json").read_text())
    raw["e1"] = raw["e1"].replace('"unit": "user"', '"unit": "account"')  # a hand edit
    (tmp_path / "experiments.json").write_text(json.dumps(raw))
    serving = Experiments(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sluice.experiments"):
        for _ in range(3):
            assert serving.running("shop", "personalized", now_ms=1) is None  # not an error
            assert serving.running("other", "personalized", now_ms=1).id == "e2"
            assert serving.running("shop", "popular", now_ms=1).id == "e3"
            serving.all(fresh=True)
    said = [r.getMessage() for r in caplog.records]
    problem = (f"{tmp_path / 'experiments.json'}: experiment 'e1': unit: 'account' is not a "
               "unit: one of session, user")
    assert len(said) == 1 and said[0].startswith("experiment not applied, answers go on "
                                                 f"outside it: {problem}"), said
    assert set(serving.all(fresh=True)) == {"e2", "e3"}
    assert serving.unreadable["e1"].startswith(problem)
    with pytest.raises(StoreError) as raised:
        serving.get("e1")  # `sluice experiments show e1`, GET /admin/experiments/e1
    assert str(raised.value).startswith(problem)
    with pytest.raises(ExperimentError, match="^id: experiment 'e1' exists already and cannot"):
        serving.create(_exp(start_ms=0, template="personalized"))  # not written over
    assert json.loads((tmp_path / "experiments.json").read_text())["e1"] == raw["e1"]
    serving.create(_exp(id="e4", tenant="third", start_ms=0))  # another tenant's goes on
    assert Experiments(tmp_path).running("third", "personalized", now_ms=1).id == "e4"


def test_the_answer_and_its_log_carry_the_experiments_unit():
    """The log says which unit assigned the answer, so the marts count the same units (an
    A/B answer gets it from sluice.serve.arms.arm_answer, checked end to end in
    tests/e2e/test_experiments_units.py)."""
    request = RecommendationRequest(user_id="u1", session_id="s1")
    for unit in ("user", "session"):
        exp = _exp(unit=unit, kind="interleaving", arms=(Arm("a", "1", 0.5), Arm("b", "2", 0.5)))
        merged = team_draft(exp, _answer(["i1", "i2"]), _answer(["i3", "i4"]), 4)
        assert merged.unit == unit
        assert _event(request, merged)["fields"]["unit"] == unit
    assert "unit" not in _event(request, _answer(["i1"]))["fields"]  # outside experiments
