"""Raw log -> DuckDB raw.* (ingest) -> marts (dbt build): throughput at growing sizes.

    python benchmarks/ingest_dbt.py                 # 1M and 5M events
    python benchmarks/ingest_dbt.py --sizes 200000 1000000

Each size gets a fresh SLUICE_HOME under a temporary folder: a synthetic history is written to
the raw event log in the internal format (as serving's intake writes it), then ingest and
`dbt build` run the same code as the flows and are timed; so is a second ingest with nothing
new (`again`: what a scheduled run costs when no event came, against the first load's CPU).
The history has the shape of real traffic: item and user events, rankings and served
recommendation answers with clicks and purchases pointing at them, anonymous sessions that log
in part-way, and, to keep validation and dedup honest, 0.05% invalid events and 0.1% replayed ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluice.intake.eventlog import EventLog
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
SOURCES = ["model_personalized", "model_non_personalized", "model_fallback", "fallback"]
BATCH = 20_000


def write_history(raw_dir: Path, events: int, seed: int = 7, start_ms: int = START_MS,
                  first_session: int = 0, catalog: bool = True,
                  users: int | None = None) -> dict[str, int]:
    """About `events` internal-format events appended to the raw log; returns what was written
    (`sessions`: the last session number used). A later slice of the same history: a later
    start_ms, first_session past the earlier slice's, catalog=False and the same users."""
    rng = np.random.default_rng(seed)
    users, items = users or max(events // 40, 10), max(events // 100, 20)
    log = EventLog(raw_dir)
    written = {"events": 0, "invalid": 0, "replayed": 0}
    batch: list[dict] = []

    def emit(event: dict) -> None:
        batch.append(event)
        if len(batch) >= BATCH:
            flush()

    def flush() -> None:
        log.append(batch)
        written["events"] += len(batch)
        batch.clear()

    for i in range(items if catalog else 0):
        emit({"event": "item", "id": f"item-{i}", "timestamp": START_MS - DAY_MS,
              "tenant": "default", "item": f"i{i}",
              "fields": {"category": f"c{i % 20}", "brand": f"b{i % 60}",
                         "price": round(5 + (i * 7.3) % 200, 2), "tags": [f"t{i % 40}"]}})
    for u in range(0, users if catalog else 0, 2):
        emit({"event": "user", "id": f"user-{u}", "timestamp": START_MS - DAY_MS,
              "tenant": "default", "user": f"u{u}", "fields": {"country": "de"}})
    popular = np.minimum(rng.pareto(1.2, events) * items / 20, items - 10).astype(np.int64)
    draws = iter(popular)
    session = first_session
    while written["events"] + len(batch) < events:
        session += 1
        _session(rng, session, users, draws, emit, written, start_ms)
    flush()
    log.close()
    return written | {"sessions": session}


def _session(rng, session: int, users: int, draws, emit, written: dict[str, int],
             start_ms: int = START_MS) -> None:
    user = f"u{int(rng.integers(users))}"
    mode = rng.random()
    login_after = 0 if mode > 0.2 else (99 if mode < 0.05 else int(rng.integers(1, 3)))
    start = start_ms + int(rng.random() * 60 * DAY_MS)
    for r in range(int(rng.integers(1, 5))):
        ts = start + r * 60_000
        who = {"session": f"s{session}"} | ({"user": user} if r >= login_after else {})
        first = int(next(draws, 0))
        shown = [f"i{first + k}" for k in range(10)]
        list_id = f"r{session}-{r}"
        if rng.random() < 0.3:  # an answer served by the API, logged back by serving
            sources = SOURCES[:2] if rng.random() < 0.8 else SOURCES[2:]
            emit({"event": "recommendation", "id": list_id, "timestamp": ts,
                  "tenant": "default", **who,
                  "items": [{"id": item, "score": 1.0 - k / 10, "position": k + 1,
                             "source": sources[k // 5]} for k, item in enumerate(shown)],
                  "fields": _counts(sources)})
        else:
            emit({"event": "ranking", "id": list_id, "timestamp": ts, "tenant": "default",
                  **who, "items": [{"id": item} for item in shown]})
        clicked = np.flatnonzero(rng.random(10) < 0.35 / np.log2(np.arange(2, 12)))
        for k in clicked:
            base = {"timestamp": ts + 1_000 * (int(k) + 1), "tenant": "default", **who,
                    "item": shown[k], "ranking": list_id}
            click = {"event": "interaction", "id": f"c{session}-{r}-{k}", "type": "click",
                     **base}
            emit(click)
            if rng.random() < 0.2:
                emit({"event": "interaction", "id": f"p{session}-{r}-{k}", "type": "purchase",
                      "value": round(5 + 200 * rng.random(), 2), **base})
            if rng.random() < 0.001:  # a client retry that reached the log twice
                emit(click)
                written["replayed"] += 1
        if rng.random() < 0.0015:  # a client bug: an interaction without an item
            emit({"event": "interaction", "id": f"bad{session}-{r}", "timestamp": ts,
                  "tenant": "default", **who, "type": "click"})
            written["invalid"] += 1


def _counts(sources: list[str]) -> dict:
    counts = dict.fromkeys(
        ["model_personalized_count", "model_non_personalized_count", "model_fallback_count",
         "fallback_count"], 0)
    for source in sources:
        counts[f"{source}_count"] += 5
    personalized = counts["model_personalized_count"]
    non_personalized = counts["model_non_personalized_count"] + counts["model_fallback_count"]
    return {"template": "personalized", "model_version": "1", **counts,
            "personalized_count": personalized, "non_personalized_count": non_personalized,
            "total": personalized + non_personalized + counts["fallback_count"]}


def measure(events: int, root: Path) -> dict:
    home = root / f"home-{events}"
    home.mkdir(parents=True)  # a second run into the same log would double it
    started = time.perf_counter()
    written = write_history(home / "raw", events)
    generate_s = time.perf_counter() - started
    settings = get_settings(home=home)

    started, cpu = time.perf_counter(), _cpu_seconds()
    report = Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir,
                      progress=lambda message: None).run()
    ingest_s, ingest_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu
    expected = written["events"] - written["invalid"] - written["replayed"]
    assert report.rows_loaded == expected, (report.summary(), written)
    assert report.rows_quarantined == written["invalid"], (report.summary(), written)

    started, cpu = time.perf_counter(), _cpu_seconds()  # nothing new: what a no-op run costs
    again = Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir,
                     progress=lambda message: None).run()
    again_s, again_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu
    assert again.rows_loaded == 0, again.summary()

    started, cpu = time.perf_counter(), _cpu_seconds()
    result = dbt_build(settings.warehouse_path, home / "dbt", settings.dbt_vars())
    dbt_s, dbt_cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu
    slowest = sorted(result.nodes, key=lambda n: -n["seconds"])[:3]
    return {
        "events": written["events"], "segments": len(report.files),
        "generate_s": generate_s, "ingest_s": ingest_s,
        "ingest_events_per_s": written["events"] / ingest_s, "ingest_cpu_s": ingest_cpu_s,
        "again_s": again_s, "again_cpu_x": again_cpu_s / ingest_cpu_s,
        "dbt_build_s": dbt_s, "dbt_cpu_s": dbt_cpu_s,
        "end_to_end_s": ingest_s + dbt_s,
        "warehouse_mib": settings.warehouse_path.stat().st_size / 2**20,
        "slowest_nodes": ", ".join(f"{n['node'].split('.')[2]} {n['seconds']:.1f}s"
                                   for n in slowest),
    }


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: steadier than wall time on a
    shared machine."""
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(value) -> str:
        if isinstance(value, float) and value < 0.1:
            return f"{value:.4f}"
        if isinstance(value, float):
            return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    widths = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns),
             "-|-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(fmt(r[c]).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--keep", type=Path, help="keep the warehouses under this folder")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rows, load = [], os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        root = args.keep or Path(tmp)
        for size in args.sizes:
            rows.append(measure(size, root))
            print(f"{size:,} events done: {rows[-1]}", file=sys.stderr, flush=True)
    first = rows[0]
    for row in rows:
        scale = row["events"] / first["events"]
        row["events_x"] = scale
        row["ingest_s_x"] = row["ingest_s"] / first["ingest_s"]
        row["dbt_build_s_x"] = row["dbt_build_s"] / first["dbt_build_s"]
        row["cpu_x"] = ((row["ingest_cpu_s"] + row["dbt_cpu_s"])
                        / (first["ingest_cpu_s"] + first["dbt_cpu_s"]))
    cpus = len(os.sched_getaffinity(0))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
    print(f"ingest + dbt build on {cpus} cores; peak dbt process RSS {peak:,.0f} MiB\n")
    print(f"load average before/after: {load[0]:.1f} / {os.getloadavg()[0]:.1f}\n")
    print(table(rows, ["events", "segments", "ingest_s", "ingest_events_per_s", "ingest_cpu_s",
                       "again_s", "again_cpu_x", "dbt_build_s", "dbt_cpu_s", "end_to_end_s",
                       "events_x", "ingest_s_x", "dbt_build_s_x", "cpu_x", "warehouse_mib"]))
    print("\nslowest dbt nodes:")
    for row in rows:
        print(f"  {row['events']:,}: {row['slowest_nodes']}")


if __name__ == "__main__":
    main()
