"""The attribute index: each item's nearest neighbours by its fields (content-based), so that
an item nobody has touched yet still has neighbours.

Every item becomes a bag of `field=value` terms: a string is one term (or, for a text field,
one term per word), a list one term per element, a number its quantile bin, a bool its value.
scikit-learn's `TfidfVectorizer` weighs the terms (rare values count more, values held by
more than `max_df` of the items are dropped), each field's terms are multiplied by the
field's weight, and rows are L2-normalised; implicit's `CosineRecommender` keeps each item's
top-K neighbours. The vocabulary, idf and bin edges ship in the bundle so that serving
vectorises an item that arrives later exactly like training did (`AttributeSpace`).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from sluice.learn.attribute_fields import FieldChoice, choose
from sluice.learn.similar import SimilarItems

SEP = "="  # a term is `field=value`; the field is what precedes the first SEP
_WORDS = CountVectorizer().build_analyzer()  # lowercase words of two or more characters
PREFIX = "attr_"  # the bundle's arrays of the index


@dataclass
class AttributeSpace:
    """How fields become a vector: weights, text fields, bin edges, vocabulary and idf."""

    weights: dict[str, float]
    text_fields: list[str]
    bins: dict[str, list[float]]
    terms: np.ndarray  # str, column j of the vectors
    idf: np.ndarray  # float32 per column

    def __post_init__(self) -> None:
        self.column = {t: j for j, t in enumerate(self.terms.tolist())}
        self.scale = self.idf * np.array([self.weights.get(t.split(SEP, 1)[0], 1.0)
                                          for t in self.terms.tolist()], dtype=np.float32)

    def tokens(self, fields: dict[str, Any]) -> list[str]:
        """The terms of one item's fields (only the configured fields count)."""
        out: list[str] = []
        for name in self.weights:
            value = fields.get(name)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            for v in values:
                out.extend(f"{name}{SEP}{t}" for t in self._terms(name, v))
        return out

    def _terms(self, name: str, value: Any) -> list[str]:
        if isinstance(value, bool):
            return [str(value).lower()]
        if isinstance(value, int | float):
            edges = self.bins.get(name)
            return [f"bin{bisect.bisect_right(edges, value)}"] if edges else []
        if name in self.text_fields:
            return _WORDS(str(value))
        return [str(value).strip().lower()]

    def row(self, fields: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """One item's vector as (columns, values): what `vectorize` makes of one row, without
        building a matrix (serving vectorises one new item per request)."""
        counts: dict[int, int] = {}
        for term in self.tokens(fields):
            j = self.column.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        cols = np.fromiter(counts, np.int64, len(counts))
        vals = np.fromiter(counts.values(), np.float32, len(counts)) * self.scale[cols]
        norm = float(np.sqrt(vals @ vals))
        return cols, vals / norm if norm > 0 else vals

    def vectorize(self, rows: list[dict[str, Any]]) -> sp.csr_matrix:
        """L2-normalised weighted TF-IDF rows; terms training never saw are left out."""
        return self.vectorize_tokens([self.tokens(fields) for fields in rows])

    def vectorize_tokens(self, rows: list[list[str]]) -> sp.csr_matrix:
        indptr: list[int] = [0]
        indices: list[int] = []
        data: list[float] = []
        for tokens in rows:
            counts: dict[int, int] = {}
            for term in tokens:
                j = self.column.get(term)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            data.extend(counts.values())
            indptr.append(len(indices))
        matrix = sp.csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int32),
                                np.asarray(indptr, np.int64)), shape=(len(rows), len(self.terms)))
        return normalize(matrix.multiply(self.scale).tocsr(), copy=False).astype(np.float32)

    def meta(self) -> dict[str, Any]:
        return {"weights": self.weights, "text_fields": self.text_fields, "bins": self.bins}


