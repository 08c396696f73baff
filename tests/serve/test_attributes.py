"""The attribute index (similar_attributes, and similar_items for cold items): built from item
fields, shipped in the bundle, and answering for items that arrived after training."""

from __future__ import annotations

import numpy as np
import pytest

from sluice.bundle import ModelBundle
from sluice.filters import parse_conditions
from sluice.learn.attributes import build
from sluice.learn.next_item import evaluate_next_item
from sluice.serve.answers import RecommendationError, RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.vocabulary import FALLBACK, MODEL_NON_PERSONALIZED, SIMILAR_ATTRIBUTES
from tests.serve.test_recommender import check
from tests.utils.auth import READ, boto_client
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server
from tests.utils.waits import wait_until

WEIGHTS = {"click": 1.0}
FIELDS = {"category": 1.0, "brand": 2.0, "price": 0.5, "tags": 1.0, "title": 1.0}


def fields_of(i: int) -> dict:
    return {"category": f"c{i % 5}", "brand": f"b{i % 7}", "price": float(i % 50),
            "tags": [f"t{i % 3}", f"t{i % 4 + 3}"], "title": f"a {['red', 'blue'][i % 2]} shoe",
            "in_stock": i % 3 != 0}


def with_attributes(bundle: ModelBundle, cold: int = 5) -> ModelBundle:
    """A bundle whose catalog has fields, with the attribute index training would add."""
    bundle.catalog = {f"i{i}": fields_of(i) for i in range(len(bundle.item_ids))}
    index = build(bundle.catalog, FIELDS, ["title"], neighbours=20, numeric_bins=5)
    assert index is not None
    bundle.attributes = index.arrays()
    bundle.meta["attributes"] = {**index.space.meta(), "cold_item_interactions": cold}
    return bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ModelBundle:
    made = with_attributes(synthetic_bundle(items=200, users=50, heads=0))
    return ModelBundle.load(made.save(tmp_path_factory.mktemp("bundle")))  # the .npz trip


def shared(a: dict, b: dict) -> int:
    return sum(a.get(f) == b.get(f) for f in ("category", "brand"))


def test_trained_neighbours_share_the_heaviest_fields(bundle):
    rec = Recommender("default", LoadedModel(bundle, "1"), RealtimeState(), WEIGHTS, seed=1)
    answer = rec.recommend(RecommendationRequest(item_id="i0", template=SIMILAR_ATTRIBUTES,
                                                 num_results=10, fill_with_random=False))
    sources = check(answer)
    assert sources == [MODEL_NON_PERSONALIZED] * 10
    scores = [s.score for s in answer.items]
    assert scores == sorted(scores, reverse=True) and "i0" not in {s.item_id for s in answer.items}
    # brand weighs twice: the best neighbours carry i0's brand (b0), and all share something
    assert all(bundle.catalog[s.item_id]["brand"] == "b0" for s in answer.items[:5])
    assert all(shared(bundle.catalog[s.item_id], fields_of(0)) >= 1 for s in answer.items)


def test_filters_exclusions_and_random_only_when_asked(bundle):
    rec = Recommender("default", LoadedModel(bundle, "1"), RealtimeState(), WEIGHTS, seed=1)
    rules = parse_conditions([{"field": "in_stock", "op": "is", "value": True}])
    answer = rec.recommend(RecommendationRequest(
        item_id="i7", template=SIMILAR_ATTRIBUTES, num_results=150, rules=rules,
        exclude_ids=["i14"]))
    sources = check(answer)
    ids = [s.item_id for s in answer.items]
    assert "i14" not in ids and all(bundle.catalog[i]["in_stock"] for i in ids)
    assert MODEL_NON_PERSONALIZED in sources and FALLBACK in sources  # filled with random
    assert sources.index(FALLBACK) == sources.count(MODEL_NON_PERSONALIZED)
    without = rec.recommend(RecommendationRequest(
        item_id="i7", template=SIMILAR_ATTRIBUTES, num_results=150, rules=rules,
        fill_with_random=False))
    assert FALLBACK not in check(without) and 0 < len(without.items) < 150
    with pytest.raises(RecommendationError, match="item_id"):
        rec.recommend(RecommendationRequest(template=SIMILAR_ATTRIBUTES))


