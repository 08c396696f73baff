"""A model's catalog by column (sluice.item_fields): every item reads back the fields it was
trained with, whatever their JSON types; a filter's mask over the columns is what the filter
says item by item; the columns are mapped from the bundle, bundles written before them load
the same catalog from their text, and damaged columns refuse the bundle."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sluice import ids, npz
from sluice.bundle import CATALOG, CATALOG_COLUMNS, BundleError, ModelBundle
from sluice.filters import allowed, parse_conditions, parse_expression
from sluice.item_fields import ItemFields
from sluice.serve.model import LoadedModel
from tests.utils.models import synthetic_bundle

ODD = [0, -1, 2.5, 1e300, True, False, None, "", "true", "1", "日本 ü", "a\nb\"c\\", [],
       ["red", "blue"], [1, "1", True], {"k": [1, {"n": None}]}, {}, 1, 1.0]


def _catalog(n: int, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    catalog: dict[str, dict] = {}
    for i in range(n):
        fields = {"category": f"c{rng.integers(0, 7)}", "price": float(rng.integers(0, 50)),
                  "in_stock": bool(rng.random() < 0.6)}
        if rng.random() < 0.5:
            fields["tags"] = [f"t{t}" for t in rng.choice(5, rng.integers(0, 3), replace=False)]
        if rng.random() < 0.3:
            fields["odd"] = ODD[int(rng.integers(0, len(ODD)))]
        if rng.random() < 0.1:
            del fields["category"]  # an item without a field every other item has
        catalog[f"item-{i}" if i % 11 else f"ü{i}/x"] = fields
    return catalog


def _same(a: object, b: object) -> bool:
    """Equal as JSON means it: 1 and 1.0 are one number, True is not 1."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_every_item_reads_back_its_fields_through_a_saved_and_mapped_file(tmp_path):
    catalog = _catalog(500)
    catalog["every-odd-value"] = {f"f{i}": value for i, value in enumerate(ODD)}
    catalog["no-fields"] = {}
    ItemFields.of(catalog).save(tmp_path / "c.npz")
    loaded = ItemFields.load(tmp_path / "c.npz")
    assert loaded.problem() is None
    assert npz.is_mapped(loaded.codes) and npz.is_mapped(loaded.blob)
    assert list(loaded) == list(catalog) and len(loaded) == len(catalog)
    for item_id, fields in catalog.items():
        assert item_id in loaded
        assert _same(loaded[item_id], fields), item_id
        assert all(type(loaded[item_id][k]) is type(v) for k, v in fields.items()), item_id
    assert "item-1 " not in loaded and loaded.get("nope", {"x": 1}) == {"x": 1}
    with pytest.raises(KeyError):
        loaded["nope"]
    # a value handed out is the caller's: changing it changes no other item's
    loaded["every-odd-value"]["f13"].append("changed")
    assert loaded["every-odd-value"]["f13"] == ["red", "blue"]


def test_a_large_catalog_is_a_sorted_map_with_its_order_stored(tmp_path):
    catalog = {f"i{n}": {"n": n % 3} for n in range(ids.DICT_BELOW + 5)}
    ItemFields.of(catalog).save(tmp_path / "c.npz")
    loaded = ItemFields.load(tmp_path / "c.npz")
    assert isinstance(loaded.row, ids.SortedMap) and npz.is_mapped(loaded.row.order)
    last = ids.DICT_BELOW + 4
    assert loaded["i0"] == {"n": 0} and loaded[f"i{last}"] == {"n": last % 3}
    assert loaded["i7"] == {"n": 1} and "i-1" not in loaded
    assert len(loaded.blob) == len(b"012")  # three distinct values, stored once each


RULES = [
    [{"field": "category", "op": "eq", "value": "c1"}],
    [{"field": "category", "op": "ne", "value": "c1"}],
    [{"field": "category", "op": "in", "value": ["c2", "c3"]},
     {"field": "price", "op": "lt", "value": 20}],
    [{"field": "category", "op": "not_in", "value": ["c2"]}],
    [{"field": "category", "op": "is", "value": None}],
    [{"field": "tags", "op": "contains", "value": "t1"}],
    [{"field": "tags", "op": "eq", "value": "t3"}],
    [{"field": "odd", "op": "gte", "value": 0}],
    [{"field": "odd", "op": "is", "value": True}],
    [{"field": "in_stock", "op": "is", "value": True}, {"field": "price", "op": "gte", "value": 9}],
    [{"field": "colour", "op": "eq", "value": "red"}],  # no item has it
    [{"field": "colour", "op": "ne", "value": "red"}],
]
EXPRESSIONS = [
    'EXCLUDE ItemID WHERE Items.category IN ("c1", "c4") | INCLUDE ItemID WHERE Items.price < 30',
    'INCLUDE ItemID WHERE Items.category = "c2"',
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
]


