"""Batch recommendations and segments: a real MLflow champion, a real raw log, the real
`batch` flow, and a real uvicorn answering the same users for comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sluice.errors import InputError, NotFoundError
from sluice.intake.eventlog import EventLog
from sluice.intake.follower import LogFollower
from sluice.serve.batch import BatchJob, run_recommendations
from sluice.serve.segments import run_segments
from sluice.settings import get_settings
from sluice.vocabulary import FALLBACK, MODEL_FALLBACK, MODEL_PERSONALIZED
from tests.utils.batch import assert_same_as_live, read_output, slots_by_user
from tests.utils.factories import environ, environment, interaction
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server

GOOD = ["u0", "u1", "u2", "u7", "newbie", "ghost"]
INPUT = [*({"userId": u} for u in GOOD), "not json {", [1, 2], {"userId": ""},
         {"user": "u3"}, {"userId": 12}, {"userId": "x" * 300}]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    """A champion without trained heads (every user is scored by the block product), new
    events in the raw log for a trained user and a newcomer, and an input file."""
    home = tmp_path_factory.mktemp("batch")
    env = environment(home)
    with environ(env):
        bundle = synthetic_bundle(items=300, users=60, heads=0, seed=3)
        version = register_champion(bundle, env["MLFLOW_TRACKING_URI"], home / "artifacts")
        log = EventLog(home / "raw")
        log.append([{**interaction(user, item), "tenant": "default"}
                    for user, item in (("u1", "i5"), ("u1", "i9"), ("newbie", "i7"),
                                       ("newbie", "i8"), ("newbie", "i11"))])
        log.close()
        (home / "landing").mkdir()
        lines = [line if isinstance(line, str) else json.dumps(line) for line in INPUT]
        (home / "landing" / "users.jsonl").write_text("\n".join(lines[:3] + [""] + lines[3:])
                                                      + "\n")
        yield {"home": home, "env": env, "version": version, "bundle": bundle}


@pytest.fixture(scope="module")
def flow_run(tenant, prefect_harness):
    from flows.batch import batch

    return batch(input="users.jsonl", num_results=12)  # a name in the landing folder


def test_the_flow_answers_good_lines_and_writes_bad_ones_as_error_lines(tenant, flow_run):
    out = tenant["home"] / "exports" / flow_run.job
    assert flow_run.output == str(out)
    lines, slots, manifest = read_output(out)
    assert [line["input"] for line in lines] == INPUT[:5] + INPUT[5:]  # blank line skipped
    errors = {n: line["error"] for n, line in enumerate(lines) if line["error"]}
    assert sorted(errors) == [6, 7, 8, 9, 11]
    assert "not JSON" in errors[6] and "JSON object" in errors[7]
    assert all("userId" in errors[n] for n in (7, 8, 9, 11))
    assert all(lines[n]["output"] is None for n in errors)
    assert manifest["counts"]["errors"] == 5 and manifest["counts"]["lines"] == 12
    assert manifest["counts"]["answered"] == 7  # 12 (a number id) is an unknown user
    by_user = slots_by_user(slots)
    for line in lines:
        if line["error"] is None:
            user = str(line["input"]["userId"])
            assert line["output"]["recommendedItems"] == [r["item_id"] for r in by_user[user]]
            assert line["output"]["scores"] == [r["score"] for r in by_user[user]]
            assert len(by_user[user]) == 12
    assert len(slots) == manifest["counts"]["slots"] == 7 * 12
    assert {r["recommendation_source"] for r in by_user["ghost"]} == {MODEL_FALLBACK}
    assert {r["recommendation_source"] for r in by_user["newbie"]} == {MODEL_PERSONALIZED}
    assert manifest["counts"]["without_personalized"] == 2  # ghost and "12"
    assert manifest["lineage"]["model_version"] == tenant["version"]
    assert manifest["lineage"]["data_high_water_ms"] == 0  # the bundle's cutoff
    seen = set(tenant["bundle"].item_ids[tenant["bundle"].user_items[1].indices]) | {"i5", "i9"}
    assert not seen & {r["item_id"] for r in by_user["u1"]}


def test_batch_answers_are_the_live_answers_slot_by_slot(tenant, flow_run):
    _, slots, _ = read_output(tenant["home"] / "exports" / flow_run.job)
    with running_server(tenant["env"]) as base:
        compared = assert_same_as_live(base, slots, [*GOOD, "12"], 12)
    assert compared == 7 * 12


def test_every_user_with_a_filter_and_without_random_fill(tenant, tmp_path):
    red = [{"field": "color", "op": "eq", "value": "red"}]
    job = BatchJob(filters=red, num_results=20, fill_with_random=False, block_size=16)
    reports: list[dict] = []
    manifest = run_recommendations(get_settings(), job, None, tmp_path, reports.append)
    assert [r["done"] for r in reports] == [16, 32, 48, 61]  # one report per block
    assert all(r["total"] == 61 and r["rate"] > 0 for r in reports)
    assert reports[0]["left_s"] > 0 and reports[-1]["left_s"] == 0
    lines, slots, _ = read_output(tmp_path)
    assert [line["input"]["userId"] for line in lines][-1] == "newbie"
    assert len(lines) == 61 and manifest["counts"]["errors"] == 0
    assert all(int(r["item_id"][1:]) % 2 == 1 for r in slots)  # red items are the odd ones
    assert FALLBACK not in {r["recommendation_source"] for r in slots}
    with running_server(tenant["env"]) as base:
        assert_same_as_live(base, slots, ["u0", "u1", "u30", "newbie"], 20, filters=red,
                            fill_with_random=False)


def test_answers_can_be_logged_for_attribution(tenant, tmp_path):
    follower = LogFollower(tenant["home"] / "raw")
    follower.poll()  # what is there already
    run_recommendations(get_settings(), BatchJob(log_answers=True, num_results=5),
                        tenant["home"] / "landing" / "users.jsonl", tmp_path)
    lines, _, manifest = read_output(tmp_path)
    logged = [e for e in follower.poll() if e.get("event") == "recommendation"]
    ids = {line["output"]["recommendationId"] for line in lines if line["output"]}
    assert {e["id"] for e in logged} == ids and len(ids) == manifest["counts"]["answered"]
    assert {e["fields"]["context.batch_job"] for e in logged} == {manifest["job"]}
    assert {e["fields"]["context.channel"] for e in logged} == {"batch"}


def test_segments_rank_users_by_score_without_those_who_interacted(tenant, tmp_path):
    bundle = tenant["bundle"]
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "i4"}\n{"itemId": "nope"}\n{"itemId": "i10"}\n')
    manifest = run_segments(get_settings(), "default", source, tmp_path / "out", 7)
    lines, slots, _ = read_output(tmp_path / "out")
    assert manifest["counts"] == {**manifest["counts"], "lines": 3, "errors": 1, "slots": 14}
    assert "not in model" in lines[1]["error"]
    for line in (lines[0], lines[2]):
        item = bundle.item_index[line["input"]["itemId"]]
        scores = bundle.user_factors @ bundle.item_factors[item]
        scores[bundle.user_items[:, item].nonzero()[0]] = -np.inf
        best = bundle.user_ids[np.argsort(-scores, kind="stable")[:7]].tolist()
        assert line["output"]["usersList"] == best
    assert {r["recommendation_source"] for r in slots} == {MODEL_PERSONALIZED}


def test_similar_items_read_item_ids(tenant, tmp_path):
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "i3"}\n{"userId": "u1"}\n')
    run_recommendations(get_settings(), BatchJob(template="similar_items", num_results=4),
                        source, tmp_path / "out")
    lines, slots, _ = read_output(tmp_path / "out")
    assert len(lines[0]["output"]["recommendedItems"]) == 4 and "i3" not in lines[0][
        "output"]["recommendedItems"]
    assert "itemId" in lines[1]["error"]
    assert {r["input_item_id"] for r in slots} == {"i3"}


def test_wrong_job_parameters_fail_the_job_naming_the_field(tenant, tmp_path):
    with pytest.raises(InputError, match="template"):
        run_recommendations(get_settings(), BatchJob(template="nope"), None, tmp_path / "a")
    with pytest.raises(NotFoundError, match="model_version"):
        run_recommendations(get_settings(), BatchJob(model_version="99"), None, tmp_path / "b")
    with pytest.raises(InputError, match="num_results"):
        run_recommendations(get_settings(), BatchJob(num_results=0), None, tmp_path / "c")
    with pytest.raises(InputError, match="num_results"):
        run_segments(get_settings(), "default", None, tmp_path / "d", 0)
    # what `sluice batch` refuses before Prefect starts, the flow's scheduled runs refuse too
    with pytest.raises(InputError) as failure:
        run_recommendations(get_settings(), BatchJob(template="similar_items"), None,
                            tmp_path / "e")
    assert str(failure.value) == "input: the similar_items template needs an input file of itemId"


def test_an_input_file_that_is_not_there_fails_the_job_naming_input(tenant, tmp_path):
    missing = tenant["home"] / "landing" / "missing.jsonl"
    with pytest.raises(InputError) as failure:
        run_recommendations(get_settings(), BatchJob(), missing, tmp_path / "a")
    assert failure.value.field == "input" and f"{missing} not found" in failure.value.reason
    with pytest.raises(InputError, match="input"):
        run_segments(get_settings(), "default", missing, tmp_path / "b", 10)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_input_and_output_through_fsspec_urls(tenant):
    import fsspec

    with fsspec.open("memory://batch-in/users.jsonl", "w") as handle:
        handle.write('{"userId": "u4"}\n{"userId": 4.5}\n')
    manifest = run_recommendations(get_settings(), BatchJob(num_results=3),
                                   "memory://batch-in/users.jsonl", "memory://batch-out/job")
    fs = fsspec.filesystem("memory")
    assert {p.rsplit("/", 1)[-1] for p in fs.ls("/batch-out/job", detail=False)} == {
        "output.jsonl", "slots.parquet", "answers.parquet", "manifest.json"}
    lines = [json.loads(line) for line in fs.cat("/batch-out/job/output.jsonl").splitlines()]
    assert len(lines[0]["output"]["recommendedItems"]) == 3 and lines[1]["error"]
    assert manifest["counts"]["errors"] == 1


def test_a_named_filter_with_values(tenant, tmp_path):
    from sluice.filters import NamedFilters

    settings = get_settings()
    NamedFilters(settings.app.filters, settings.home / "filters.json").create(
        "no-colour", "EXCLUDE ItemID WHERE Items.color IN ($COLOURS)")
    job = BatchJob(filter_name="no-colour", filter_values={"COLOURS": '"red"'}, num_results=6)
    run_recommendations(settings, job, tenant["home"] / "landing" / "users.jsonl", tmp_path)
    _, slots, manifest = read_output(tmp_path)
    assert len(slots) == 6 * manifest["counts"]["answered"]
    assert all(int(r["item_id"][1:]) % 2 == 0 for r in slots)  # blue: the even items
    with pytest.raises(NotFoundError, match="no filter named"):
        run_recommendations(settings, BatchJob(filter_name="nope"), None, tmp_path / "x")


def test_the_command_runs_the_flow_and_says_what_it_wrote(tenant, prefect_harness, capsys):
    from cli.main import main

    assert main(["batch", "--input", "users.jsonl", "--num-results", "4"]) == 0
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert "7 answered, 5 error lines, 28 slots" in said
    assert main(["batch", "--segments", "--num-results", "3", "--output",
                 str(tenant["home"] / "segments")]) == 0
    assert "300 answered, 0 error lines, 900 slots" in capsys.readouterr().out
    assert main(["batch", "--filter-value", "oops"]) == 1
    assert "--filter-value: 'oops': write NAME=VALUE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def unchampioned(tenant):
    """Tenant "shop": events in the raw log (p1 the most popular, then p2, p3), no champion,
    as when training skipped it for too little data."""
    log = EventLog(tenant["home"] / "raw")
    log.append([{**interaction(user, item), "tenant": "shop"}
                for user, item in (("s1", "p1"), ("s2", "p1"), ("s3", "p1"), ("s2", "p2"),
                                   ("s3", "p2"), ("s3", "p3"))])
    log.close()
    source = tenant["home"] / "landing" / "shoppers.jsonl"
    source.write_text('{"userId": "s1"}\n{"userId": "stranger"}\n')
    return source


def test_a_tenant_without_a_champion_is_answered_from_its_popular_tier_as_the_api_does(
        tenant, unchampioned, tmp_path):
    from tests.utils.auth import headers

    manifest = run_recommendations(get_settings(), BatchJob(tenant="shop", num_results=3),
                                   unchampioned, tmp_path)
    lines, slots, _ = read_output(tmp_path)
    assert manifest["lineage"]["model_version"] is None
    assert "no champion model" in manifest["lineage"]["note"]
    assert manifest["counts"]["answered"] == 2 and manifest["counts"]["errors"] == 0
    assert lines[1]["output"]["recommendedItems"] == ["p1", "p2", "p3"]
    assert {r["recommendation_source"] for r in slots} <= {MODEL_FALLBACK, FALLBACK}
    assert {r["recommendation_source"] for r in slots_by_user(slots)["stranger"]} == {
        MODEL_FALLBACK}
    with running_server(tenant["env"]) as base:
        assert assert_same_as_live(base, slots, ["s1", "stranger"], 3, tenant="shop",
                                   headers=headers("read", "shop")) == 2 + 3  # s1 saw p1


def test_segments_of_a_tenant_without_a_champion_say_so_naming_it(tenant, unchampioned,
                                                                   tmp_path):
    with pytest.raises(NotFoundError) as failure:
        run_segments(get_settings(), "shop", None, tmp_path, 5)
    assert failure.value.field == "tenant" and "'shop' has no champion model" in str(
        failure.value)
    assert "sluice train" in failure.value.reason and "\n" not in failure.value.reason


def test_a_tenant_with_no_model_and_no_events_names_the_known_ones(tenant, unchampioned,
                                                                   tmp_path):
    with pytest.raises(NotFoundError) as failure:
        run_recommendations(get_settings(), BatchJob(tenant="nope"), None, tmp_path)
    assert failure.value.field == "tenant"
    assert failure.value.reason == ("'nope' has no model and no interaction in the raw log: known "
                                    "tenants are default, shop")


def test_a_batch_over_several_tenants_answers_each_and_then_names_the_failed_one(
        tenant, unchampioned, prefect_harness):
    from flows.batch import batch_tenants
    from flows.tenants import TenantsFailed

    exports = tenant["home"] / "exports"
    before = set(exports.iterdir()) if exports.exists() else set()
    with pytest.raises(TenantsFailed) as failure:
        batch_tenants(tenants=["nope", "shop", "default"], input="shoppers.jsonl",
                      num_results=3)
    assert str(failure.value).startswith("tenant 'nope': NotFoundError: tenant: 'nope' has no "
                                         "model and no interaction")
    assert str(failure.value).endswith("(answered: shop, default)")
    [job] = set(exports.iterdir()) - before
    assert sorted(p.name for p in job.iterdir()) == ["default", "shop"]
    for name in ("default", "shop"):
        _, _, manifest = read_output(job / name)
        assert manifest["tenant"] == name and manifest["counts"]["answered"] == 2


def test_a_batch_over_every_tenant_finds_them_when_it_runs(tenant, unchampioned,
                                                           prefect_harness):
    """As the nightly deployment runs it (no tenant list): `default` (a champion and events),
    `shop` (events only), `quiet` (a champion only) and `late` (its first event written just
    now) are found and answered, each into its folder."""
    from flows.batch import batch_tenants

    log = EventLog(tenant["home"] / "raw")  # a tenant that appeared since: found, no config
    log.append([{**interaction("late-user", "i5"), "tenant": "late"}])
    log.close()
    register_champion(tenant["bundle"], tenant["env"]["MLFLOW_TRACKING_URI"],
                      tenant["home"] / "artifacts", name="sluice-quiet")
    outcomes = batch_tenants(input="shoppers.jsonl", num_results=3)
    names = ["default", "late", "quiet", "shop"]
    assert [o.manifest["tenant"] for o in outcomes] == names
    assert outcomes[2].model_version is not None  # quiet: answered by its champion
    [root] = {str(Path(o.output).parent) for o in outcomes}
    assert sorted(p.name for p in Path(root).iterdir()) == names
    assert all(o.manifest["counts"]["answered"] == 2 for o in outcomes)