def test_a_new_item_gets_neighbours_from_its_live_fields_and_cold_similar_items(bundle):
    state = RealtimeState()
    rec = Recommender("default", LoadedModel(bundle, "1"), state, WEIGHTS, seed=1)
    ask = RecommendationRequest(item_id="new-1", template=SIMILAR_ATTRIBUTES, num_results=5,
                                fill_with_random=False)
    assert rec.recommend(ask).items == []  # nothing known of it yet
    state.apply([{"event": "item", "id": "e1", "item": "new-1", "timestamp": 1,
                  "fields": {"category": "c3", "brand": "b4", "title": "a red boot"}}])
    answer = rec.recommend(ask)
    assert [s.recommendation_source for s in answer.items] == [MODEL_NON_PERSONALIZED] * 5
    assert all(bundle.catalog[s.item_id]["brand"] == "b4" for s in answer.items)
    # similar_items of the same new item: attribute neighbours, never an empty page
    similar = rec.recommend(RecommendationRequest(item_id="new-1", template="similar_items",
                                                  num_results=5, fill_with_random=False))
    assert [s.item_id for s in similar.items] == [s.item_id for s in answer.items]


def test_warm_items_keep_collaborative_neighbours(bundle):
    warm_bundle = with_attributes(synthetic_bundle(items=200, users=50, heads=0), cold=0)
    rec = Recommender("default", LoadedModel(warm_bundle, "1"), RealtimeState(), WEIGHTS)
    answer = rec.recommend(RecommendationRequest(item_id="i3", template="similar_items",
                                                 num_results=5, fill_with_random=False))
    assert MODEL_NON_PERSONALIZED not in check(answer)


def test_the_index_is_mapped_from_the_bundle_and_scores_as_a_transposed_copy(bundle,
                                                                            tmp_path):
    """The terms' posting lists ship in the bundle and every worker maps them (and the rest
    of the index) read-only, instead of transposing all the vectors at each load; a bundle
    written before them transposes as it did and answers the same; posting lists that do not
    match the vectors are refused at load."""
    from sluice import npz
    from sluice.bundle import BundleError
    from sluice.serve.attributes import AttributeNeighbours

    mapped = AttributeNeighbours(bundle)
    for name in ("item_ids", "vec_indices", "vec_data", "nn_indices", "nn_data",
                 "term_indptr", "term_indices", "term_data"):
        assert npz.is_mapped(bundle.attributes[f"attr_{name}"]), name
    assert npz.is_mapped(mapped.by_term.indices) and npz.is_mapped(mapped.by_term.data)
    assert (mapped.by_term != mapped.index.vectors.T.tocsr()).nnz == 0
    older = ModelBundle.load(bundle.save(tmp_path / "b"))
    older.attributes = {k: np.array(v) for k, v in older.attributes.items()
                        if not k.startswith("attr_term_")}
    transposed = AttributeNeighbours(older)
    assert not npz.is_mapped(transposed.by_term.indices)
    new_item = {"category": "c3", "brand": "b4", "title": "a red boot", "tags": ["t1"]}
    for fields, item in ((new_item, "new-1"), (None, "i7")):
        assert mapped.neighbours(item, fields, 10, filtered=True) == transposed.neighbours(
            item, fields, 10, filtered=True)
    broken = dict(older.attributes, attr_term_indptr=np.array(bundle.attributes[
        "attr_term_indptr"]), attr_term_indices=np.array(bundle.attributes["attr_term_indices"]),
        attr_term_data=np.array(bundle.attributes["attr_term_data"][:-1]))
    broken["attr_term_indptr"][-1] -= 1  # one posting fewer than the vectors hold
    broken["attr_term_indices"] = broken["attr_term_indices"][:-1]
    older.attributes = broken
    with pytest.raises(BundleError, match="posting lists do not match its vectors"):
        AttributeNeighbours(older)