@pytest.mark.parametrize("which", range(len(RULES) + len(EXPRESSIONS)))
def test_a_mask_is_the_filter_applied_item_by_item(which):
    catalog = _catalog(3_000, seed=which)
    if which < len(RULES):
        rules = parse_conditions(RULES[which])
    else:
        rules = parse_expression(EXPRESSIONS[which - len(RULES)])
    # the model's items: most of the catalog's, in another order, and some it lacks
    model_ids = np.array([*list(catalog)[::-1][:2_500], "not-in-catalog", "x"])
    mask = ItemFields.of(catalog).mask(rules, model_ids)
    expected = [allowed(rules, catalog.get(i, {}), set()) for i in model_ids.tolist()]
    assert mask.tolist() == expected
    if which in (0, 2, 5, 9, len(RULES)):  # filters that keep some items and drop others
        assert 0 < sum(expected) < len(expected)


def test_a_served_model_filters_through_the_columns_as_through_its_catalog(tmp_path):
    bundle = synthetic_bundle(items=400, users=30, seed=3)
    bundle.catalog = _catalog(400)
    bundle.catalog = {str(i): f for i, f in zip(bundle.item_ids.tolist(),
                                                bundle.catalog.values(), strict=True)}
    directory = bundle.save(tmp_path / "b")
    assert (directory / CATALOG_COLUMNS).exists()
    loaded = ModelBundle.load(directory)
    assert isinstance(loaded.catalog, ItemFields)
    rules = parse_conditions(RULES[2])
    in_memory, mapped = LoadedModel(bundle, "1"), LoadedModel(loaded, "1")
    assert in_memory.item_mask(rules).tolist() == mapped.item_mask(rules).tolist()
    assert mapped.field_names == {"category", "price", "in_stock", "tags", "odd"}


def test_a_bundle_written_before_the_columns_loads_the_same_catalog_from_its_text(tmp_path):
    bundle = synthetic_bundle(items=120, users=20, seed=4)
    bundle.catalog = _catalog(150)
    directory = bundle.save(tmp_path / "b")
    (directory / CATALOG_COLUMNS).unlink()
    loaded = ModelBundle.load(directory)
    assert set(loaded.catalog) == set(bundle.catalog)
    assert all(_same(loaded.catalog[i], f) for i, f in bundle.catalog.items())
    # and the text stays what an older Sluice reads
    lines = (directory / CATALOG).read_text().splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == list(bundle.catalog)


@pytest.mark.parametrize("damage", ["codes out of range", "offsets past the bytes",
                                    "one code short", "not an npz"])
def test_damaged_columns_refuse_the_bundle(tmp_path, damage):
    bundle = synthetic_bundle(items=80, users=10, seed=5)
    bundle.catalog = _catalog(90)
    directory = bundle.save(tmp_path / "b")
    path = directory / CATALOG_COLUMNS
    if damage == "not an npz":
        path.write_bytes(b"not a zip")
    else:
        arrays = dict(np.load(path))
        if damage == "codes out of range":
            arrays["codes"][0, 3] = len(arrays["offsets"]) + 2
        elif damage == "offsets past the bytes":
            arrays["offsets"][-1] += 5
        else:
            arrays["codes"] = arrays["codes"][:, :-1]
        npz.save(path, arrays)
    with pytest.raises(BundleError, match="catalog"):
        ModelBundle.load(directory)


def test_non_finite_numbers_read_back_as_written(tmp_path):
    catalog = {"a": {"x": math.nan, "y": math.inf}, "b": {"x": 1.5}}
    ItemFields.of(catalog).save(tmp_path / "c.npz")
    loaded = ItemFields.load(tmp_path / "c.npz")
    assert math.isnan(loaded["a"]["x"]) and loaded["a"]["y"] == math.inf
    assert loaded["b"] == {"x": 1.5}


def test_random_draws_cover_the_model_the_catalog_and_the_log_once_each(tmp_path):
    from sluice.serve.catalog import Catalog
    from sluice.serve.realtime import RealtimeState

    bundle = synthetic_bundle(items=60, users=10, seed=6)
    model_ids = bundle.item_ids.tolist()
    # the catalog holds half the model's items and items the model never saw
    bundle.catalog = {**{i: {"n": 1} for i in model_ids[::2]},
                      **{f"only-in-catalog-{n}": {"n": 2} for n in range(15)}}
    loaded = LoadedModel(ModelBundle.load(bundle.save(tmp_path / "b")), "1")
    state = RealtimeState()
    state.tenant("default").items.update({model_ids[1]: {}, "only-in-catalog-3": {},
                                          "new-in-log": {"n": 3}})
    catalog = Catalog("default", loaded, state, seed=1)
    expected = [*model_ids, *(f"only-in-catalog-{n}" for n in range(15)), "new-in-log"]
    assert list(catalog.items()) == expected
    drawn = [item for item, _ in catalog.random(len(expected) + 5, set(), None)]
    assert sorted(drawn) == sorted(expected)
    state.tenant("default").items["later"] = {}  # an item event after the first draw
    assert catalog.items()[len(expected)] == "later" and len(catalog.items()) == len(expected) + 1
    with pytest.raises(IndexError):
        catalog.items()[len(expected) + 1]
    no_model = Catalog("default", None, state, seed=1)
    assert list(no_model.items()) == [model_ids[1], "only-in-catalog-3", "new-in-log", "later"]
