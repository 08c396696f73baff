"""Training at scale: one tenant's default model fitted at 5M and 50M interactions, with its
wall time, time per iteration and peak memory, and the 50M / 5M ratios from the same run.

    python benchmarks/train_scale.py                          # 5M, then 50M
    python benchmarks/train_scale.py --sizes 5000000 20000000 --device auto

Each size runs in a child process of its own, so the peak RSS (getrusage) is that size's
alone. The child draws the interactions with `train_speed.synthetic` (about 50 per user, one
item per 200 interactions, 20 taste groups, Zipf-like popularity, one in ten a purchase at
weight 4) straight into a users x items CSR matrix (duplicates summed), as
`sluice.learn.matrix.build` would from the mart, without the mart: at 50M the string ids of
a pandas frame would cost more memory than the model. Then it fits the configured family
with the embedded config's parameters (`config/sluice.yaml`), through `make_model`, as the
train flow does, timing each iteration. `OPENBLAS_NUM_THREADS=1`; implicit's own threads
use every core, as in the train flow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table

MIB = 1024 * 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def matrix(interactions: int, seed: int = 7):
    """The synthetic users x items confidence matrix (float32 CSR, duplicates summed)."""
    import numpy as np
    import scipy.sparse as sp
    from train_speed import synthetic

    rng = np.random.default_rng(seed)
    user, item = synthetic(interactions, rng)
    user, item = user.astype(np.int32), item.astype(np.int32)  # halves the COO copy
    weight = np.where(rng.random(interactions) < 0.1, 4.0, 1.0).astype(np.float32)
    shape = (int(user.max()) + 1, int(item.max()) + 1)
    coo = sp.coo_matrix((weight, (user, item)), shape=shape)
    del user, item, weight
    return coo.tocsr()


def one(size: int, algorithm: str, device: str) -> dict:
    """Runs in the child: generate, fit, report as one JSON line."""
    from sluice.learn.models import make_model, on_gpu
    from sluice.settings import DEFAULT_CONFIG, load_app_config

    params = load_app_config(DEFAULT_CONFIG).model.params(algorithm)
    if "device" in params:
        params["device"] = device
    started = time.perf_counter()
    user_items = matrix(size)
    generate_s = time.perf_counter() - started
    generated_rss = peak_rss_mib()
    model = make_model(algorithm, **params)
    laps: list[float] = []
    cpu_before, started = cpu_seconds(), time.perf_counter()
    if algorithm == "als":
        model.fit(user_items, callback=lambda _i, seconds, _loss: laps.append(seconds))
    else:
        model.fit(user_items)
    fit_s = time.perf_counter() - started
    matrix_mib = (user_items.data.nbytes + user_items.indices.nbytes
                  + user_items.indptr.nbytes) / MIB
    factors_mib = (model.user_factors.nbytes + model.item_factors.nbytes) / MIB
    return {"size": size, "nnz": int(user_items.nnz), "users": user_items.shape[0],
            "items": user_items.shape[1], "generate_s": generate_s, "fit_s": fit_s,
            "fit_cpu_s": cpu_seconds() - cpu_before, "laps": laps,
            "matrix_mib": matrix_mib, "factors_mib": factors_mib,
            "generated_rss_mib": generated_rss, "peak_rss_mib": peak_rss_mib(),
            "params": params, "gpu": on_gpu(device, algorithm) if "device" in params else False,
            "load": os.getloadavg()}


def run_child(size: int, algorithm: str, device: str) -> dict:
    command = [sys.executable, __file__, "--one", str(size), "--algorithm", algorithm,
               "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{size:,} interactions failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(r: dict) -> dict:
    laps = r["laps"] or [r["fit_s"]]
    return {"interactions": f"{r['size']:,}", "nnz (summed)": f"{r['nnz']:,}",
            "users x items": f"{r['users']:,} x {r['items']:,}",
            "generate s": f"{r['generate_s']:.1f}", "fit s": f"{r['fit_s']:.1f}",
            "fit CPU s": f"{r['fit_cpu_s']:.1f}",
            "s/iteration (median, min-max)":
                f"{statistics.median(laps):.2f} ({min(laps):.2f}-{max(laps):.2f})",
            "matrix MiB": f"{r['matrix_mib']:,.0f}", "factors MiB": f"{r['factors_mib']:,.0f}",
            "RSS after generating MiB": f"{r['generated_rss_mib']:,.0f}",
            "peak RSS MiB": f"{r['peak_rss_mib']:,.0f}",
            "load avg (1 min)": f"{r['load'][0]:.1f}"}


def ratios(big: dict, small: dict) -> dict:
    def median(r: dict) -> float:
        return statistics.median(r["laps"] or [r["fit_s"]])

    return {"nnz (summed)": f"{big['nnz'] / small['nnz']:.1f}x",
            "fit s": f"{big['fit_s'] / small['fit_s']:.1f}x",
            "fit CPU s": f"{big['fit_cpu_s'] / small['fit_cpu_s']:.1f}x",
            "s/iteration (median, min-max)": f"{median(big) / median(small):.1f}x",
            "peak RSS MiB": f"{big['peak_rss_mib'] / small['peak_rss_mib']:.1f}x"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000_000, 50_000_000])
    parser.add_argument("--algorithm", default="als")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's size
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.one:
        print(json.dumps(one(args.one, args.algorithm, args.device)))
        return 0
    results = []
    for size in args.sizes:
        results.append(run_child(size, args.algorithm, args.device))
        print(json.dumps(results[-1]), file=sys.stderr)
    rows = [row(r) for r in results]
    if len(results) > 1:
        rows.append({**ratios(results[-1], results[0]), "interactions":
                     f"ratio {results[-1]['size']:,} / {results[0]['size']:,}"})
    print(f"{args.algorithm} fit, params {results[0]['params']}, "
          f"on {'GPU' if results[0]['gpu'] else 'CPU'}, {os.cpu_count()} cores, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
