"""Memory of a server's workers at a million items: the bundle's arrays mapped or copied.

The synthetic champion of `benchmarks/ann.py` (N items x 64 factors, 20,000 users, the
8-bit inverted file the train flow builds, calibrated) is served by the real app with
`--workers` uvicorn workers twice in one run: once registered as `ModelBundle.save` writes it
(each large array's bytes aligned, so `sluice.npz` maps them read-only and the workers share
one copy), once with the same arrays rewritten by plain `np.savez` (as bundles were written
before: read into each worker as copies). After wrk has warmed every worker with answers
that fold users in and search the index (every user has a click since training), each
worker's memory is read from `/proc/<pid>/smaps_rollup`: RSS, its private anonymous part,
PSS (shared pages divided among the processes mapping them) and the peak RSS (VmHWM, which
includes what loading the model needed for a moment).
`python benchmarks/serving_memory.py [--items 1000000] [--workers 2] [--seconds 10]`
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import api_key, server_process, table, wrk

from benchmarks.ann import calibrated, clicks_since_training, clustered_bundle
from benchmarks.serving import LUA, _home
from sluice import npz
from sluice.ann import ItemIndex
from sluice.bundle import MAPPED, ModelBundle


def _plain_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Members wherever np.savez puts them, shifted by a leading pad member until none of
    the large arrays happens to start aligned (which would map it): read as copies."""
    for pad in range(1, 64):
        np.savez(path, _pad=np.zeros(pad, np.uint8), **arrays)
        if not any(npz.is_mapped(v) for v in npz.load(path, MAPPED).values()):
            return
    raise RuntimeError("no pad left every large array unaligned")


def _memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    peak = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status")
                .read_text().splitlines() if line.startswith("VmHWM:"))
    return {"rss MiB": fields["Rss"], "private anon MiB": fields["Anonymous"],
            "pss MiB": fields["Pss"], "peak rss MiB": peak}


def measure(bundle: ModelBundle, layout: str, args: argparse.Namespace) -> list[dict]:
    events = clicks_since_training(args.items)
    saved = npz.save
    if layout == "copied":
        npz.save = _plain_savez  # type: ignore[assignment]  # ModelBundle.save calls it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env, _ = _home(Path(tmp), bundle, {"serving": {
                "ranking_cache_size": 0, "precomputed_candidates": 0,
                "ann": {"min_items": 1}}}, None, None, events)
            npz.save = saved
            with server_process("serving.main:app", env=env, workers=args.workers,
                                ready_path="/ready") as (base, proc):
                key = api_key("read")
                result = wrk(base, LUA, args.seconds, args.connections, key=key)
                workers = [c for c in psutil.Process(proc.pid).children()  # not the
                           if "spawn_main" in " ".join(c.cmdline())]  # resource tracker
                rows = [{"layout": layout, "worker": n + 1, **_memory_mib(w.pid),
                         "requests/s": result["rps"]} for n, w in enumerate(workers)]
    finally:
        npz.save = saved
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    bundle = clustered_bundle(args.items)
    bundle, calibration = calibrated(bundle, ItemIndex.build(bundle.item_factors))
    print(f"{args.items:,} items x {bundle.item_factors.shape[1]} factors, index "
          f"{bundle.ann.describe() if bundle.ann else '-'}, breadth {calibration.breadth}; "
          f"item factors {bundle.item_factors.nbytes / 2**20:.0f} MiB, user factors "
          f"{bundle.user_factors.nbytes / 2**20:.0f} MiB", flush=True)
    rows = [row for layout in ("mapped", "copied") for row in measure(bundle, layout, args)]
    print(table(rows, list(rows[0])))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
