"""Incremental dbt: a refresh after new events against a full refresh of the same warehouse.

    python benchmarks/incremental_dbt.py                        # 10M history + 1M new events
    python benchmarks/incremental_dbt.py --history 2000000 --new 200000

A synthetic history (benchmarks/ingest_dbt.py's traffic: rankings, served answers, clicks,
purchases, sessions that log in part-way) is ingested and built once. Then the new events
arrive: a later slice of the same traffic whose first days overlap the history (late events),
plus logins for sessions of the history (1 per 500 new events) that re-attribute their
earlier anonymous rows. Both are ingested, then timed in the same run on the same warehouse:
`dbt build` as the transform flow runs it (incremental), then `dbt build --full-refresh`.
Mart row counts must agree between the two; tests/warehouse/test_incremental.py compares
every row.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest_dbt import DAY_MS, START_MS, table, write_history
from sluice.intake.eventlog import EventLog
from sluice.settings import get_settings
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.transform import dbt_build

MARTS = ("interactions", "users", "items", "ranking_outcomes", "recommendation_events",
         "recommendation_performance", "slot_propensities", "data_sufficiency")


def write_logins(raw_dir: Path, sessions: int, count: int, users: int, seed: int) -> int:
    """`count` interactions naming a user for random sessions of the history, at new times."""
    rng = np.random.default_rng(seed)
    log = EventLog(raw_dir)
    picked = rng.choice(np.arange(1, sessions + 1), size=min(count, sessions), replace=False)
    log.append([{"event": "interaction", "id": f"login-{n}", "type": "click",
                 "timestamp": START_MS + 61 * DAY_MS, "tenant": "default",
                 "session": f"s{n}", "user": f"u{int(rng.integers(users))}",
                 "item": f"i{int(rng.integers(100))}"} for n in picked])
    log.close()
    return len(picked)


def timed_build(settings, home: Path, full_refresh: bool) -> dict:
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = dbt_build(settings.warehouse_path, home / "dbt", settings.dbt_vars(),
                       full_refresh=full_refresh)
    seconds, cpu_s = time.perf_counter() - started, _cpu_seconds() - cpu
    models = sum(n["seconds"] for n in result.nodes if n["node"].startswith("model."))
    tests = sum(n["seconds"] for n in result.nodes if n["node"].startswith("test."))
    return {"build_s": seconds, "cpu_s": cpu_s, "models_s": models, "tests_s": tests,
            "slowest": _slowest(result.nodes, "model.", 8) + "; tests: "
            + _slowest(result.nodes, "test.", 4)}


def _slowest(nodes: list[dict], kind: str, count: int) -> str:
    picked = sorted((n for n in nodes if n["node"].startswith(kind)), key=lambda n: -n["seconds"])
    return ", ".join(f"{n['node'].split('.')[2]} {n['seconds']:.1f}s" for n in picked[:count])


def mart_counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {m: con.execute(f"select count(*) from marts.{m}").fetchall()[0][0]
                for m in MARTS}


def measure(history: int, new: int, root: Path) -> list[dict]:
    home = root / f"home-{history}-{new}"
    home.mkdir(parents=True)  # a second run into the same log would double it
    settings = get_settings(home=home)
    users = max(history // 40, 10)
    old = write_history(home / "raw", history, users=users)
    ingest = Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir,
                      progress=lambda message: None)
    ingest.run()
    first = timed_build(settings, home, full_refresh=False)  # nothing built yet: everything
    print(f"history of {old['events']:,} built: {first}", file=sys.stderr, flush=True)

    logins = new // 500
    later = write_history(home / "raw", new - logins, seed=8,
                          start_ms=START_MS + 55 * DAY_MS, first_session=old["sessions"],
                          catalog=False, users=users)
    logins = write_logins(home / "raw", old["sessions"], logins, users, seed=9)
    started = time.perf_counter()
    report = Ingestor(settings.warehouse_path, settings.raw_dir, settings.landing_dir,
                      progress=lambda message: None).run()
    ingest_s = time.perf_counter() - started
    incremental = timed_build(settings, home, full_refresh=False)
    after_incremental = mart_counts(settings.warehouse_path)
    full = timed_build(settings, home, full_refresh=True)
    after_full = mart_counts(settings.warehouse_path)
    assert after_incremental == after_full, (after_incremental, after_full)
    common = {"history": old["events"], "new": later["events"] + logins,
              "new_loaded": report.rows_loaded, "new_ingest_s": ingest_s}
    return [common | {"build": "incremental", **incremental},
            common | {"build": "full refresh", **full}]


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the warehouse under this folder")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        rows = measure(args.history, args.new, args.keep or Path(tmp))
    incremental, full = rows
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
    print(f"{len(os.sched_getaffinity(0))} cores; peak dbt process RSS {peak:,.0f} MiB; "
          f"load average before/after: {load[0]:.1f} / {os.getloadavg()[0]:.1f}\n")
    print(table(rows, ["build", "history", "new", "new_loaded", "build_s", "cpu_s", "models_s",
                       "tests_s"]))
    print(f"\nincremental / full refresh: wall {incremental['build_s'] / full['build_s']:.2f}, "
          f"CPU {incremental['cpu_s'] / full['cpu_s']:.2f}, "
          f"models {incremental['models_s'] / full['models_s']:.2f}")
    for row in rows:
        print(f"  slowest ({row['build']}): {row['slowest']}")


if __name__ == "__main__":
    main()
