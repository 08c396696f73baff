"""Quality on real data: MovieLens-100k through the real pipeline, one stated protocol.

    python benchmarks/movielens.py                  # ratings >= 4, leave last out, 48 trials
    python benchmarks/movielens.py --threshold 1 --protocol time --trials 8

MovieLens-100k ships inside the `recbole` wheel (recbole/dataset_example/ml-100k/). The wheel
is fetched with `pip download --no-deps recbole` into a cache outside git (~/.cache/sluice),
read as a zip (recbole is never installed, the data never committed), and turned into
Metarank events in a temporary SLUICE_HOME: one item event per movie, one `rating`
interaction per rating with the rating as its value, every timestamp moved 10,000 days later
(the event contract takes 2001..2286; order and gaps are kept). Then the real flows run: `pipeline`
(ingest -> dbt build -> train), `train` once per family and `tune` for ALS.

Protocol (the defaults): ratings of 4 or 5 are the interactions (events.event_value_threshold
= 4, every other rating dropped by the interactions mart); each user's latest interaction by
time is held out (evaluation.protocol = leave_last_out), for users with at least two; every
item is ranked, the user's training items excluded. Tuning picks ALS parameters on a
validation split made the same way inside the training part, never on the reported holdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table

ROOT = Path(__file__).resolve().parent.parent
DATA = "recbole/dataset_example/ml-100k/"
SHIFT = pd.Timedelta(days=10_000)
ALS_GRID = {"factors": [32, 64, 128, 256], "regularization": [1.0, 10.0, 50.0],
            "alpha": [1.0, 4.0, 16.0, 40.0], "iterations": [15]}


def fetch_wheel(cache: Path) -> Path:
    """The recbole wheel, downloaded once with pip (no dependencies, nothing installed)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("recbole-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "recbole", "-d", str(cache)], check=True)
        found = sorted(cache.glob("recbole-*.whl"))
    if not found:
        sys.exit(f"pip download left no recbole wheel in {cache}")
    return found[-1]


def read_movielens(wheel: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as archive:
        ratings = pd.read_csv(io.BytesIO(archive.read(DATA + "ml-100k.inter")), sep="\t")
        movies = pd.read_csv(io.BytesIO(archive.read(DATA + "ml-100k.item")), sep="\t")
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
    movies.columns = ["item_id", "title", "year", "genres"]
    return ratings, movies


def write_events(ratings: pd.DataFrame, movies: pd.DataFrame, landing: Path) -> int:
    """Metarank JSON lines: item events for the catalog, one interaction per rating."""
    landing.mkdir(parents=True, exist_ok=True)
    at = (pd.to_datetime(ratings["timestamp"], unit="s") + SHIFT).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    first_at = at.min()
    with open(landing / "ml-100k.jsonl", "w") as out:
        for movie in movies.itertuples(index=False):
            genres = str(movie.genres).split() if isinstance(movie.genres, str) else []
            out.write(json.dumps({
                "event": "item", "id": f"item-{movie.item_id}", "timestamp": first_at,
                "item": f"i{movie.item_id}",
                "fields": [{"name": "title", "value": str(movie.title)},
                           {"name": "category", "value": genres[0] if genres else "unknown"},
                           {"name": "genres", "value": genres}]}) + "\n")
        for n, (row, when) in enumerate(zip(ratings.itertuples(index=False), at, strict=True)):
            out.write(json.dumps({
                "event": "interaction", "id": f"rating-{n}", "timestamp": when,
                "user": f"u{row.user_id}", "item": f"i{row.item_id}", "type": "rating",
                "value": float(row.rating)}) + "\n")
    return len(movies) + len(ratings)


def write_config(path: Path, threshold: float, protocol: str, trials: int) -> None:
    config = yaml.safe_load((ROOT / "config" / "sluice.yaml").read_text())
    config["events"]["weights"] = {"rating": 1.0}
    config["events"]["event_value_threshold"] = threshold
    config["evaluation"].update({"protocol": protocol, "holdout_fraction": 0.1, "leave_out": 1})
    config["tune"] = {"algorithm": "als", "trials": trials, "seed": 7, "grid": {"als": ALS_GRID}}
    config["trackers"] = []
    path.write_text(yaml.safe_dump(config))


def row(label: str, result: dict, popularity_ndcg: float, note: str = "") -> dict:
    m = result["metrics"]
    lift = m["ndcg_at_10"] / popularity_ndcg if popularity_ndcg else float("inf")
    return {"model": label, "NDCG@10": f"{m['ndcg_at_10']:.4f}",
            "Recall@10": f"{m['recall_at_10']:.4f}",
            "Precision@10": f"{m['precision_at_10']:.4f}", "x popularity": f"{lift:.2f}",
            "train s": f"{result['timings']['fit']:.2f}", "params": note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--protocol", choices=["leave_last_out", "time"],
                        default="leave_last_out")
    parser.add_argument("--trials", type=int, default=48, help="48: the whole ALS grid")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sluice")
    args = parser.parse_args()

    wheel = fetch_wheel(args.cache)
    ratings, movies = read_movielens(wheel)
    home = Path(tempfile.mkdtemp(prefix="sluice-ml100k-"))
    events = write_events(ratings, movies, home / "landing")
    write_config(home / "sluice.yaml", args.threshold, args.protocol, args.trials)
    os.environ.update({
        "SLUICE_HOME": str(home), "SLUICE_CONFIG": str(home / "sluice.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OPENBLAS_NUM_THREADS": "1"})
    runs = run_flows()
    stats, als, tuned = runs["als"]["stats"], runs["als"], runs["tuned"]
    print(f"MovieLens-100k from {wheel.name}: {len(ratings):,} ratings -> "
          f"{events:,} events -> {stats['interactions']:,} interactions "
          f"(rating >= {args.threshold:g}), {stats['users']:,} users x {stats['items']:,} "
          f"items, density {stats['density']:.4f}")
    print(f"protocol: {args.protocol}"
          + (" (each user's latest interaction held out)" if args.protocol == "leave_last_out"
             else " (the last 10% of interactions by time held out)")
          + f", {int(als['metrics']['evaluated_users']):,} users evaluated, all items ranked, "
          "training items excluded; train s = fit on the training part")
    print(f"pipeline flow (ingest + dbt build + ALS train, register, gate): "
          f"{runs['pipeline_seconds']:.1f} s; tune flow ({len(tuned['trials'])} ALS trials on a "
          f"validation split, best refit and gated): {runs['tune_seconds']:.1f} s")
    print()
    print(results_table(runs["results"], als, tuned["best"]))
    return 0


def run_flows() -> dict[str, Any]:
    """The pipeline (ALS with the config's defaults), three more families trained on the same
    marts, and the ALS tune flow; with the seconds the two flows took."""
    from flows.pipeline import pipeline
    from flows.train import train
    from flows.tune import tune

    started = time.perf_counter()
    outcome = asdict(pipeline())
    pipeline_seconds = time.perf_counter() - started
    (als,) = outcome["train"]
    results = {name: asdict(train(algorithm=name)[0]) for name in ("popularity", "cosine", "bpr")}
    started = time.perf_counter()
    tuned = asdict(tune(algorithm="als")[0])
    return {"als": als, "results": results, "tuned": tuned,
            "pipeline_seconds": pipeline_seconds, "tune_seconds": time.perf_counter() - started}


def results_table(results: dict[str, dict], als: dict, best: dict) -> str:
    pop = results["popularity"]["metrics"]["ndcg_at_10"]
    grid = {k: v for k, v in best["params"].items() if k in ALS_GRID}
    return table([
        row("popularity", results["popularity"], pop),
        row("item-item (cosine)", results["cosine"], pop,
            f"neighbours={results['cosine']['params']['neighbours']}"),
        row("BPR (config defaults)", results["bpr"], pop,
            " ".join(f"{k}={results['bpr']['params'][k]}"
                     for k in ("factors", "learning_rate", "regularization", "iterations"))),
        row("ALS (config defaults)", als, pop,
            f"factors={als['params']['factors']} reg={als['params']['regularization']} "
            f"alpha={als['params']['alpha']}"),
        row("ALS (tuned)", best, pop, " ".join(f"{k}={v}" for k, v in grid.items())),
    ], ["model", "NDCG@10", "Recall@10", "Precision@10", "x popularity", "train s", "params"])


if __name__ == "__main__":
    sys.exit(main())
