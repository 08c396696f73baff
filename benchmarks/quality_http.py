"""Quality read through the HTTP API: what `benchmarks/quality.py --http` runs per protocol.

The benchmark splits MovieLens-100k itself (the same split function and tie rule the flows
use) and lands only the training part, so the champion the `pipeline` flow trains and refits
has never seen the held-out ratings. A real uvicorn serves that champion; every evaluated user
is asked `POST /v1/recommendations` for 10 slots (seen items excluded, as served), and the
answers are scored against the held-out ratings with the offline metric code. The same
champion bundle, scored offline on the same users (its trained user factors against its item
factors, training items left out: what serving computes for a known user without new
events), must agree with them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from sluice.learn.evaluation import (
    NO_SCORE,
    Ranker,
    factor_ranker,
    make_split,
    relevant_items,
    score_model,
    score_ranker,
)
from sluice.learn.matrix import InteractionMatrix, build
from sluice.learn.models import Popularity

K = 10


def split_ratings(ratings: pd.DataFrame, settings: dict[str, Any]) -> tuple[pd.Index, pd.DataFrame]:
    """The training rows' index in `ratings`, and the held-out part as the mart would hold it."""
    frame = pd.DataFrame({"user_id": "u" + ratings["user_id"].astype(str),
                          "item_id": "i" + ratings["item_id"].astype(str),
                          "event_at": pd.to_datetime(ratings["timestamp"], unit="s"),
                          "weight": 1.0}, index=ratings.index)
    split = make_split(frame, settings["protocol"], settings.get("holdout_fraction", 0.1),
                       settings.get("leave_out", 1))
    return split.train.index, frame


def answer_ranker(answers: dict[int, list[str]], train: InteractionMatrix) -> Ranker:
    """The served lists as a ranker (position order), so the offline metric code scores them."""
    index = pd.Index(train.item_ids)

    def rank(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), NO_SCORE, dtype=np.float32)
        for row, user in enumerate(users):
            found = index.get_indexer(answers.get(int(user), [])[:k])
            ids[row, :len(found)] = found
            scores[row, :len(found)] = np.where(found >= 0, k - np.arange(len(found)), NO_SCORE)
        return ids, scores

    return rank


def bundle_ranker(bundle: Any, train: InteractionMatrix) -> Ranker:
    """The bundle as serving scores a trained user: its own user factors, every known item."""
    users = pd.Index(bundle.user_ids).get_indexer(train.user_ids)
    items = pd.Index(bundle.item_ids).get_indexer(train.item_ids)
    factors = np.zeros((len(items), bundle.item_factors.shape[1]), dtype=np.float32)
    factors[items >= 0] = bundle.item_factors[items[items >= 0]]
    unknown = np.flatnonzero(items < 0)
    if bundle.meta.get("fold_in") == "constant":  # popularity: one list for everyone
        from sluice.learn.gate import bundle_ranker as folded
        return folded(bundle, train)
    return factor_ranker(lambda rows: bundle.user_factors[users[rows]], factors, train.matrix,
                         unknown if len(unknown) else None)


def ask(base: str, key: str | None, user_ids: list[str]) -> tuple[dict[str, Any], float]:
    """Each user's answer of K slots through the API; the seconds it took."""
    headers = {"X-Api-Key": key} if key else {}
    found: dict[str, Any] = {}
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for user in user_ids:
            response = http.post("/v1/recommendations", json={"user_id": user, "num_results": K})
            response.raise_for_status()
            found[user] = response.json()
    return found, time.perf_counter() - started


def served_bundle(tracking_uri: str, name: str) -> Any:
    from sluice.bundle import ModelBundle
    from sluice.learn import registry

    with tempfile.TemporaryDirectory() as tmp:
        champion = registry.download_alias(tracking_uri, name, registry.CHAMPION, Path(tmp))
        assert champion is not None, f"{name} has no champion to serve"
        return ModelBundle.load(champion.local_path), champion.version


def score(train_index: pd.Index, frame: pd.DataFrame, served: dict,
          bundle: Any) -> dict[str, Any]:
    """Online (the answers) and offline (the bundle) on the same users, with popularity."""
    from sluice.learn import quality

    train = build(frame.loc[train_index])
    relevant = relevant_items(train, frame.drop(train_index))
    rows = {str(u): r for r, u in enumerate(train.user_ids)}
    answers = {rows[u]: [slot["item_id"] for slot in a["items"]] for u, a in served.items()}
    online = score_ranker(answer_ranker(answers, train), len(train.item_ids), relevant)
    offline = score_ranker(bundle_ranker(bundle, train), len(train.item_ids), relevant)
    popular = score_model(Popularity().fit(train.matrix), train, relevant)
    on, off = online.per_user["ndcg_at_10"], offline.per_user["ndcg_at_10"]
    same = np.all(online.top == offline.top, axis=1)
    sources = {str(k): int(v) for k, v in pd.Series(
        [s["recommendation_source"] for a in served.values() for s in a["items"]]
    ).value_counts().items()}
    return {"users": len(relevant), "online": quality.bootstrap({"x": on})["x"],
            "offline": quality.bootstrap({"x": off})["x"],
            "difference": quality.paired(on, off),
            "popularity": quality.bootstrap({"x": popular.per_user["ndcg_at_10"]})["x"],
            "lift": quality.ratio(on, popular.per_user["ndcg_at_10"]),
            "identical_lists": float(same.mean()), "sources": sources,
            "online_recall": quality.bootstrap({"x": online.per_user["recall_at_10"]})["x"]}


def run(ratings: pd.DataFrame, movies: pd.DataFrame, protocol_settings: dict[str, Any],
        home: Path, land: Any) -> dict[str, Any]:
    """Land the training part, run `pipeline`, serve its champion, ask, score."""
    from cli.processes import free_port, start_server, stop_server, wait_ready
    from flows.pipeline import pipeline
    from sluice.auth import client_key
    from sluice.settings import get_settings

    train_index, frame = split_ratings(ratings, protocol_settings)
    land(ratings.loc[train_index], movies, home / "landing")
    trained = pipeline().train[0]
    settings = get_settings()
    bundle, version = served_bundle(settings.mlflow_tracking_uri, trained.model_name)
    held = frame.drop(train_index)
    users = sorted(set(held["user_id"]) & set(frame.loc[train_index, "user_id"]))
    port = free_port()
    with open(home / "server.log", "wb") as log:
        server = start_server(port, output=log)
        try:
            wait_ready(f"http://127.0.0.1:{port}", server, timeout=120)
            served, seconds = ask(f"http://127.0.0.1:{port}", client_key(settings, "read"), users)
        finally:
            stop_server(server)
    versions = sorted({str(a.get("model_version")) for a in served.values()})
    found = score(train_index, frame, served, bundle)
    return {**found, "champion": version, "algorithm": bundle.meta.get("algorithm"),
            "answer_versions": versions, "calls_per_second": len(users) / seconds,
            "asked": len(users),
            "pipeline": {"promoted": trained.promoted, "reason": trained.reason,
                         "ndcg_at_10": trained.metrics.get("ndcg_at_10")}}
