"""Catalog passes through the approximate index at a million items, next to a bare endpoint.

A synthetic champion (N items x 64 factors shaped like a trained model's: items in taste
clusters, norms spread as popularity spreads them; 20,000 users) gets the index the train
flow builds (`sluice.ann`, `serving.ann` defaults; `--kinds hnsw ivf` and `--codes sq8 flat`
build, measure in process and serve one index of each). Every user has a click since training in
the raw log, so no precomputed head applies, and `ranking_cache_size: 0` keeps no head
either: every answer folds the user in and makes a catalog pass (the case of a new event
before every answer). wrk asks for 25 slots for random users; the bare FastAPI endpoint
returning the same JSON is measured before and after. "exact scan" serves the same model
with the index off (`serving.ann.min_items` above the catalog); the index row sets it to 1, so
that smaller `--items` runs use the index too. In process, before the
servers: each index's build time, and recall@25 of the index's answers against the exact
scan's for `--recall-users` users.
`python benchmarks/ann.py [--items 1000000] [--seconds 10] [--workers 1 2] [--kinds hnsw ivf]
[--codes sq8 flat] [--breadths 48 96] [--no-scan] [--no-serve]`
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import server, table, wrk

from benchmarks.serving import FACTORS, LUA, USERS, sluice_run
from sluice.ann import CODES, KINDS, Calibration, ItemIndex
from sluice.bundle import ModelBundle
from sluice.serve.answers import RecommendationRequest
from sluice.serve.model import LoadedModel
from sluice.serve.realtime import RealtimeState
from sluice.serve.recommender import Recommender
from sluice.settings.serving import AnnConfig
from tests.utils.models import calibrate_bundle

WEIGHTS = {"click": 1.0}


def clustered_bundle(items: int, seed: int = 0) -> ModelBundle:
    """Like tests/utils/models.clustered_bundle, at benchmark size and without a catalog."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, FACTORS)).astype(np.float32)
    item_factors = centres[rng.integers(0, len(centres), items)] * np.float32(0.1)
    item_factors += rng.normal(scale=0.05, size=(items, FACTORS)).astype(np.float32)
    item_factors *= rng.lognormal(0, 0.4, (items, 1)).astype(np.float32)
    user_factors = centres[rng.integers(0, len(centres), USERS)] + rng.normal(
        scale=0.5, size=(USERS, FACTORS)).astype(np.float32)
    rows = np.repeat(np.arange(USERS), 10)
    user_items = sp.csr_matrix((np.ones(len(rows), np.float32),
                                (rows, rng.integers(0, items, len(rows)))), shape=(USERS, items))
    user_items.sum_duplicates()
    return ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(USERS)]),
        item_ids=np.array([f"i{i}" for i in range(items)]),
        user_factors=user_factors.astype(np.float32), item_factors=item_factors,
        user_items=user_items, popular=np.arange(1000),
        popular_scores=np.linspace(1000, 1, 1000).astype(np.float32),
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 0, "algorithm": "als",
              "tenant": "default", "fold_in": "als"})


