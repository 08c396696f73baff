"""Recall and time of faiss index layouts for a catalog pass, in process, at a million items.

The synthetic factors of `benchmarks/ann.py` (taste clusters, log-normal norms); queries are
fold-ins of trained histories (as `sluice.learn.candidates.fold_ins` takes them), the vectors
serving searches with for a user with new events. For each layout (faiss `index_factory`
strings, under inner product) and each number of cells probed: the mean recall@25 of the top
25 of `--candidates` found items, scored exactly as serving scores them, against the exact top 25
over every item, and the time of one search (one query at a time, one OpenMP thread).
`python benchmarks/ann_indexes.py [--items 1000000] [--layouts IVF4000,Flat IVF4000,SQ8]
[--probes 48 96 192 384] [--candidates 100 400]`
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table

from benchmarks.ann import clustered_bundle
from sluice.ann import RECALL_AT, exact_top, rescored
from tests.utils.models import bundle_fold_ins

LAYOUTS = ["IVF4000,Flat", "IVF4000,SQ8", "IVF4000,PQ64x4fsr", "IVF4000,PQ32x4fsr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--layouts", nargs="+", default=LAYOUTS)
    parser.add_argument("--probes", type=int, nargs="+", default=[48, 96, 192, 384])
    parser.add_argument("--candidates", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    bundle = clustered_bundle(args.items)
    factors = bundle.item_factors
    queries = bundle_fold_ins(bundle, args.queries).astype(np.float32)
    truth = [set(row.tolist()) for row in exact_top(factors, queries, RECALL_AT)]
    sample = factors[np.sort(np.random.default_rng(7).choice(
        len(factors), min(len(factors), 4000 * 64), replace=False))]
    rows = []
    for layout in args.layouts:
        index = faiss.index_factory(factors.shape[1], layout, faiss.METRIC_INNER_PRODUCT)
        started = time.perf_counter()
        index.train(sample)
        index.add(factors)
        built = time.perf_counter() - started
        for k in args.candidates:
            for probes in args.probes:
                params = faiss.SearchParametersIVF(nprobe=probes)
                hits, took = [], 0.0
                for query, best in zip(queries, truth, strict=True):
                    started = time.perf_counter()
                    found = index.search(query.reshape(1, -1), k, params=params)[1][0]
                    took += time.perf_counter() - started
                    top = rescored(factors, query, found[found >= 0], RECALL_AT)
                    hits.append(len(best & set(top)) / RECALL_AT)
                rows.append({"layout": layout, "candidates": k, "probes": probes,
                             "recall@25": float(np.mean(hits)), "worst": float(np.min(hits)),
                             "ms per search": took / len(queries) * 1000,
                             "build s": built})
                print(rows[-1], flush=True)
    print(table(rows, list(rows[0])))
    print(f"{args.items:,} items, {len(queries)} fold-ins; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