@dataclass
class AttributeIndex:
    """The trained index: item ids, their vectors, each one's top-K neighbours."""

    space: AttributeSpace
    item_ids: np.ndarray  # str
    vectors: sp.csr_matrix  # items x terms, rows L2-normalised
    neighbours: sp.csr_matrix  # items x items, top-K per row, itself left out
    build_seconds: float = 0.0
    # terms x items (the vectors transposed): the posting lists a new item's vector is scored
    # through. Shipped in the bundle so that serving maps it instead of transposing every
    # vector in each worker; None for a bundle written before it (serving transposes then)
    by_term: sp.csr_matrix | None = None
    fields_source: str = ""  # where its fields came from (sluice.learn.attribute_fields)

    def terms_by_item(self) -> sp.csr_matrix:
        return self.by_term if self.by_term is not None else self.vectors.T.tocsr()

    def arrays(self) -> dict[str, np.ndarray]:
        """The bundle's `attr_*` arrays (never pickle)."""
        v, n, t = self.vectors, self.neighbours, self.terms_by_item()
        return {f"{PREFIX}{k}": a for k, a in {
            "item_ids": self.item_ids.astype(str), "terms": self.space.terms.astype(str),
            "idf": self.space.idf.astype(np.float32),
            "vec_indptr": v.indptr, "vec_indices": v.indices, "vec_data": v.data,
            "nn_indptr": n.indptr, "nn_indices": n.indices,
            "nn_data": n.data.astype(np.float32),
            "term_indptr": t.indptr, "term_indices": t.indices, "term_data": t.data}.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> AttributeIndex:
        a = {k[len(PREFIX):]: v for k, v in arrays.items() if k.startswith(PREFIX)}
        n_items, n_terms = len(a["item_ids"]), len(a["terms"])
        space = AttributeSpace(meta["weights"], meta["text_fields"], meta["bins"],
                               a["terms"], a["idf"])
        vectors = sp.csr_matrix((a["vec_data"], a["vec_indices"], a["vec_indptr"]),
                                shape=(n_items, n_terms))
        neighbours = sp.csr_matrix((a["nn_data"], a["nn_indices"], a["nn_indptr"]),
                                   shape=(n_items, n_items))
        by_term = None
        if "term_indptr" in a:
            by_term = sp.csr_matrix((a["term_data"], a["term_indices"], a["term_indptr"]),
                                    shape=(n_terms, n_items))
            if by_term.nnz != vectors.nnz or (by_term.nnz and (
                    int(by_term.indices.max()) >= n_items or int(by_term.indices.min()) < 0)):
                raise ValueError("its terms' posting lists do not match its vectors")
        return cls(space, a["item_ids"], vectors, neighbours, by_term=by_term)

    def stats(self) -> dict[str, Any]:
        return {"items": len(self.item_ids), "terms": len(self.space.terms),
                "neighbour_cells": int(self.neighbours.nnz),
                "bytes": int(sum(a.nbytes for a in self.arrays().values())),
                "build_seconds": round(self.build_seconds, 3)}


def build(catalog: dict[str, dict[str, Any]], weights: dict[str, float],
          text_fields: list[str] | None = None, neighbours: int = 50, numeric_bins: int = 10,
          max_df: float = 0.5, max_items_per_value: int = 1000) -> AttributeIndex | None:
    """The index of every catalog item; None when no item has a usable field.

    Finding neighbours costs, per item, the number of items sharing each of its values: a
    value held by more than `max_items_per_value` items is left out (besides `max_df`), so
    that the build grows linearly with the catalog instead of with its square."""
    started = time.perf_counter()
    item_ids = np.array(sorted(catalog), dtype=str)
    rows = [catalog[i] for i in item_ids.tolist()]
    bins = _bin_edges(rows, weights, numeric_bins)
    probe = AttributeSpace(weights, list(text_fields or []), bins, np.array([], str),
                           np.array([], np.float32))
    tokens = [probe.tokens(fields) for fields in rows]
    # a value held by a single item links nothing; a very common one says nothing
    common = min(int(max_df * len(rows)), max_items_per_value) if len(rows) > 10 else len(rows)
    vectorizer = TfidfVectorizer(analyzer=_identity, norm=None, dtype=np.float32,
                                 min_df=2 if len(rows) > 2 else 1, max_df=max(common, 2))
    try:
        vectorizer.fit(tokens)
    except ValueError:  # no term survived: empty catalog or no configured field
        return None
    terms = vectorizer.get_feature_names_out().astype(str)
    space = AttributeSpace(weights, list(text_fields or []), bins, terms,
                           vectorizer.idf_.astype(np.float32))
    vectors = space.vectorize_tokens(tokens)
    # implicit's item-item cosine wants users x items: here terms are the "users"
    by_term = vectors.T.tocsr()
    index = SimilarItems(neighbours).fit(by_term)
    return AttributeIndex(space, item_ids, vectors, index.matrix,
                          time.perf_counter() - started, by_term=by_term)


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _bin_edges(rows: list[dict[str, Any]], weights: dict[str, float],
               bins: int) -> dict[str, list[float]]:
    """Quantile edges of each numeric field (bools are not numbers here)."""
    edges: dict[str, list[float]] = {}
    for name in weights:
        values = [v for fields in rows if isinstance(v := fields.get(name), int | float)
                  and not isinstance(v, bool)]
        if values:
            cuts = np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, bins + 1)[1:-1])
            edges[name] = np.unique(cuts).tolist()
    return edges


def from_config(app: Any, catalog: dict[str, dict[str, Any]],
                choice: FieldChoice | None = None) -> AttributeIndex | None:
    """The index as config asks (`attributes`) over the chosen fields (by default
    `attributes.fields`, else `events.item_fields`, else the catalog's own: `choose`)."""
    cfg = app.attributes
    choice = choice or choose(cfg.fields, app.events.item_fields, catalog, "")
    if not choice.weights:
        return None
    index = build(catalog, choice.weights, cfg.text_fields, cfg.neighbours, cfg.numeric_bins,
                  cfg.max_df, cfg.max_items_per_value)
    if index is not None:
        index.fields_source = choice.source
    return index


def bundle_meta(index: AttributeIndex | None, cold_item_interactions: int) -> dict[str, Any]:
    """The bundle meta `attributes` entry (none without an index)."""
    if index is None:
        return {}
    return {"attributes": {**index.space.meta(), "stats": index.stats(),
                           "cold_item_interactions": cold_item_interactions,
                           **({"fields_source": index.fields_source}
                              if index.fields_source else {})}}
