"""Id -> row maps (sluice.ids): a dict for small models, a binary search over the stored ids
for large ones; both answer every lookup as a dict would, a bundle stores the order that the
sorted map needs and refuses one that does not sort its ids, and serving answers the same
through either."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sluice import ids, npz
from sluice.bundle import ARRAYS, BundleError, ModelBundle
from sluice.filters import parse_conditions
from sluice.serve.answers import RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.vocabulary import SIMILAR_ITEMS
from tests.utils.models import synthetic_bundle

# ids sharing prefixes, of assorted lengths, one empty, with spaces and beyond ASCII
AWKWARD = ["", "a", "ab", "a b", "ab ", "b", "é", "éa", "z" * 40, "10", "9", "-1", "A", "日本"]


def _ids(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    made = [f"{rng.choice(['u', 'item-', 'X'])}{v}" for v in rng.permutation(n * 3)[:n]]
    return np.array(AWKWARD + made)


def _maps(values: np.ndarray) -> tuple[ids.DictMap, ids.SortedMap]:
    return ids.DictMap(values), ids.SortedMap(values, ids.sort_order(values))


def test_both_maps_answer_every_lookup_as_a_dict_does():
    values = _ids(3_000)
    truth = {v: j for j, v in enumerate(values.tolist())}
    absent = ["aa", "a  ", "z" * 41, "z" * 39, "item-", "日", "u-5", "\x00", "ab\x00x"]
    keys = list(truth) + absent + [v + "q" for v in list(truth)[:50]]
    for index in _maps(values):
        assert len(index) == len(truth) and index.problem() is None
        for key in keys:
            assert index.get(key) == truth.get(key), key
            assert (key in index) == (key in truth), key
        assert index.get("nope", -7) == -7 and index.get(None) is None and 5 not in index
        assert index["a b"] == truth["a b"]
        with pytest.raises(KeyError):
            index["aa"]
        found = index.rows(keys + keys[:10])  # repeats, in any order
        assert found.dtype == np.int64
        assert found.tolist() == [truth.get(k, -1) for k in keys + keys[:10]]
        assert index.rows([]).tolist() == [] and index.rows(iter(["b"])).tolist() == [truth["b"]]


def test_an_empty_map_finds_nothing():
    for index in _maps(np.array([], dtype=str)):
        assert len(index) == 0 and index.get("a") is None and index.rows(["a"]).tolist() == [-1]


def test_a_map_names_duplicates_and_an_order_that_does_not_sort():
    values = np.array(["b", "a", "c", "a"])
    assert ids.DictMap(values).problem() == "id maps hold duplicate ids"
    assert ids.SortedMap(values, ids.sort_order(values)).problem() == "id maps hold duplicate ids"
    unique = np.array(["b", "a", "c", "d"])
    assert ids.SortedMap(unique, np.array([0, 1, 2, 3])).problem() == (
        "an id order does not sort its ids")
    assert "outside" in ids.SortedMap(unique, np.array([1, 0, 2, 4])).problem()
    assert "shape (3,)" in ids.SortedMap(unique, np.array([1, 0, 2])).problem()
    assert ids.SortedMap(unique, np.array([1, 0, 2, 1])).problem() is not None  # not a permutation


def test_which_map_a_model_gets(monkeypatch):
    values = _ids(100)
    assert isinstance(ids.id_map(values), ids.DictMap)  # small: dict speed
    monkeypatch.setattr(ids, "DICT_BELOW", 50)
    large = ids.id_map(values)
    assert isinstance(large, ids.SortedMap) and large.problem() is None
    assert ids.stored_order(values) is not None and ids.stored_order(values[:10]) is None


@pytest.fixture
def sorted_maps(monkeypatch):
    """Every id map from 10 ids up is a sorted map (the threshold of a million-item model)."""
    monkeypatch.setattr(ids, "DICT_BELOW", 10)


def test_a_large_bundle_stores_and_maps_its_id_orders(tmp_path, sorted_maps):
    bundle = synthetic_bundle(items=300, users=40)
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    for index, order in ((loaded.user_index, loaded.user_order),
                         (loaded.item_index, loaded.item_order)):
        assert isinstance(index, ids.SortedMap) and order is not None
        assert npz.is_mapped(index.ids) and npz.is_mapped(order)  # nothing built at load
    assert [loaded.item_index[f"i{j}"] for j in range(300)] == list(range(300))
    assert loaded.user_index.get("u39") == 39 and "u40" not in loaded.user_index


def _rewrite(directory, **changes) -> None:
    """The bundle's arrays, some replaced (None: removed), written back as the bundle was."""
    with np.load(directory / ARRAYS, allow_pickle=False) as plain:
        arrays = {k: plain[k] for k in plain.files}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    npz.save(directory / ARRAYS, arrays)


