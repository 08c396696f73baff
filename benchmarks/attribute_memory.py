"""A serving worker's memory for the attribute index: its arrays mapped from the bundle with
the terms' posting lists shipped in it, against the same index read as copies and transposed
at load (how bundles without `attr_term_*` are served), in the same run.

    python benchmarks/attribute_memory.py [--items 300000] [--workers 2]

The synthetic catalog of `benchmarks/attributes.py` (category, brand, price, tags, title) is
indexed once by `sluice.learn.attributes.build` and saved twice: as `ModelBundle.save` writes
it now, and without the posting lists, rewritten by plain `np.savez` so that no array maps.
For each layout, `--workers` processes load the bundle and build `AttributeNeighbours` at the
same time, as the workers of one server do, answer a new item from its live fields (scoring
through every posting list it touches), and report their memory from
`/proc/<pid>/smaps_rollup` while all of them are still alive: RSS, the private anonymous part,
PSS (shared pages divided among the processes mapping them) and the seconds the load took.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, table

from benchmarks.attributes import FIELDS, catalog
from sluice import npz
from sluice.bundle import ARRAYS, MAPPED
from sluice.learn.attributes import build
from tests.utils.models import synthetic_bundle

CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from sluice.bundle import ModelBundle
from sluice.serve.attributes import AttributeNeighbours
started = time.perf_counter()
bundle = ModelBundle.load({path!r})
index = AttributeNeighbours(bundle)
loaded = time.perf_counter() - started
found = index.neighbours("new", {fields!r}, 10, filtered=True)
assert found, "no neighbours"
print(f"{{loaded:.3f}}", flush=True)
sys.stdin.read()  # alive until the parent has read every worker's memory
"""


def memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value) / 1024
    return {"rss MiB": fields["Rss"], "private anon MiB": fields["Anonymous"],
            "pss MiB": fields["Pss"]}


def workers(path: Path, count: int, fields: dict) -> list[dict]:
    """`count` processes loading the bundle at once; each one's load time and memory."""
    script = CHILD.format(root=str(ROOT), path=str(path), fields=fields)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    try:
        seconds = [float(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
        return [{"load s": s, **memory_mib(p.pid)} for p, s in zip(procs, seconds, strict=True)]
    finally:
        for p in procs:
            p.communicate("")


def plain_savez(directory: Path) -> None:
    """The arrays rewritten by np.savez, shifted by a pad member until none of the mapped
    arrays happens to start aligned: read as copies, as before the aligned writer."""
    with np.load(directory / ARRAYS, allow_pickle=False) as a:
        arrays = {k: a[k] for k in a.files if not k.startswith("attr_term_")}
    for pad in range(1, 64):
        np.savez(directory / ARRAYS, _pad=np.zeros(pad, np.uint8), **arrays)
        if not any(npz.is_mapped(v) for v in npz.load(directory / ARRAYS, MAPPED).values()):
            return
    raise RuntimeError("no pad left every mapped array unaligned")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    items = catalog(args.items, rng)
    index = build(items, FIELDS, ["title"], neighbours=50)
    assert index is not None
    print(f"index of {args.items:,} items built in {time.perf_counter() - started:.1f} s: "
          f"{index.vectors.nnz:,} term cells, {index.neighbours.nnz:,} neighbour cells, "
          f"{len(index.space.terms):,} terms", flush=True)
    bundle = synthetic_bundle(items=1000, users=50, heads=0)
    bundle.attributes = index.arrays()
    bundle.meta["attributes"] = {**index.space.meta(), "cold_item_interactions": 5}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mapped = bundle.save(Path(tmp) / "mapped")
        copied = bundle.save(Path(tmp) / "copied")
        plain_savez(copied)
        for layout, path in (("mapped, posting lists shipped", mapped),
                             ("copied, transposed at load", copied)):
            # a new item with a trained item's fields: it shares terms with its neighbours
            for n, found in enumerate(workers(path, args.workers, items["i1"]), 1):
                rows.append({"layout": layout, "worker": n,
                             **{k: round(v, 2 if k == "load s" else 1) for k, v in found.items()}})
    print(table(rows, ["layout", "worker", "load s", "rss MiB", "private anon MiB", "pss MiB"]))


if __name__ == "__main__":
    main()
