"""What a model's catalog costs a serving worker: the catalog's text read into a dict of
dicts (as bundles were read before `catalog.npz`) against its columns mapped
(`sluice.item_fields`), in one run.

A catalog of N items, each with the fields of a shop's catalog (a category of 500, a brand of
3,000, a price, a stock flag, tags and, for half the items, a short title), is written once
both ways; fresh processes load each (alternated, twice) and report the load's wall time and
the growth of their private memory (RssAnon). Then one process times, for each form: reading
one item's fields (as a filter's predicate or an item's metadata do), and the mask of a filter
over every model item the first time serving meets that filter (it is kept after).
`python benchmarks/item_fields.py [--items 1000000]`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import table

from sluice.filters import allowed, parse_conditions
from sluice.item_fields import ItemFields

LOAD = """
import json, sys, time
from pathlib import Path
from sluice.item_fields import ItemFields

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

before, start = anon(), time.perf_counter()
if sys.argv[2] == "text":  # as ModelBundle.load read catalog.jsonl before the columns
    catalog = {}
    with open(sys.argv[1] + "/catalog.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            catalog[row["item_id"]] = row["fields"]
else:
    catalog = ItemFields.load(Path(sys.argv[1]) / "catalog.npz")
print(time.perf_counter() - start, (anon() - before) / 1024)
"""
FILTER = [{"field": "category", "op": "in", "value": ["c-1", "c-7", "c-30"]},
          {"field": "price", "op": "lt", "value": 40}]


def made(n: int, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    category, brand = rng.integers(0, 500, n), rng.integers(0, 3000, n)
    price, stock = np.round(rng.random(n) * 100, 2), rng.random(n) < 0.7
    catalog = {}
    for i in range(n):
        fields = {"category": f"c-{category[i]}", "brand": f"brand-{brand[i]}",
                  "price": float(price[i]), "in_stock": bool(stock[i]),
                  "tags": ["sale", "new"] if i % 5 == 0 else ["core"]}
        if i % 2:
            fields["title"] = f"Item number {i} in its colour"
        catalog[f"sku-{i:08d}"] = fields
    return catalog


def load(directory: Path, form: str) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", LOAD, str(directory), form], check=True,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    seconds, mib = done.stdout.split()
    return float(seconds), float(mib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        catalog = made(args.items)
        start = time.perf_counter()
        with open(directory / "catalog.jsonl", "w") as handle:
            for item_id, fields in catalog.items():
                handle.write(json.dumps({"item_id": item_id, "fields": fields}) + "\n")
        text_s = time.perf_counter() - start
        start = time.perf_counter()
        ItemFields.of(catalog).save(directory / "catalog.npz")
        columns_s = time.perf_counter() - start
        sizes = {form: (directory / name).stat().st_size / 2**20
                 for form, name in (("text", "catalog.jsonl"), ("columns", "catalog.npz"))}
        rows = []
        for _ in range(2):  # alternated, twice: the machine is shared
            for form in ("text", "columns"):
                seconds, mib = load(directory, form)
                rows.append({"form": form, "load s": f"{seconds:.2f}",
                             "private MiB added": f"{mib:.0f}",
                             "file MiB": f"{sizes[form]:.0f}",
                             "written in s": f"{text_s if form == 'text' else columns_s:.1f}"})
        print(f"{args.items:,} items, 5-6 fields each")
        print(table(rows, ["form", "load s", "private MiB added", "file MiB", "written in s"]))

        columns = ItemFields.load(directory / "catalog.npz")
        rng = np.random.default_rng(1)
        keys = [f"sku-{i:08d}" for i in rng.integers(0, args.items, 20_000)]
        rules = parse_conditions(FILTER)
        model_ids = np.array(list(catalog))
        timed = []
        for form, fields in (("text", catalog), ("columns", columns)):
            start = time.perf_counter()
            for key in keys:
                fields.get(key, {})
            per_get = (time.perf_counter() - start) / len(keys) * 1e6
            start = time.perf_counter()
            if form == "text":  # as LoadedModel.item_mask built it before the columns
                mask = np.fromiter((allowed(rules, catalog.get(i, {}), set())
                                    for i in model_ids.tolist()), dtype=bool)
            else:
                mask = columns.mask(rules, model_ids)
            timed.append({"form": form, "µs per item's fields": f"{per_get:.1f}",
                          "new filter's mask s": f"{time.perf_counter() - start:.2f}",
                          "items passing": f"{int(mask.sum()):,}"})
        print(table(timed, ["form", "µs per item's fields", "new filter's mask s",
                            "items passing"]))


if __name__ == "__main__":
    main()