def test_a_bundle_whose_stored_order_does_not_sort_its_ids_is_refused(tmp_path, sorted_maps):
    directory = synthetic_bundle(items=300, users=40).save(tmp_path / "b")
    _rewrite(directory, item_order=np.arange(300))  # i0, i1, i10, ... sort otherwise
    with pytest.raises(BundleError, match="an id order does not sort its ids"):
        ModelBundle.load(directory)


def test_a_large_bundle_with_duplicate_ids_is_refused(tmp_path, sorted_maps):
    bundle = synthetic_bundle(items=300, users=40)
    bundle.user_ids = np.array([f"u{i % 39}" for i in range(40)])  # u0 twice
    with pytest.raises(BundleError, match="duplicate ids"):
        ModelBundle.load(bundle.save(tmp_path / "b"))


def test_a_large_bundle_written_without_orders_computes_them(tmp_path, sorted_maps):
    """Bundles trained before the orders were stored load with the order computed."""
    bundle = synthetic_bundle(items=300, users=40)
    directory = bundle.save(tmp_path / "b")
    _rewrite(directory, user_order=None, item_order=None)
    loaded = ModelBundle.load(directory)
    assert loaded.item_order is None and isinstance(loaded.item_index, ids.SortedMap)
    assert loaded.item_index["i123"] == 123 and loaded.user_index["u7"] == 7


def _answers(bundle: ModelBundle) -> list[list[tuple[str, str, float]]]:
    """Answers for known and unknown users with events on known and unknown items, with
    exclusions and a filter, a similar-items page and a personalized ranking."""
    state = RealtimeState()
    state.apply([{"event": "interaction", "id": f"e{u}-{n}", "tenant": "default",
                  "user": f"u{u}", "item": f"i{(u * 37 + n * 11) % 320}", "type": "click",
                  "timestamp": 10 + n} for u in range(0, 60, 3) for n in range(3)])
    rec = Recommender("default", LoadedModel(bundle, "1"), state, {"click": 1.0}, seed=3)
    requests = [RecommendationRequest(user_id=f"u{u}", num_results=30,
                                      exclude_ids=["i5", "i77", "nope"])
                for u in range(0, 60, 3)]
    requests.append(RecommendationRequest(user_id="u3", num_results=20, rules=parse_conditions(
        [{"field": "color", "op": "eq", "value": "red"}])))
    requests.append(RecommendationRequest(item_id="i42", template=SIMILAR_ITEMS, num_results=15,
                                          exclude_ids=["i1"]))
    answers = [rec.recommend(req) for req in requests]
    answers.append(rec.rank(RecommendationRequest(user_id="u6"),
                            ["i9", "nope", "i300", "i2", "i250", "i9x", "i17"]))
    return [[(s.item_id, s.recommendation_source, round(s.score, 5)) for s in a.items]
            for a in answers]


def test_serving_answers_the_same_through_either_map(tmp_path, monkeypatch):
    bundle = synthetic_bundle(items=300, users=40)
    directory = bundle.save(tmp_path / "small")
    through_dicts = _answers(ModelBundle.load(directory))
    monkeypatch.setattr(ids, "DICT_BELOW", 10)
    large = ModelBundle.load(dataclasses.replace(bundle).save(tmp_path / "large"))
    assert isinstance(large.item_index, ids.SortedMap)
    through_sorted = _answers(large)
    assert through_sorted == through_dicts
    assert sum(len(a) for a in through_dicts) > 400  # the requests were answered
    ranked = [item for item, _, _ in through_dicts[-1]]
    assert {"i9", "i2", "i250", "i17"} <= set(ranked) and "i300" not in ranked[:4]


def test_ids_held_as_python_objects_are_found_too():
    """Training hands the bundle ids as they came from the warehouse (object arrays)."""
    values = _ids(500).astype(object)
    truth = {v: j for j, v in enumerate(values.tolist())}
    index = ids.SortedMap(values, ids.sort_order(values))
    keys = [*list(truth)[:100], "aa", "z" * 41, "\x00"]
    assert [index.get(k) for k in keys] == [truth.get(k) for k in keys]
    assert index.rows(keys).tolist() == [truth.get(k, -1) for k in keys]