def test_the_cold_check_counts_an_items_trained_interactions_once():
    """Serving reads the whole log, so an item's interactions that the model trained on are in
    the log too: the cold check takes those from the bundle (its trained users) and counts
    only the log's other ones (they used to be added again, so that an item trained on by a
    few users passed for warm)."""
    cold_bundle = with_attributes(synthetic_bundle(items=200, users=50, heads=0), cold=5)
    cold_bundle.meta["cutoff_ms"] = 1_000_000  # no log positions: trained means by then
    model = LoadedModel(cold_bundle, "1")
    item = next(f"i{j}" for j in range(200)
                if 1 <= model.attributes.trained_interactions(f"i{j}") <= 3)
    trained = model.attributes.trained_interactions(item)
    state = RealtimeState()
    clicks = [{"event": "interaction", "id": f"old-{n}", "user": f"u{n}", "item": item,
               "type": "click", "timestamp": 1_000 + n} for n in range(5 - trained)]
    state.apply(clicks)  # what the model trained on, read again from the log
    rec = Recommender("default", model, state, WEIGHTS, seed=1)
    ask = RecommendationRequest(item_id=item, template="similar_items", num_results=5,
                                fill_with_random=False)
    assert check(rec.recommend(ask))[0] == MODEL_NON_PERSONALIZED  # still cold: attributes
    assert int(rec.trained_in_log[model.bundle.item_index.get(item)]) == 5 - trained
    state.apply([{**click, "id": f"new-{click['id']}", "timestamp": 2_000_000}
                 for click in clicks])  # as many again, after training
    assert MODEL_NON_PERSONALIZED not in check(rec.recommend(ask))  # warm: collaborative


def test_old_bundles_without_the_index_still_load_and_answer(tmp_path):
    old = ModelBundle.load(synthetic_bundle(heads=0).save(tmp_path / "b"))
    assert old.attributes is None
    rec = Recommender("default", LoadedModel(old, "1"), RealtimeState(), WEIGHTS, seed=1)
    answer = rec.recommend(RecommendationRequest(item_id="i1", template=SIMILAR_ATTRIBUTES,
                                                 num_results=5))
    assert check(answer) == [FALLBACK] * 5


def test_next_item_check_scores_attributes_against_collaborative_and_popularity():
    import pandas as pd

    from sluice.learn.matrix import build as build_matrix

    # users move within one brand: attributes predict the next item, popularity cannot
    rng = np.random.default_rng(3)
    rows, t = [], 0
    for u in range(120):
        brand = u % 7
        for i in rng.choice(np.arange(brand, 200, 7), size=4, replace=False):
            rows.append((f"u{u}", f"i{i}", "click", 1.0, pd.Timestamp(t, unit="s")))
            t += 1
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "interaction_type", "weight",
                                        "event_at"])
    last = frame.groupby("user_id").tail(1).index
    train, test = frame.drop(last), frame.loc[last]
    index = build({f"i{i}": fields_of(i) for i in range(200)}, {"brand": 1.0}, neighbours=40)
    result = evaluate_next_item(index, build_matrix(train), train, test, k=10)
    assert result["users"] == 120
    assert result["attributes"] > result["popularity"] + 2 * result["attributes_se"]


def test_put_items_then_similar_attributes_within_a_second_from_a_real_server(tmp_path):
    env = environment(tmp_path, serving={"log_poll_seconds": 0.05})
    register_champion(with_attributes(synthetic_bundle(items=200, heads=0)),
                      env["MLFLOW_TRACKING_URI"], tmp_path / "artifacts")
    import httpx

    with running_server(env) as base:
        events = boto_client(base, "personalize-events")
        runtime = boto_client(base, "personalize-runtime")
        arn = "arn:aws:personalize:us-east-1:000000000000:recommender/default/similar_attributes"
        events.put_items(datasetArn="arn:aws:personalize:us-east-1:0:dataset/default/ITEMS",
                         items=[{"itemId": "brand-new", "properties": '{"category": "c2", '
                                 '"brand": "b5", "tags": ["t1"]}'}])
        got = wait_until(lambda: runtime.get_recommendations(
            recommenderArn=arn, itemId="brand-new", numResults=5)["itemList"],
            "attribute neighbours of the new item", interval=0.02,
            until=lambda got: got and got[0]["reason"] == [MODEL_NON_PERSONALIZED])
        catalog = {f"i{i}": fields_of(i) for i in range(200)}
        assert len(got) == 5 and all(catalog[g["itemId"]]["brand"] == "b5" for g in got)
        native = httpx.post(f"{base}/v1/recommendations", headers=READ, json={
            "item_id": "brand-new", "template": SIMILAR_ATTRIBUTES, "num_results": 5}).json()
        assert [i["item_id"] for i in native["items"]] == [g["itemId"] for g in got]
        assert native["model_non_personalized_count"] == 5 == native["total"]


