"""What a bundle's `raw_log` meta costs on an object store: one raw-log object per group
commit, each a segment. The explicit record (every segment named with its bytes, as bundles
were written before) against the compact one (`sluice.intake.log_coverage`): the size of
`meta.json` as `ModelBundle.save` writes it, training's cost of making the record, and
serving's of loading it (`json.loads` of meta.json and `TrainedLog.of`, what `ModelBundle.load`
and `LoadedModel` do) and of the first lookup of each segment (a serving process replaying
the log looks each one up once).

The log: `--objects` objects from `--writers` writers (serving processes over time, each
starting its objects at increasing milliseconds), all loaded and built into the marts but for
the newest 20 (not loaded yet), 10 loaded again after the marts were built (unknown) and 5
older ones ingest's listing missed (gaps). Every answer of the compact record is checked
against the explicit one's.
`python benchmarks/raw_log_meta.py [--objects 1000000] [--writers 64]`
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluice.intake import log_positions  # noqa: E402
from sluice.intake.log_coverage import Coverage, compact  # noqa: E402
from sluice.serve.model import TrainedLog  # noqa: E402

T0 = 1_796_117_400_000


def make_log(objects: int, writers: int, seed: int = 7) -> tuple[dict, dict]:
    """(manifest rows: name -> (bytes, marts hold them), listing: name -> size)."""
    rng = random.Random(seed)
    ids = [f"ip-10-0-{w % 250}-{w // 250}-{rng.randrange(1 << 22)}-{rng.randrange(16**6):06x}"
           for w in range(writers)]
    listed: dict[str, int] = {}
    for n in range(objects):
        # objects in commit order; each writer's milliseconds increase
        listed[f"segment-{T0 + n:013d}-{ids[n % writers]}.jsonl"] = rng.randint(180, 4_000)
    names = list(listed)
    loaded = {name: (size, True) for name, size in listed.items()}
    for name in names[-20:]:
        del loaded[name]  # written since ingest last ran
    for name in names[-40:-30]:
        loaded[name] = (loaded[name][0], False)  # loaded again after the marts were built
    for name in rng.sample(names[: objects // 2], 5):
        del loaded[name]  # ingest's listing missed it while listing later ones
    return loaded, listed


def explicit(loaded: dict) -> dict[str, Any]:
    """The record as bundles wrote it before: every segment named."""
    return {"covered": dict(sorted((n, b) for n, (b, seen) in loaded.items() if seen)),
            "unknown": sorted(n for n, (_, seen) in loaded.items() if not seen)}


def _timed(fn, repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _meta_text(record: dict) -> str:
    return json.dumps({"cutoff_ms": T0, "raw_log": record}, indent=2, sort_keys=True)


def _load(text: str) -> TrainedLog:
    return TrainedLog.of(json.loads(text), T0)


def _first_lookups(names: list[str], text: str) -> float:
    """Seconds for one `after` per segment on a freshly loaded record (nothing cached)."""
    trained = _load(text)
    positions = [log_positions.position(name, 100) for name in names]
    start = time.perf_counter()
    for position in positions:
        trained.after(T0, position)
    return time.perf_counter() - start


def _peak_mib(text: str) -> float:
    tracemalloc.start()
    kept = _load(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del kept
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=64)
    args = parser.parse_args()
    loaded, listed = make_log(args.objects, args.writers)
    names = list(listed)
    made_old, old = _timed(lambda: explicit(loaded))
    made_new, new = _timed(lambda: compact(loaded, listed, immutable=True))
    old_text, new_text = _meta_text(old), _meta_text(new)
    named = len(new["covered"]) + len(new["unknown"]) + len(new["unloaded"])
    print(f"objects {args.objects:,}, writers {args.writers}; compact record: "
          f"{len(new['whole_through'])} prefixes, {named} segments named")
    a, b = _load(old_text), _load(new_text)
    assert all(a.after(t, p) == b.after(t, p) for name in names
               for p in (log_positions.position(name, 100),) for t in (T0 - 1, T0 + 1))
    assert Coverage.of(new) is not None
    load_old, _ = _timed(lambda: _load(old_text))
    load_new, _ = _timed(lambda: _load(new_text))
    look_old, look_new = _first_lookups(names, old_text), _first_lookups(names, new_text)
    rows = [("meta.json raw_log (bytes)", len(old_text), len(new_text)),
            ("training: make the record (s)", made_old, made_new),
            ("serving: read meta.json + TrainedLog.of (s)", load_old, load_new),
            ("serving: peak memory of that load (MiB)", _peak_mib(old_text),
             _peak_mib(new_text)),
            ("serving: first lookup of every segment (s)", look_old, look_new)]
    print("| | explicit (before) | compact | compact / explicit |")
    print("|---|---:|---:|---:|")
    for label, before, after in rows:
        fmt = "{:,}" if isinstance(before, int) else "{:.3f}"
        print(f"| {label} | {fmt.format(before)} | {fmt.format(after)} | "
              f"{after / before:.2g} |")


if __name__ == "__main__":
    main()
