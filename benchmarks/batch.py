"""Batch recommendations for every user of a champion, against the raw block-GEMM + top-k floor.

    python benchmarks/batch.py                                  # 200k users x 50k items
    python benchmarks/batch.py --users 20000 --items 50000      # a quicker size

The champion is synthetic (random 64-factor ALS-like factors, 10 training items per user) and
has no precomputed heads, so the batch job scores every user with the block matrix product
(a trained champion's heads would let it skip that for users with no new events). Two
passes over the same users and the same block size, in the same process:

- floor: per block, one matrix product and a row-wise top-k (the faster of numpy's
  argpartition over the block and the per-row blocked top-n serving uses), nothing else;
- batch: `sluice.serve.batch.answer_job` over every user, 25 slots each: the head prefill
  (the same product, seen items masked, exact scores), the serving tiers per user, and the
  JSON Lines, Parquet and manifest written to a temporary folder.

Rate is users per second; peak memory is the resident set sampled every 20 ms during each
pass, above what the process held before it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table  # noqa: E402

from sluice.bundle import ModelBundle  # noqa: E402
from sluice.scoring import top_k_rows, top_n_blocked  # noqa: E402
from sluice.serve.answers import RecommendationRequest  # noqa: E402
from sluice.serve.batch import BatchJob, answer_job, block_rows  # noqa: E402
from sluice.serve.model import LoadedModel  # noqa: E402
from sluice.serve.realtime import RealtimeState  # noqa: E402
from sluice.serve.recommender import Recommender  # noqa: E402


def champion(users: int, items: int, factors: int, seed: int = 3) -> ModelBundle:
    rng = np.random.default_rng(seed)
    per_user = 10
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.integers(0, items, size=users * per_user)
    seen = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))
    seen.sum_duplicates()
    return ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(users)]),
        item_ids=np.array([f"i{i}" for i in range(items)]),
        user_factors=rng.normal(size=(users, factors)).astype(np.float32) / 4,
        item_factors=rng.normal(size=(items, factors)).astype(np.float32) / 4,
        user_items=seen, popular=np.arange(min(items, 1000)),
        popular_scores=np.linspace(1000, 1, min(items, 1000)).astype(np.float32),
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 0, "tenant": "default"})


class PeakRss:
    """The highest resident set seen while the block runs, sampled every 20 ms."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def floor(bundle: ModelBundle, k: int, block: int, per_row: bool) -> float:
    """Seconds for the product and a top-k of every user, block by block."""
    factors = np.ascontiguousarray(bundle.item_factors)
    started = time.perf_counter()
    for start in range(0, len(bundle.user_ids), block):
        scores = bundle.user_factors[start:start + block] @ factors.T
        if per_row:
            for row in scores:
                top_n_blocked(row, k)
        else:
            top_k_rows(scores, k)
    return time.perf_counter() - started


def run_batch(bundle: ModelBundle, k: int, block: int, out: Path) -> tuple[float, dict]:
    model = LoadedModel(bundle, "1", head_cache_size=1)
    rec = Recommender("default", model, RealtimeState(), {"click": 1.0}, seed=1)
    base = RecommendationRequest(num_results=k, context={})
    started = time.perf_counter()
    manifest = answer_job(rec, base, BatchJob(num_results=k, block_size=block), None, out)
    seconds = time.perf_counter() - started
    model.close()
    return seconds, manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--slots", type=int, default=25)
    parser.add_argument("--argpartition", action="store_true",
                        help="also time numpy's argpartition floor (5x slower here: off)")
    args = parser.parse_args()
    bundle = champion(args.users, args.items, args.factors)
    block = block_rows(args.items)
    users = len(bundle.user_ids)
    print(f"{users:,} users x {args.items:,} items x {args.factors} factors, {args.slots} slots,"
          f" blocks of {block} users, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}", flush=True)
    rows = []
    floors = [("floor: GEMM + per-row blocked top-n", True)]
    if args.argpartition:
        floors.append(("floor: GEMM + argpartition top-k", False))
    for name, per_row in floors:
        with PeakRss() as peak:
            seconds = floor(bundle, args.slots, block, per_row)
        rows.append({"pass": name, "seconds": seconds, "users/s": users / seconds,
                     "peak MiB": peak.mib})
        print(rows[-1], flush=True)
    best = max(r["users/s"] for r in rows)
    with tempfile.TemporaryDirectory() as tmp, PeakRss() as peak:
        seconds, manifest = run_batch(bundle, args.slots, block, Path(tmp) / "job")
        size = sum(f.stat().st_size for f in (Path(tmp) / "job").iterdir()) / 2**20
    assert manifest["counts"]["answered"] == users and manifest["counts"]["errors"] == 0
    assert manifest["counts"]["slots"] == users * args.slots
    rows.append({"pass": "batch job (sluice.serve.batch)", "seconds": seconds,
                 "users/s": users / seconds, "peak MiB": peak.mib})
    for row in rows:
        row["vs floor"] = row["users/s"] / best
    print(table(rows, ["pass", "seconds", "users/s", "peak MiB", "vs floor"]))
    print(f"output: {size:,.0f} MiB (JSON Lines + Parquet) for {manifest['counts']['slots']:,} "
          f"slots")


if __name__ == "__main__":
    main()