def test_an_arn_selects_similar_attributes_by_its_last_part_and_config_builds_on_it():
    from sluice.serve.personalize import campaign
    from sluice.settings import AppConfig

    arn = "arn:aws:personalize:r:0:campaign/"
    assert campaign({"campaignArn": arn + "shop/similar_attributes"}).template == (
        SIMILAR_ATTRIBUTES)
    found = campaign({"campaignArn": arn + "similar_attributes"})  # a dataset group's name
    assert (found.tenant, found.template) == ("similar_attributes", None)
    config = AppConfig.model_validate({"templates": {"alike_in_stock": {
        "base": SIMILAR_ATTRIBUTES, "filters": [{"field": "in_stock", "op": "is",
                                                 "value": True}]}}})
    assert config.templates["alike_in_stock"].base == SIMILAR_ATTRIBUTES


def test_the_train_flow_ships_the_index_and_logs_its_check(tmp_path, monkeypatch):
    import json

    import duckdb

    from sluice.learn import registry
    from sluice.learn.training import train_tenant
    from tests.learn.test_training import settings_for
    from tests.utils.marts import taste_history, write_marts

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = settings_for(tmp_path, store, monkeypatch,
                            attributes={"fields": {"group": 1.0, "category": 0.5}})
    write_marts(settings.warehouse_path, taste_history(), "attr")
    con = duckdb.connect(str(settings.warehouse_path))  # items carry their taste group
    for (item,) in con.execute("select item_id from marts.items").fetchall():
        fields = {"group": f"g{int(item[1:]) // 20}", "category": f"c{int(item[1:]) % 3}"}
        con.execute("update marts.items set fields = ? where item_id = ?",
                    [json.dumps(fields), item])
    con.close()
    result = train_tenant(settings, "attr")
    run = registry.client(store).get_run(result.run_id).data.metrics
    assert run["attributes.items"] == 60 and run["attributes.build_seconds"] > 0
    hit = {s: run[f"attributes.next_item_hit_at_10.{s}"]
           for s in ("attributes", "similar_items", "popularity")}
    assert hit["attributes"] > hit["popularity"] + 2 * run[
        "attributes.next_item_hit_at_10.attributes_se"]
    champion = registry.download_alias(store, result.model_name, dst=tmp_path / "dl")
    assert champion is not None
    bundle = ModelBundle.load(champion.local_path)
    model = LoadedModel(bundle, result.version)
    assert model.attributes is not None
    neighbours = model.attributes.neighbours("i3", None, 10, False)
    assert {int(i[1:]) // 20 for i, _ in neighbours[:10]} == {0}  # the same taste group


def test_an_item_whose_fields_change_is_rescored_and_a_repeat_changes_nothing(bundle):
    state = RealtimeState()
    rec = Recommender("default", LoadedModel(bundle, "1"), state, WEIGHTS, seed=1)
    ask = RecommendationRequest(item_id="i0", template=SIMILAR_ATTRIBUTES, num_results=5,
                                fill_with_random=False)
    trained = [s.item_id for s in rec.recommend(ask).items]
    state.apply([{"event": "item", "id": "same", "item": "i0", "timestamp": 1,
                  "fields": fields_of(0)}])
    assert [s.item_id for s in rec.recommend(ask).items] == trained
    state.apply([{"event": "item", "id": "moved", "item": "i0", "timestamp": 2,
                  "fields": {"brand": "b4"}}])
    moved = rec.recommend(ask).items
    assert all(bundle.catalog[s.item_id]["brand"] == "b4" for s in moved)


def test_scoring_a_new_item_is_handed_to_a_thread_when_asked(bundle):
    from sluice.serve.answers import NeedsScan

    state = RealtimeState()
    rec = Recommender("default", LoadedModel(bundle, "1"), state, WEIGHTS, seed=1)
    state.apply([{"event": "item", "id": "n", "item": "n1", "timestamp": 1,
                  "fields": {"brand": "b2"}}])
    trained = RecommendationRequest(item_id="i0", template=SIMILAR_ATTRIBUTES, num_results=5)
    assert len(rec.recommend(trained, scan=False).items) == 5  # the kept list: no scan
    with pytest.raises(NeedsScan):
        rec.recommend(RecommendationRequest(item_id="n1", template=SIMILAR_ATTRIBUTES),
                      scan=False)


def test_a_bundle_with_a_broken_index_is_refused_whole(bundle):
    from sluice.bundle import BundleError

    broken = ModelBundle(**{**{k: getattr(bundle, k) for k in (
        "user_ids", "item_ids", "user_factors", "item_factors", "user_items", "popular",
        "popular_scores", "meta", "catalog")},
        "attributes": {**bundle.attributes, "attr_nn_indices": np.full(5, 10**6, np.int32)}})
    with pytest.raises(BundleError, match="attribute index"):
        LoadedModel(broken, "1")
