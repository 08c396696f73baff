"""The attribute index against the collaborative similar-items index, in the same run.

    python benchmarks/attributes.py                  # 100k items, 1M interactions
    python benchmarks/attributes.py --items 20000 --requests 500

Build: `sluice.learn.attributes.build` (TF-IDF of category, brand, price bins, tags and title
words; implicit's cosine top-50) against `SimilarItems(50).fit` over the interaction matrix,
what the train flow builds for `similar_items`. Serve: answers of 10 through the real
`Recommender` (no HTTP) for `similar_attributes` of trained items, of items that arrived after
training (vectorised from their live fields), and `similar_items` of the same trained items.
Figures are ratios against the collaborative index measured here, in the same process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table

from sluice.bundle import ModelBundle
from sluice.learn.attributes import build
from sluice.learn.similar import SimilarItems
from sluice.serve.answers import RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender

FIELDS = {"category": 1.0, "brand": 2.0, "price": 0.5, "tags": 1.0, "title": 1.0}
WORDS = np.array([f"w{i}" for i in range(2000)])


def catalog(items: int, rng: np.random.Generator) -> dict[str, dict]:
    cats, brands = rng.integers(0, 200, items), rng.zipf(1.5, items) % 5000
    return {f"i{i}": item_fields(int(cats[i]), int(brands[i]), rng) for i in range(items)}


def item_fields(cat: int, brand: int, rng: np.random.Generator) -> dict:
    return {"category": f"c{cat}", "brand": f"b{brand}", "price": float(rng.gamma(2.0, 20.0)),
            "tags": [f"t{t}" for t in rng.integers(0, 500, 3)],
            "title": " ".join(WORDS[rng.zipf(1.3, 6) % len(WORDS)])}


def interactions(users: int, items: int, count: int, rng: np.random.Generator) -> sp.csr_matrix:
    rows = rng.integers(0, users, count)
    cols = np.minimum(rng.zipf(1.2, count) - 1, items - 1)
    cols = (cols * 7919 + rows % 50) % items  # popular items spread over the id space
    m = sp.csr_matrix((np.ones(count, np.float32), (rows, cols)), shape=(users, items))
    m.sum_duplicates()
    return m


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    started = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - started) / repeat, out


def serve(rec: Recommender, template: str, items: list[str]) -> float:
    """Mean seconds per answer of 10."""
    started = time.perf_counter()
    for item in items:
        rec.recommend(RecommendationRequest(item_id=item, template=template, num_results=10,
                                            fill_with_random=False))
    return (time.perf_counter() - started) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-items-per-value", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    fields = catalog(args.items, rng)
    matrix = interactions(args.users, args.items, args.interactions, rng)
    collab_s, collab = timed(lambda: SimilarItems(50).fit(matrix))
    attr_s, index = timed(lambda: build(fields, FIELDS, ["title"], 50, 10, 0.5,
                                        args.max_items_per_value))
    bundle = ModelBundle(
        user_ids=np.array([f"u{u}" for u in range(args.users)]),
        item_ids=np.array(list(fields)), user_factors=np.zeros((args.users, 8), np.float32),
        item_factors=rng.normal(size=(args.items, 8)).astype(np.float32), user_items=matrix,
        popular=np.arange(100), popular_scores=np.ones(100, np.float32),
        meta={"attributes": {**index.space.meta(), "cold_item_interactions": 0}},
        catalog=fields, similar=collab.matrix, attributes=index.arrays())
    state = RealtimeState()
    rec = Recommender("default", LoadedModel(bundle, "1"), state, {"click": 1.0}, seed=1)
    warm = np.flatnonzero(np.diff(collab.matrix.indptr) >= 10)
    asked = [f"i{i}" for i in rng.choice(warm, args.requests)]
    state.apply([{"event": "item", "id": f"e{n}", "item": f"new{n}", "timestamp": 0,
                  "fields": item_fields(int(rng.integers(0, 200)), int(rng.zipf(1.5) % 5000),
                                        rng)} for n in range(args.requests)])
    new = [f"new{n}" for n in range(args.requests)]
    serve(rec, "similar_items", asked[:50])  # warm both paths up
    collab_q = serve(rec, "similar_items", asked)
    attr_q = serve(rec, "similar_attributes", asked)
    new_q = serve(rec, "similar_attributes", new)
    collab_bytes = collab.matrix.data.nbytes + collab.matrix.indices.nbytes + (
        collab.matrix.indptr.nbytes)
    stats = index.stats()
    rows = [
        {"what": "build s", "similar_items": f"{collab_s:.2f}", "attributes": f"{attr_s:.2f}",
         "ratio": f"{attr_s / collab_s:.2f}x"},
        {"what": "index MB", "similar_items": f"{collab_bytes / 1e6:.1f}",
         "attributes": f"{stats['bytes'] / 1e6:.1f}",
         "ratio": f"{stats['bytes'] / collab_bytes:.2f}x"},
        {"what": "answer ms, trained item", "similar_items": f"{collab_q * 1e3:.3f}",
         "attributes": f"{attr_q * 1e3:.3f}", "ratio": f"{attr_q / collab_q:.2f}x"},
        {"what": "answer ms, new item (live fields)", "similar_items": "-",
         "attributes": f"{new_q * 1e3:.3f}", "ratio": f"{new_q / collab_q:.2f}x"},
    ]
    print(f"{args.items:,} items, {stats['terms']:,} terms, {args.interactions:,} "
          f"interactions, {args.requests:,} requests per row")
    print(table(rows, ["what", "similar_items", "attributes", "ratio"]))


if __name__ == "__main__":
    main()
