"""Decisions you can trust: MovieLens-100k through the landing folder in the Personalize CSV
schema, trained, tuned and gated by the real flows, every figure with its interval.

    python benchmarks/quality.py                       # both protocols, 240 s of ALS tuning
    python benchmarks/quality.py --protocols per_user --budget 60
    python benchmarks/quality.py --http only           # only the answers read through the API

MovieLens-100k ships inside the `recbole` wheel (recbole/dataset_example/ml-100k/), fetched
with `pip download --no-deps recbole` into ~/.cache/sluice and read as a zip (recbole is
never installed, the data never committed). Each rating becomes one row of an interactions
CSV (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE=rating, EVENT_VALUE=the rating) and each movie
one row of an items CSV, both dropped in $SLUICE_HOME/landing. Every rating is an interaction
(weight 1): the implicit-feedback full-ranking setting of the published results.

Per protocol, in a fresh SLUICE_HOME (one process each, so settings start clean): the
`pipeline` flow (ingest -> dbt build -> train ALS with the config defaults, gated), `train`
for popularity and EASE, then `tune` for ALS (Optuna within --budget seconds) and for EASE,
each through the same gate. Scores are the runs' own: every item ranked, the user's training
items excluded; intervals are the runs' bootstrap intervals over users (95%, 1,000 resamples,
seeded), lifts resampled in pairs with popularity.

Through the HTTP API (`--http`, on by default; benchmarks/quality_http.py), per protocol in
another fresh SLUICE_HOME: the same split made here, only the training part landed, the
`pipeline` flow's champion served by a real uvicorn and asked for 10 slots for every
evaluated user; those answers are scored with the same metric code, beside the served bundle
scored offline on the same users (they must agree) and popularity.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import table  # noqa: E402
from movielens import fetch_wheel, read_movielens  # noqa: E402

PROTOCOLS = {"leave_last_out": {"protocol": "leave_last_out", "leave_out": 1},
             "per_user": {"protocol": "per_user", "holdout_fraction": 0.2},
             "time": {"protocol": "time", "holdout_fraction": 0.1}}


def personalize_csv(ratings: pd.DataFrame, movies: pd.DataFrame, landing: Path) -> str:
    """The two CSVs; timestamps untouched unless the intake refuses them (then say so)."""
    from sluice.intake.tabular import validate

    landing.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"USER_ID": "u" + ratings["user_id"].astype(str),
                          "ITEM_ID": "i" + ratings["item_id"].astype(str),
                          "TIMESTAMP": ratings["timestamp"].astype("int64"),
                          "EVENT_TYPE": "rating", "EVENT_VALUE": ratings["rating"].astype(float)})
    _, _, refused = validate(frame.head(1000).copy())
    note = "timestamps untouched (epoch seconds)"
    if refused:  # 9-digit epoch seconds (1997-98) refused by the TIMESTAMP range check
        shift = -(-(10**9 - int(frame["TIMESTAMP"].min())) // 86_400) * 86_400
        frame["TIMESTAMP"] += shift
        note = (f"timestamps shifted by {shift // 86_400:,} days: the intake refused the "
                f"9-digit epoch seconds ({next(iter(refused.values()))}); order and gaps kept")
    frame.to_csv(landing / "ml-100k-interactions.csv", index=False)
    genres = movies["genres"].fillna("unknown").astype(str).str.split().str[0]
    pd.DataFrame({"ITEM_ID": "i" + movies["item_id"].astype(str), "CATEGORY": genres,
                  "TITLE": movies["title"].astype(str)}).to_csv(
        landing / "ml-100k-items.csv", index=False)
    return note


def write_config(path: Path, protocol: str) -> None:
    config = yaml.safe_load((ROOT / "config" / "sluice.yaml").read_text())
    config["events"]["weights"] = {"rating": 1.0}
    config["evaluation"].update(PROTOCOLS[protocol])
    config["trackers"] = []
    path.write_text(yaml.safe_dump(config))


def fresh_home(protocol: str, kind: str) -> Path:
    """A new SLUICE_HOME with the benchmark's config, made this process's environment."""
    home = Path(tempfile.mkdtemp(prefix=f"sluice-quality-{kind}-{protocol}-"))
    write_config(home / "sluice.yaml", protocol)
    os.environ.update({
        "SLUICE_HOME": str(home), "SLUICE_CONFIG": str(home / "sluice.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"})  # a busy machine
    return home


def one_http(protocol: str, cache: Path, out: Path) -> None:
    """The champion of the training part, asked through a real uvicorn (quality_http)."""
    import quality_http

    ratings, movies = read_movielens(fetch_wheel(cache))
    home = fresh_home(protocol, "http")
    found = quality_http.run(ratings, movies, PROTOCOLS[protocol], home, personalize_csv)
    out.write_text(json.dumps({"protocol": protocol, **found}, default=_plain))


def _plain(value: object) -> object:
    return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)


def one(protocol: str, budget: float, cache: Path, out: Path) -> None:
    """Everything for one protocol, in this process; results as JSON in `out`."""
    ratings, movies = read_movielens(fetch_wheel(cache))
    home = fresh_home(protocol, "flows")
    note = personalize_csv(ratings, movies, home / "landing")
    from flows.pipeline import pipeline
    from flows.train import train
    from flows.tune import tune

    started = time.perf_counter()
    results = {"ALS (config defaults)": asdict(pipeline().train[0])}
    seconds = {"pipeline": time.perf_counter() - started}
    for label, family in (("popularity", "popularity"), ("EASE (l2=500)", "ease")):
        results[label] = asdict(train(algorithm=family)[0])
    for label, family, trials in (("ALS (tuned)", "als", 500), ("EASE (tuned)", "ease", 12)):
        started = time.perf_counter()
        tuned = asdict(tune(algorithm=family, trials=trials, time_budget=budget)[0])
        seconds[label] = time.perf_counter() - started
        results[label] = {**tuned["best"], "trials": len(tuned["trials"])}
    out.write_text(json.dumps({"protocol": protocol, "note": note, "seconds": seconds,
                               "results": results}, default=str))


def interval(m: dict, key: str, digits: int = 4) -> str:
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if key not in m:
        return "n/a"
    bounds = f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else ""
    return f"{m[key]:.{digits}f}{bounds}"


def params(result: dict) -> str:
    keep = ("factors", "regularization", "alpha", "iterations", "l2", "recency_boost")
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result["params"].items() if k in keep)


def report(found: dict) -> None:
    results = found["results"]
    als = results["ALS (config defaults)"]
    stats = als["stats"]
    print(f"\n### {found['protocol']}: {stats['evaluated_users']:,} users and "
          f"{stats['test_interactions']:,} interactions held out ({stats['protocol_note']})")
    print(f"data: {stats['interactions']:,} interactions, {stats['users']:,} users x "
          f"{stats['items']:,} items; {found['note']}")
    print("flows: " + ", ".join(f"{k} {v:.0f} s" for k, v in found["seconds"].items()))
    rows = []
    for label, r in results.items():
        m = r["metrics"]
        lift = interval(m, "lift_ndcg_at_10", 2) if label != "popularity" else "1.00"
        trials = f", {r['trials']} trials" if "trials" in r else ""
        rows.append({"model": label, "NDCG@10": interval(m, "ndcg_at_10"), "x popularity": lift,
                     "Recall@10": interval(m, "recall_at_10"),
                     "coverage": interval(m, "catalog_coverage", 3),
                     "novelty": interval(m, "novelty", 2),
                     "pop. bias": interval(m, "popularity_bias", 3),
                     "promoted": "yes" if r["promoted"] else "no",
                     "params": params(r) + trials})
    print(table(rows, list(rows[0])))
    ease = results["EASE (tuned)"]["metrics"]["ndcg_at_10"]
    for label in ("ALS (config defaults)", "ALS (tuned)"):
        value = results[label]["metrics"]["ndcg_at_10"]
        print(f"{label} / EASE (tuned): {value / ease:.3f}")
    print("gate, ALS (tuned): " + results["ALS (tuned)"]["reason"])


def report_http(found: dict) -> None:
    def show(i: dict, digits: int = 4) -> str:
        return f"{i['mean']:.{digits}f} [{i['low']:.{digits}f}, {i['high']:.{digits}f}]"

    print(f"\n### {found['protocol']} through the HTTP API: champion v{found['champion']} "
          f"({found['algorithm']}), {found.get('asked', 0):,} users asked, {found['users']:,} "
          f"scored (a held-out item the training part has), "
          f"{found['calls_per_second']:.0f} answers/s; answers came from model versions "
          f"{', '.join(found['answer_versions'])}; slots by source {found['sources']}")
    print(f"pipeline on the training part: {found['pipeline']['reason']}")
    print(table([{"NDCG@10 online (API)": show(found["online"]),
                  "offline, same bundle and users": show(found["offline"]),
                  "online - offline": show(found["difference"]),
                  "identical top-10 lists": f"{found['identical_lists']:.1%}",
                  "popularity": show(found["popularity"]),
                  "online x popularity": show(found["lift"], 2),
                  "Recall@10 online": show(found["online_recall"], 3)}],
                ["NDCG@10 online (API)", "offline, same bundle and users", "online - offline",
                 "identical top-10 lists", "popularity", "online x popularity",
                 "Recall@10 online"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=["leave_last_out", "per_user"],
                        choices=sorted(PROTOCOLS))
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of tuning each")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sluice")
    parser.add_argument("--http", choices=("also", "only", "no"), default="also",
                        help="also (or only) score the served champion through the HTTP API")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-http", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one or args.one_http:
        if args.one:
            one(args.one, args.budget, args.cache, args.out)
        else:
            one_http(args.one_http, args.cache, args.out)
        return 0
    print(f"MovieLens-100k from {fetch_wheel(args.cache).name}, Personalize CSV in the "
          f"landing folder; tuning budget {args.budget:.0f} s per family")
    runs = [("--one", report)] if args.http == "no" else [("--one-http", report_http)]
    if args.http == "also":
        runs.insert(0, ("--one", report))
    for protocol in args.protocols:
        for flag, show in runs:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                subprocess.run([sys.executable, __file__, flag, protocol, "--budget",
                                str(args.budget), "--cache", str(args.cache), "--out",
                                out.name], check=True, cwd=ROOT)
                show(json.loads(Path(out.name).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
