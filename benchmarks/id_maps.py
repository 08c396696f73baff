"""What a model's id maps cost a serving worker: a dict of ids against the sorted map
(`sluice.ids`) that large models get, in one run.

A bundle of N users and N items (ids like a shop's, factors of 8 so that the ids dominate) is
saved once; fresh processes load it (`ModelBundle.load`, as a serving worker does) with the
dict forced (`DICT_BELOW` above N) and with the sorted map, and report the load's wall time
and the growth of their private memory (RssAnon). Then one process times lookups through
each map: one id at a time (`get`, as a request's user), and 100 at once (`rows`, as a
request's exclusions or a ranking's items), hits and misses mixed.
`python benchmarks/id_maps.py [--ids 1000000]`
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import table

from sluice import ids
from sluice.bundle import ModelBundle

LOAD = """
import sys, time
from pathlib import Path
from sluice import ids
ids.DICT_BELOW = int(sys.argv[2])
from sluice.bundle import ModelBundle

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

before, start = anon(), time.perf_counter()
bundle = ModelBundle.load(Path(sys.argv[1]))
print(time.perf_counter() - start, (anon() - before) / 1024, type(bundle.item_index).__name__)
"""


def made(n: int, seed: int = 0) -> ModelBundle:
    rng = np.random.default_rng(seed)
    users = np.array([f"user-{v:09d}" for v in rng.permutation(n * 10)[:n]])
    items = np.array([f"sku-{v:08d}" for v in rng.permutation(n * 10)[:n]])
    rows = np.arange(n)
    user_items = sp.csr_matrix((np.ones(n, np.float32), (rows, rng.integers(0, n, n))),
                               shape=(n, n))
    return ModelBundle(user_ids=users, item_ids=items,
                       user_factors=rng.normal(size=(n, 8)).astype(np.float32),
                       item_factors=rng.normal(size=(n, 8)).astype(np.float32),
                       user_items=user_items, popular=np.arange(100),
                       popular_scores=np.ones(100, np.float32), meta={"tenant": "default"})


def load(directory: Path, dict_below: int) -> tuple[float, float, str]:
    done = subprocess.run([sys.executable, "-c", LOAD, str(directory), str(dict_below)],
                          check=True, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    seconds, mib, kind = done.stdout.split()
    return float(seconds), float(mib), kind


def lookups(bundle: ModelBundle, n: int) -> dict[str, tuple[float, float]]:
    """Microseconds per `get` and per `rows` of 100 ids, for each map of the item ids."""
    rng = np.random.default_rng(1)
    known = bundle.item_ids[rng.integers(0, n, 20_000)].tolist()
    keys = [k if j % 4 else k + "x" for j, k in enumerate(known)]  # a quarter misses
    out = {}
    items = bundle.item_ids
    for name, index in (("dict", ids.DictMap(items)),
                        ("sorted", ids.SortedMap(items, ids.sort_order(items)))):
        start = time.perf_counter()
        for key in keys:
            index.get(key)
        per_get = (time.perf_counter() - start) / len(keys) * 1e6
        start = time.perf_counter()
        for j in range(0, len(keys), 100):
            index.rows(keys[j:j + 100])
        per_rows = (time.perf_counter() - start) / (len(keys) / 100) * 1e6
        out[name] = (per_get, per_rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="users, and items")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bundle = made(args.ids)
        directory = bundle.save(Path(scratch) / "bundle")
        rows = []
        for _ in range(2):  # alternated, twice: the machine is shared
            for name, dict_below in (("dict", args.ids * 2), ("sorted", ids.DICT_BELOW)):
                seconds, mib, kind = load(directory, dict_below)
                rows.append({"map": f"{name} ({kind})", "load s": f"{seconds:.2f}",
                             "private MiB added": f"{mib:.0f}"})
        print(f"{args.ids:,} users and {args.ids:,} items, ids of 13-14 characters")
        print(table(rows, ["map", "load s", "private MiB added"]))
        timed = lookups(ModelBundle.load(directory), args.ids)
        print(table([{"map": name, "µs per get": f"{g:.2f}", "µs per rows(100)": f"{r:.1f}",
                      "vs dict (get, rows)": f"{g / timed['dict'][0]:.1f}x, "
                                             f"{r / timed['dict'][1]:.1f}x"}
                     for name, (g, r) in timed.items()],
                    ["map", "µs per get", "µs per rows(100)", "vs dict (get, rows)"]))


if __name__ == "__main__":
    main()
