"""The champion gate on real data: how often its interval promotes when there is nothing to
find, by evaluated users, and what it decides on MovieLens-100k.

    python benchmarks/gate.py                 # 2,000 draws per sample size
    python benchmarks/gate.py --draws 500

MovieLens-100k comes from the recbole wheel as in benchmarks/movielens.py (never installed,
never committed); every rating is an interaction (4 and 5 weigh 4, the rest 1), written
straight into the interactions mart of a temporary SLUICE_HOME with a real MLflow store.

Under the null: two ALS fits of one configuration that differ only in their seed are scored
per user on the default time holdout; their per-user NDCG@10 differences, each sign flipped
at random (under no difference a user's difference is as likely either way), are drawn for
n users, and the gate's paired percentile bootstrap (1,000 resamples, 95%) is asked whether
the interval is above zero: the share of draws that say yes should be 2.5%.

Then the gate itself (`train_tenant`): the first model on 97% of the history by time, a
retrain of the same configuration on all of it (3% newer events), a popularity candidate
against that champion, and a tenant of 30 of the users.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table
from movielens import fetch_wheel, read_movielens

ROOT = Path(__file__).resolve().parent.parent
SIZES = (25, 50, 100, 200, 400)


def interactions(ratings: pd.DataFrame) -> pd.DataFrame:
    liked = ratings["rating"] >= 4
    frame = pd.DataFrame({
        "user_id": "u" + ratings["user_id"].astype(str),
        "item_id": "i" + ratings["item_id"].astype(str),
        "interaction_type": np.where(liked, "purchase", "click"),
        "event_at": pd.to_datetime(ratings["timestamp"], unit="s"),
        "event_value": ratings["rating"].astype(float),
        "weight": np.where(liked, 4.0, 1.0)})
    return frame.sort_values("event_at", kind="stable").reset_index(drop=True)


def null_rates(settings, draws: int) -> list[dict]:
    from sluice.learn.quality import paired
    from sluice.learn.training import fit_and_evaluate, prepare

    prepared = prepare(settings, "ml")
    params = settings.app.model.params("als")
    per_user = [fit_and_evaluate(prepared, "als", {**params, "random_state": seed})
                .scored.per_user["ndcg_at_10"] for seed in (42, 7)]
    difference = per_user[0] - per_user[1]
    rng = np.random.default_rng(1)
    rows = []
    for n in SIZES:
        above = 0
        for _ in range(draws):
            drawn = difference[rng.choice(len(difference), n)] * rng.choice([-1.0, 1.0], n)
            above += paired(drawn, np.zeros(n), 1000, 0.95, int(rng.integers(1 << 30))).low > 0
        rows.append({"users": n, "draws": draws, "interval above zero": f"{above / draws:.1%}",
                     "nominal": "2.5%"})
    print(f"{len(difference):,} users evaluated; seeds 42 and 7 differ on "
          f"{np.mean(difference != 0):.0%} of them, by {difference.mean():+.4f} on average")
    return rows


def decisions(settings, frame: pd.DataFrame) -> list[dict]:
    from sluice.learn.training import train_tenant
    from tests.utils.marts import write_marts

    quiet = lambda message: None  # noqa: E731
    cut = frame["event_at"].quantile(0.97)
    few = np.random.default_rng(0).choice(frame["user_id"].unique(), 30, replace=False)
    runs = []
    write_marts(settings.warehouse_path, frame[frame["event_at"] < cut], "gate")
    runs.append(("first model, 97% of the history", train_tenant(settings, "gate",
                                                                 progress=quiet)))
    write_marts(settings.warehouse_path, frame[frame["event_at"] >= cut], "gate")
    runs.append(("same configuration, all of it", train_tenant(settings, "gate",
                                                               progress=quiet)))
    runs.append(("popularity vs that champion", train_tenant(settings, "gate",
                                                             algorithm="popularity",
                                                             progress=quiet)))
    write_marts(settings.warehouse_path, frame[frame["user_id"].isin(few)], "thirty")
    runs.append(("30 users", train_tenant(settings, "thirty", progress=quiet)))
    for label, result in runs:
        print(f"- {label}: {result.reason}")
    return [{"run": label, "users": result.gate["users"], "promoted": result.promoted,
             "refresh": result.gate["refresh"]} for label, result in runs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    ratings, _ = read_movielens(fetch_wheel(Path.home() / ".cache" / "sluice"))
    frame = interactions(ratings)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = yaml.safe_load((ROOT / "config" / "sluice.yaml").read_text())
        config["events"]["weights"] = {"click": 1.0, "purchase": 4.0}
        (home / "sluice.yaml").write_text(yaml.safe_dump(config))
        os.environ.update(SLUICE_HOME=str(home), SLUICE_CONFIG=str(home / "sluice.yaml"),
                          MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
        from sluice.settings import Settings
        from tests.utils.marts import write_marts

        settings = Settings()
        write_marts(settings.warehouse_path, frame, "ml")
        print(table(null_rates(settings, args.draws),
                    ["users", "draws", "interval above zero", "nominal"]))
        print()
        print(table(decisions(settings, frame), ["run", "users", "promoted", "refresh"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