def clicks_since_training(items: int, seed: int = 1) -> list[dict]:
    """One click per user on a random item, after the model's cutoff."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    return [{"event": "interaction", "id": f"c{u}", "tenant": "default", "user": f"u{u}",
             "item": f"i{rng.integers(0, items)}", "type": "click", "timestamp": now}
            for u in range(USERS)]


def calibrated(bundle: ModelBundle, index: ItemIndex) -> tuple[ModelBundle, Calibration]:
    """The bundle with `index` calibrated as the train flow calibrates it (fold-ins of a
    sample of the users' trained histories, `serving.ann.recall_target`)."""
    with_index = dataclasses.replace(bundle, ann=index)
    calibration = calibrate_bundle(with_index)
    return dataclasses.replace(with_index, meta={**bundle.meta, "ann": calibration.meta()}), \
        calibration


def recall_in_process(bundles: dict[str, ModelBundle], events: list[dict],
                      users: int, breadths: list[int]) -> dict[str, dict[str, float]]:
    """For each index (at its calibrated breadth, and at each of `breadths`): recall@25 of
    its answers against the exact scan's, and the time of one answer through it (the exact
    scan's beside it, each timed over all the users in a loop of its own)."""
    state = RealtimeState()
    state.apply(events)
    bundle = next(iter(bundles.values()))
    exact = Recommender("default", LoadedModel(bundle, "1", 0, AnnConfig(
        min_items=len(bundle.item_ids) + 1)), state, WEIGHTS)
    recs = {f"{kind} {breadth or 'calibrated'}": Recommender(
        "default", LoadedModel(with_index, "1", 0, AnnConfig(
            min_items=1, probes=breadth, ef_search=breadth)), state, WEIGHTS)
        for kind, with_index in bundles.items() for breadth in [0, *breadths]}
    requests = [RecommendationRequest(user_id=f"u{u}", num_results=25) for u in range(users)]
    answers: dict[str, list[set[str]]] = {}
    times = {}
    # each recommender's answers in a loop of their own: an exact scan reads every factor
    # (256 MB at 1M x 64) and would leave the next index answer's lists out of the caches
    for name, rec in (("exact", exact), *recs.items()):
        started = time.perf_counter()
        answers[name] = [{s.item_id for s in rec.recommend(req).items} for req in requests]
        times[name] = time.perf_counter() - started
    recalls = {kind: [len(got & truth) / 25 for got, truth in zip(
        answers[kind], answers["exact"], strict=True)] for kind in recs}
    assert exact.model.paths["pass"] == users
    for rec in (*recs.values(), exact):
        assert rec is exact or rec.model.paths["ann"] == users
        rec.model.close()
    return {kind: {"recall@25": float(np.mean(recalls[kind])),
                   "min recall@25": float(np.min(recalls[kind])),
                   "answer via index ms": times[kind] / users * 1000,
                   "answer via exact scan ms": times["exact"] / users * 1000,
                   "breadth": recs[kind].model.ann_breadth} for kind in recs}


def served(bundles: dict[str, ModelBundle], events: list[dict],
           args: argparse.Namespace) -> None:
    """wrk against the bare endpoint, each index and the exact scan, with `args.workers`."""
    def bare() -> dict[str, float]:
        with server("benchmarks.bare_app:app", workers=args.workers) as base:
            wrk(base, LUA, 2, args.connections)  # warm-up: every worker started
            return wrk(base, LUA, args.seconds, args.connections)

    no_heads = {"ranking_cache_size": 0, "precomputed_candidates": 0}
    first = bare()
    index = {"min_items": 1}  # whatever the size; the bundle's calibrated breadth
    runs = [(f"sluice, {name} index", sluice_run(
        bundle, args, {"serving": {**no_heads, "ann": index}}, events=events)[0])
        for name, bundle in bundles.items()]
    if not args.no_scan:
        bundle = next(iter(bundles.values()))
        runs.append(("sluice, exact scan", sluice_run(bundle, args, {"serving": {
            **no_heads, "ann": {"min_items": args.items + 1}}}, events=events)[0]))
    last = bare()
    bare_rps = (first["rps"] + last["rps"]) / 2
    rows = [{"endpoint": name, "requests/s": r["rps"], "p50 ms": r["p50_ms"],
             "p99 ms": r["p99_ms"], "ratio vs bare": r["rps"] / bare_rps,
             "non-2xx": int(r["errors"])}
            for name, r in [("bare FastAPI (before)", first), *runs,
                            ("bare FastAPI (after)", last)]]
    print(f"{args.items:,} items x {FACTORS} factors, {USERS:,} users each with a click since "
          f"training, {args.connections} connections, {args.seconds}s each, {args.workers} "
          f"worker(s), 25 slots, no heads; load average {os.getloadavg()[0]:.1f}")
    print(table(rows, list(rows[0])), flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="uvicorn workers, both servers (a run for each)")
    parser.add_argument("--recall-users", type=int, default=300)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=[AnnConfig().kind],
                        help="indexes built, measured in process and served")
    parser.add_argument("--codes", nargs="+", choices=CODES, default=[AnnConfig().codes],
                        help="how the inverted file's lists hold items (an index of each)")
    parser.add_argument("--breadths", type=int, nargs="*", default=[],
                        help="fixed breadths (probes, efSearch) measured in process besides "
                             "the calibrated one; wrk serves the calibrated one")
    parser.add_argument("--no-scan", action="store_true", help="skip the exact scan row")
    parser.add_argument("--no-serve", action="store_true",
                        help="in process only: builds, recall and time per answer, no wrk")
    args = parser.parse_args()

    started = time.perf_counter()
    bundle = clustered_bundle(args.items)
    made = time.perf_counter() - started
    config, bundles, built = AnnConfig(), {}, {}
    for kind, codes in [(k, c) for k in args.kinds for c in (args.codes if k == "ivf" else
                                                              ["flat"])]:
        name = f"{kind}/{codes}"
        started = time.perf_counter()
        index = ItemIndex.build(bundle.item_factors, kind, config.lists, config.m,
                                config.ef_construction, codes)
        built[name] = time.perf_counter() - started
        started = time.perf_counter()
        bundles[name], calibration = calibrated(bundle, index)
        print(f"{name} index built in {built[name]:.1f} s, calibrated in "
              f"{time.perf_counter() - started:.1f} s: {calibration.meta()}", flush=True)
    events = clicks_since_training(args.items)
    recall = recall_in_process(bundles, events, args.recall_users, args.breadths)

    # the exact scan served once: it only shows the gap
    for n, workers in enumerate([] if args.no_serve else args.workers):
        served(bundles, events, argparse.Namespace(**{**vars(args), "workers": workers,
                                                      "no_scan": args.no_scan or n > 0}))
    print()
    rows = [{"items": args.items, "index": bundles[name.split()[0]].ann.describe(), **values,
             "index build s": built[name.split()[0]]} for name, values in recall.items()]
    print(table(rows, list(rows[0])))
    print(f"synthetic model {made:.1f} s; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
