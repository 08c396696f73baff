"""similar_attributes on a catalog loaded from its own files (MovieLens-shaped items: genres
as `a|b` lists, titles, years): with none of the configured fields in it, training chooses
the catalog's categorical and numeric fields, says so in one line and records them; an
explicit `attributes.fields` wins; with nothing usable the line says why."""

from __future__ import annotations

import json

import duckdb

from sluice.bundle import ModelBundle
from sluice.learn import registry
from sluice.learn.attribute_fields import catalog_fields, choose
from sluice.learn.tracking import lineage
from sluice.learn.training import train_tenant
from sluice.serve.answers import RecommendationRequest
from sluice.serve.explain import explain
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.vocabulary import FALLBACK, MODEL_NON_PERSONALIZED, SIMILAR_ATTRIBUTES
from tests.learn.test_training import settings_for
from tests.utils.marts import taste_history, write_marts

ECOMMERCE = {"category": "varchar", "brand": "varchar", "color": "varchar", "price": "double"}
GENRES = [["Action", "Adventure", "Sci-Fi"], ["Comedy", "Romance", "Musical"],
          ["Drama", "Crime", "Film-Noir"]]  # by taste group (taste_history: 20 items each)


def movie(item: int) -> dict:
    """A MovieLens-shaped item as the items file loads it (`Comedy` alone is a string)."""
    own = GENRES[item // 20]
    genres = [own[item % 3], own[(item + 1) % 3]] if item % 2 else own[item % 3]
    year = 1970 + (item * 7) % 29
    return {"title": f"Film{item} ({year})", "release_year": year, "genres": genres}


def genres(fields: dict) -> set[str]:
    value = fields["genres"]
    return set(value if isinstance(value, list) else [value])


def trained(tmp_path, monkeypatch, fields_of=movie, **attributes):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = settings_for(tmp_path, store, monkeypatch,
                            events={"item_fields": ECOMMERCE}, attributes=attributes)
    write_marts(settings.warehouse_path, taste_history(), "movies")
    con = duckdb.connect(str(settings.warehouse_path))
    for (item,) in con.execute("select item_id from marts.items").fetchall():
        con.execute("update marts.items set fields = ? where item_id = ?",
                    [json.dumps(fields_of(int(item[1:]))), item])
    con.close()
    lines: list[str] = []
    result = train_tenant(settings, "movies", progress=lines.append)
    params = registry.client(store).get_run(result.run_id).data.params
    champion = registry.download_alias(store, result.model_name, dst=tmp_path / "dl")
    assert champion is not None
    found = lineage(store, result.model_name, result.version)
    return ModelBundle.load(champion.local_path), params, lines, found


def test_a_movie_catalog_gets_an_index_of_its_own_genres_and_years(tmp_path, monkeypatch):
    bundle, params, lines, _ = trained(tmp_path, monkeypatch)
    said = ("[movies] attributes: none of brand, category, color, price (events.item_fields)"
            " in the catalog of tenant movies; using genres (9 values), release_year (numbers, "
            "weight 0.5); left out title (near-unique) — set attributes.fields to choose")
    assert said in lines
    assert params["attributes.fields"] == "genres:1,release_year:0.5"
    assert params["attributes.fields_source"] == "catalog"
    meta = bundle.meta["attributes"]
    assert meta["fields_source"] == "catalog"
    assert meta["weights"] == {"genres": 1.0, "release_year": 0.5}
    rec = Recommender("movies", LoadedModel(bundle, "1"), RealtimeState(), {"click": 1.0},
                      seed=1)
    for seed in ("i3", "i24", "i57"):
        answer = rec.recommend(RecommendationRequest(
            item_id=seed, template=SIMILAR_ATTRIBUTES, num_results=5, fill_with_random=False))
        assert [s.recommendation_source for s in answer.items] == [MODEL_NON_PERSONALIZED] * 5
        mine = genres(bundle.catalog[seed])
        assert all(genres(bundle.catalog[s.item_id]) & mine for s in answer.items), seed


def test_an_explicit_setting_wins_over_the_catalogs_fields(tmp_path, monkeypatch):
    bundle, params, lines, found = trained(tmp_path, monkeypatch,
                                           fields={"release_year": 1.0})
    assert found["attributes"] == {"fields": "release_year:1",
                                   "fields_source": "attributes.fields", "note": None}
    assert not any("using" in line for line in lines)
    assert params["attributes.fields"] == "release_year:1"
    assert params["attributes.fields_source"] == "attributes.fields"
    assert bundle.meta["attributes"]["weights"] == {"release_year": 1.0}
    assert bundle.meta["attributes"]["fields_source"] == "attributes.fields"


def test_without_a_usable_field_the_run_and_the_explained_answer_say_why(tmp_path,
                                                                         monkeypatch):
    bundle, params, lines, found = trained(tmp_path, monkeypatch,
                                           fields_of=lambda i: {"title": f"Film{i}"})
    assert bundle.attributes is None and "attributes" not in bundle.meta
    note = ("attributes: no attribute index for tenant movies: none of brand, category, color, "
            "price (events.item_fields) in its catalog, and none of its fields is categorical "
            "or numeric (title (near-unique)); similar_attributes answers will come from the "
            "random tier only — set attributes.fields (and attributes.text_fields for words "
            "of text) to choose")
    assert f"[movies] {note}" in lines
    assert params["attributes.fields"] == "-" and params["attributes.fields_source"] == "none"
    assert found["attributes"] == {"fields": "-", "fields_source": "none", "note": note}
    rec = Recommender("movies", LoadedModel(bundle, "1"), RealtimeState(), {"click": 1.0},
                      seed=1)
    answer = rec.recommend(RecommendationRequest(item_id="i3", template=SIMILAR_ATTRIBUTES,
                                                 num_results=3))
    body = explain("movies", answer, found)
    assert [i["recommendation_source"] for i in body["items"]] == [FALLBACK] * 3
    assert all(i["reason"]["why"] == f"random catalog draw: {note}" for i in body["items"])
    answer.template = "popular"  # another template's random slots are only random draws
    assert all(i["reason"]["why"] == "random catalog draw"
               for i in explain("movies", answer, found)["items"])


def test_configured_item_fields_in_the_catalog_are_used_as_before():
    catalog = {f"i{i}": {"category": f"c{i % 3}", "genres": ["a", "b"]} for i in range(10)}
    choice = choose({}, ECOMMERCE, catalog, "shop")
    assert choice.source == "events.item_fields" and choice.line is None
    assert choice.weights == dict.fromkeys(ECOMMERCE, 1.0)


def test_a_catalog_without_a_usable_field_says_why_and_what_to_do():
    catalog = {f"i{i}": {"title": f"Film{i}", "sku_id": f"s{i}", "kind": "movie",
                         "blurb": "a long story told in many many words", "free": True}
               for i in range(30)}
    choice = choose({}, ECOMMERCE, catalog, "movies")
    assert choice.weights == {} and choice.source == "none"
    assert choice.line == (
        "attributes: no attribute index for tenant movies: none of category, brand, color, "
        "price (events.item_fields) in its catalog, and none of its fields is categorical or "
        "numeric (blurb (text: name it in attributes.text_fields), free (not strings or "
        "numbers), kind (one value), sku_id (an id or a time by its name), title "
        "(near-unique)); similar_attributes answers will come from the random tier only — "
        "set attributes.fields (and attributes.text_fields for words of text) to choose")
    empty = choose({}, ECOMMERCE, {"i1": {}, "i2": {}}, "bare")
    assert "its catalog has no item fields (send items with fields)" in (empty.line or "")


def test_catalog_fields_count_list_elements_and_mixed_single_values():
    catalog = {"a": {"genres": ["x", "y"]}, "b": {"genres": "x"}, "c": {"genres": ["y"]},
               "d": {"genres": "z"}, "e": {"genres": ["x", "z"]}}
    weights, described, left_out = catalog_fields(catalog)
    assert weights == {"genres": 1.0} and described == ["genres (3 values)"] and not left_out
