"""Training speed: the `train` flow at 1M and 10M interactions, fit time vs everything else.

    python benchmarks/train_speed.py                    # 1M and 10M interactions, ALS
    python benchmarks/train_speed.py --sizes 200000 --algorithm bpr

Each size gets a fresh SLUICE_HOME whose warehouse holds a synthetic `marts.interactions`
(users in taste groups, Zipf-like item popularity, 90 days) and `marts.items`. The real
`train` flow runs twice on it: the first run has no champion, the second has one to download
and score (the same data, so the gate falls back to its logged metric). Fit is the family's
fit on the training part plus the refit on all data; overhead is everything else in the flow
run: loading the mart, split and matrices, evaluation of the model and popularity, champion
scoring, the similar-items index and bundle, MLflow logging and registration, the gate, and
Prefect itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table

PHASES = ("load", "matrix", "evaluate", "champion", "bundle", "track", "gate")


def synthetic(interactions: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) positions: about 50 interactions per user, 1 item per 200, users in 20
    taste groups, Zipf-like popularity inside a group."""
    users, items, groups = max(interactions // 50, 100), max(interactions // 200, 100), 20
    activity = rng.lognormal(0.0, 1.0, users)
    user = rng.choice(users, size=interactions, p=activity / activity.sum())
    per_group = items // groups
    rank = np.minimum(rng.zipf(1.3, size=interactions) - 1, per_group - 1)
    own = rng.random(interactions) < 0.8  # mostly the user's own taste group
    group = np.where(own, user % groups, rng.integers(0, groups, interactions))
    del own
    group *= per_group
    group += rank
    return user, group


def write_warehouse(path: Path, interactions: int, seed: int = 7) -> dict[str, int]:
    """A synthetic interactions mart (`synthetic`) over 90 days, one event in ten a purchase."""
    import duckdb

    rng = np.random.default_rng(seed)
    user, item = synthetic(interactions, rng)
    start = np.datetime64("2026-01-01T00:00:00", "ms").astype(np.int64)
    at = start + rng.integers(0, 90 * 86_400_000, interactions)
    kind = np.where(rng.random(interactions) < 0.1, "purchase", "click")
    frame = pd.DataFrame({"u": user, "i": item, "kind": kind, "at_ms": at})
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema marts").fetchall()
        con.register("generated", frame)
        con.execute("""
            create table marts.interactions as
            select 'default' as tenant, 'e' || row_number() over () as event_id,
                   'u' || u as user_id, 'i' || i as item_id, kind as interaction_type,
                   make_timestamp(at_ms * 1000) as event_at, null::double as event_value,
                   case kind when 'purchase' then 4.0 else 1.0 end as weight
            from generated""").fetchall()
        con.execute("""
            create table marts.items as
            select distinct 'default' as tenant, item_id, '{}' as fields,
                   null::varchar as category, null::varchar as brand, null::varchar as color,
                   null::double as price, timestamp '2026-01-01' as first_seen_at,
                   timestamp '2026-01-01' as updated_at
            from marts.interactions""").fetchall()
    finally:
        con.close()
    return {"users": int(len(np.unique(user))), "items": int(len(np.unique(item)))}


def run_flow(algorithm: str) -> tuple[dict, float]:
    from flows.train import train

    started = time.perf_counter()
    (result,) = train(tenant="default", algorithm=algorithm)
    return asdict(result), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--algorithm", default="als")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rows, phases = [], []
    for size in args.sizes:
        home = Path(tempfile.mkdtemp(prefix=f"sluice-speed-{size}-"))
        os.environ.update({
            "SLUICE_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "PREFECT_HOME": str(home / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        started = time.perf_counter()
        shape = write_warehouse(home / "warehouse.duckdb", size)
        generate_s = time.perf_counter() - started
        for attempt in ("first run (no champion)", "second run (champion scored)"):
            result, wall = run_flow(args.algorithm)
            t = result["timings"]
            fit = t["fit"] + t["refit"]
            rows.append({
                "interactions": f"{size:,}", "users x items": f"{shape['users']:,} x "
                f"{shape['items']:,}", "run": attempt, "fit s": f"{t['fit']:.1f}",
                "refit s": f"{t['refit']:.1f}", "flow wall s": f"{wall:.1f}",
                "overhead s": f"{wall - fit:.1f}", "overhead share": f"{(wall - fit) / wall:.0%}",
                "ndcg@10": f"{result['metrics']['ndcg_at_10']:.4f}"})
            phases.append({"interactions": f"{size:,}", "run": attempt,
                           **{p: f"{t.get(p, 0.0):.1f}" for p in PHASES},
                           "prefect+other": f"{wall - t['total']:.1f}"})
        print(f"{size:,} interactions generated in {generate_s:.1f} s under {home}",
              file=sys.stderr)
    print(f"train flow, algorithm {args.algorithm} (config defaults), "
          f"{os.cpu_count()} cores, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(table(rows, ["interactions", "users x items", "run", "fit s", "refit s",
                       "flow wall s", "overhead s", "overhead share", "ndcg@10"]))
    print("\nseconds per phase of the overhead")
    print(table(phases, ["interactions", "run", *PHASES, "prefect+other"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
