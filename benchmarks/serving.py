"""Personalized recommendations under concurrent load on loopback, next to a bare endpoint.

A synthetic champion (N items x 64 factors, 20,000 users, each user's top 100 unseen items
precomputed as the train flow does) is registered in a temporary MLflow store; wrk asks for
25 slots for random known users. The bare FastAPI endpoint returns the same JSON shape doing
no work, measured before and after. "scan per call" serves the same model without heads, so
every answer scores the whole catalog. Also times the scoring alone (one user, and batches).
`python benchmarks/serving.py [--seconds 10] [--items 10000 100000] [--workers 1]`
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, api_key, server, table, wrk

from sluice.bundle import ModelBundle
from sluice.learn.candidates import precompute
from sluice.scoring import BatchScorer, top_n_blocked

USERS = 20_000
FACTORS = 64
HEAD = 100

LUA = """
math.randomseed(os.time())
request = function()
  local body = string.format('{"user_id":"u%d","num_results":25TEMPLATE}',
                             math.random(0, USERS - 1))
  return wrk.format("POST", "/v1/recommendations", HEADERS, body)
end
""".replace("USERS", str(USERS))
EXPLORE_LUA = LUA.replace("TEMPLATE", ',"template":"explore"')
LUA = LUA.replace("TEMPLATE", "")


def synthetic_bundle(items: int, seed: int = 0) -> ModelBundle:
    rng = np.random.default_rng(seed)
    item_factors = rng.normal(scale=0.1, size=(items, FACTORS)).astype(np.float32)
    user_factors = rng.normal(scale=0.1, size=(USERS, FACTORS)).astype(np.float32)
    rows = np.repeat(np.arange(USERS), 10)
    cols = rng.integers(0, items, size=USERS * 10)
    user_items = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                               shape=(USERS, items))
    user_items.sum_duplicates()
    popular = np.arange(1000)
    candidates = precompute(user_factors, item_factors, user_items, HEAD)
    return ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(USERS)]),
        item_ids=np.array([f"i{i}" for i in range(items)]),
        user_factors=user_factors, item_factors=item_factors, user_items=user_items,
        popular=popular, popular_scores=np.linspace(1000, 1, 1000).astype(np.float32),
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 0, "algorithm": "als",
              "tenant": "default", "fold_in": "als"},
        candidates=candidates,
    )


def register(bundle: ModelBundle, home: Path, champion: bool = True,
             name: str = "sluice-default") -> str:
    """Log and register `bundle` as model `name` in the store under `home`; returns the
    version."""
    import mlflow

    from sluice.learn import registry
    from sluice.learn.training import log_model

    client = registry.client(store(home))
    experiment = registry.experiment(client, "bench", home / "artifacts")
    with mlflow.start_run(experiment_id=experiment):
        version = log_model(bundle, name)
    if champion:
        client.set_registered_model_alias(name, "champion", version)
    return version


def store(home: Path) -> str:
    return f"sqlite:///{home}/mlflow.db"


def scoring_alone(bundle: ModelBundle) -> dict[str, float]:
    items = bundle.item_factors
    vectors = bundle.user_factors[:64]
    reps = 200
    started = time.perf_counter()
    for i in range(reps):
        items @ vectors[i % 64]
    gemv = (time.perf_counter() - started) / reps * 1000
    started = time.perf_counter()
    for i in range(reps):
        top_n_blocked(items @ vectors[i % 64], 25)
    full = (time.perf_counter() - started) / reps * 1000
    started = time.perf_counter()
    for _ in range(20):
        vectors[:16] @ items.T
    batched = (time.perf_counter() - started) / 20 / 16 * 1000
    scorer = BatchScorer(items)
    scorer.close()
    return {"score 1 user ms": gemv, "score+top25 ms": full, "score in batch of 16, per user ms":
            batched, "floor: read factors ms": items.nbytes / 25e9 * 1000}


def _home(home: Path, bundle: ModelBundle, config: dict | None, swap_to: ModelBundle | None,
          experiment: ModelBundle | None, events: list[dict] | None
          ) -> tuple[dict[str, str], str | None]:
    """A Sluice home serving `bundle` (see sluice_run): the server's environment, and the
    version to swap to half-way (None without `swap_to`)."""
    import yaml

    register(bundle, home)
    later = register(swap_to, home, champion=False) if swap_to is not None else None
    if experiment is not None:
        from sluice.experiments import Arm, Experiment, Experiments

        arm = register(experiment, home, champion=False)
        Experiments(home).create(Experiment("bench", "default", (
            Arm("control", "champion", 0.5), Arm("treatment", arm, 0.5))))
    if events:
        from sluice.intake.eventlog import EventLog

        log = EventLog(home / "raw")
        log.append(events)
        log.close()
    env = {"SLUICE_HOME": str(home), "MLFLOW_TRACKING_URI": store(home),
           "SLUICE_LOG_LEVEL": "WARNING"}
    if config:
        settings = yaml.safe_load((ROOT / "config" / "sluice.yaml").read_text())
        for section, values in config.items():
            settings[section].update(values)
        (home / "sluice.yaml").write_text(yaml.safe_dump(settings))
        env["SLUICE_CONFIG"] = str(home / "sluice.yaml")
    return env, later


@contextmanager
def sluice_server(bundle: ModelBundle, args: argparse.Namespace, config: dict | None = None,
                  swap_to: ModelBundle | None = None, experiment: ModelBundle | None = None,
                  events: list[dict] | None = None) -> Iterator[tuple[str, str, str | None, str]]:
    """The real app serving `bundle` as champion (config: overrides of sluice.yaml), warmed
    up: its base URL, a read key, the version to swap to (see sluice_run) and the store's URI.
    """
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env, later = _home(home, bundle, config, swap_to, experiment, events)
        with server("serving.main:app", env=env, ready_path="/ready",
                    workers=args.workers) as base:
            key = api_key("read")
            wrk(base, LUA, 2, args.connections, key=key)  # warm-up
            yield base, key, later, env["MLFLOW_TRACKING_URI"]


def sluice_run(bundle: ModelBundle, args: argparse.Namespace, config: dict | None = None,
               connections: tuple[int, ...] | None = None,
               swap_to: ModelBundle | None = None,
               experiment: ModelBundle | None = None,
               lua: str = LUA, events: list[dict] | None = None) -> list[dict[str, float]]:
    """wrk against the real app serving `bundle` as champion (config: overrides of sluice.yaml).

    `events` are written to the raw log before the server starts (it follows them in).

    With `experiment`, that bundle is registered as a second version and a 50/50 A/B
    experiment between it and the champion runs on every template (sluice.experiments).

    With `swap_to`, that bundle is registered beforehand and made champion half-way through
    the (first) measured run; the run fails unless the server was answering from it by the end.
    """
    import threading

    from sluice.learn import registry
    with sluice_server(bundle, args, config, swap_to, experiment, events) as (
            base, key, later, uri):
        if later is not None:
            timer = threading.Timer(args.seconds / 2, registry.client(uri)
                                    .set_registered_model_alias,
                                    ("sluice-default", "champion", later))
            timer.start()
        results = [wrk(base, lua, args.seconds, c, key=key)
                   for c in connections or (args.connections,)]
        if later is not None:
            timer.join()
            served = {httpx.post(f"{base}/v1/recommendations", json={"user_id": "u1"},
                                 headers={"X-Api-Key": key}).json()["model_version"]
                      for _ in range(4 * args.workers)}
            assert served == {later}, f"still serving {served} after the swap to {later}"
        return results


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, both servers")
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--light", type=int, default=4,
                        help="also measure at this many connections (0: skip)")
    parser.add_argument("--swap", action="store_true",
                        help="also a run at the most items whose champion moves half-way")
    parser.add_argument("--experiment", action="store_true",
                        help="also a run with a 50/50 experiment between two versions")
    parser.add_argument("--exploration", type=float, default=0.0,
                        help="also a run at the fewest items with a template exploring this "
                             "share of the model's slots (0: skip)")
    parser.add_argument("--no-scan-rows", action="store_true",
                        help="skip the rows that score every item on every call")
    return parser.parse_args()


def _variants(bundle: ModelBundle, items: int, args: argparse.Namespace) -> list[tuple]:
    """The rows beside plain serving at `items` that the arguments ask for."""
    runs: list[tuple] = []
    if args.exploration and items == args.items[0]:  # the same model, exploring
        runs.append((f"  exploration share {args.exploration}", items, sluice_run(
            bundle, args, {"templates": {"explore": {"base": "personalized", "exploration": {
                "share": args.exploration}}}}, lua=EXPLORE_LUA)[0]))
    if args.swap and items == args.items[-1]:  # the champion moves half-way through
        runs.append(("  champion swapped mid-run", items, sluice_run(
            bundle, args, {"serving": {"model_poll_seconds": 1}},
            swap_to=synthetic_bundle(items, seed=1))[0]))
    if args.experiment:  # half the users answered by a second version of the model
        runs.append(("  with a 50/50 experiment", items, sluice_run(
            bundle, args, experiment=synthetic_bundle(items, seed=1))[0]))
    if not args.no_scan_rows:  # the same answers, every call scoring the whole catalog
        scan = dataclasses.replace(bundle, candidates=None)
        runs.append(("  scan per call (no heads)", items, sluice_run(
            scan, args, {"serving": {"precomputed_candidates": 0,
                                     "ranking_cache_size": 0}})[0]))
    return runs


def main() -> None:
    args = _arguments()

    def bare_run(connections: tuple[int, ...]) -> list[dict[str, float]]:
        with server("benchmarks.bare_app:app", workers=args.workers) as base:
            wrk(base, LUA, 2, args.connections)  # warm-up: every worker started, as for sluice
            return [wrk(base, LUA, args.seconds, c) for c in connections]

    def row(endpoint: str, items: object, result: dict[str, float], bare_rps: float) -> dict:
        return {"endpoint": endpoint, "items": items, "requests/s": result["rps"],
                "p50 ms": result["p50_ms"], "p99 ms": result["p99_ms"],
                "ratio vs bare": result["rps"] / bare_rps, "non-2xx": int(result["errors"])}

    light = (args.connections, args.light) if args.light else (args.connections,)
    first, *bare_light = bare_run(light)
    runs, light_runs, scoring = [], [], []
    for items in args.items:
        bundle = synthetic_bundle(items)
        scoring.append({"items": items, **scoring_alone(bundle)})
        full, *light_result = sluice_run(bundle, args, connections=light)
        runs.append(("sluice personalized", items, full))
        light_runs += [("sluice personalized", items, r) for r in light_result]
        runs += _variants(bundle, items, args)
    (last,) = bare_run((args.connections,))  # the cores drift: the reference is the mean
    bare_rps = (first["rps"] + last["rps"]) / 2
    rows = [row("bare FastAPI, same JSON (before)", "-", first, bare_rps),
            row("bare FastAPI, same JSON (after)", "-", last, bare_rps)]
    rows += [row(endpoint, items, result, bare_rps) for endpoint, items, result in runs]
    print(f"serving, {args.connections} connections, {args.seconds}s each, {args.workers} "
          f"worker(s), {FACTORS} factors, {USERS:,} users, 25 slots, heads of {HEAD}")
    print(table(rows, list(rows[0])))
    if bare_light:
        rows = [row("bare FastAPI, same JSON", "-", bare_light[0], bare_light[0]["rps"])]
        rows += [row(endpoint, items, result, bare_light[0]["rps"])
                 for endpoint, items, result in light_runs]
        print(f"\nbelow saturation: {args.light} connections (latency without queueing)")
        print(table(rows, list(rows[0])))
    print()
    print(table(scoring, list(scoring[0])))


if __name__ == "__main__":
    main()
