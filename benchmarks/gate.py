"""The champion gate on real data: how often its interval promotes when there is nothing to
find, by evaluated users, how often it promotes a small real lift, what one interval costs on
100,000 users, and what the gate decides on MovieLens-100k.

    python benchmarks/gate.py                 # 5,000 draws per null and sample size
    python benchmarks/gate.py --draws 500 --confirm-draws 0 --skip-decisions

MovieLens-100k comes from the recbole wheel as in benchmarks/movielens.py (never installed,
never committed); every rating is an interaction (4 and 5 weigh 4, the rest 1), written
straight into the interactions mart of a temporary SLUICE_HOME with a real MLflow store.

Under the null: two ALS fits of one configuration that differ only in their seed are scored
per user on the default time holdout; their per-user NDCG@10 differences are drawn for n
users, either with each sign flipped at random (symmetric: under no difference a user's
difference is as likely either way) or less their mean (mean zero, skew kept), and four
95% intervals over 1,000 resamples are asked whether they are above zero: the percentile
bootstrap the gate used (`quality.paired`), BCa and studentized bootstraps from the same
resamples, and the sign-flip test's inverted interval the gate uses now
(`quality.signflip`). The share of draws that say yes should be 2.5% or less. Power: the
symmetric draws shifted by 0.1 and 0.2 of the differences' standard deviation.

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
SIZES = (25, 100, 400)


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


def bootstrap_lows(difference: np.ndarray, resamples: int, confidence: float,
                   seed: int) -> dict[str, float]:
    """The low ends of three bootstrap intervals of the mean difference, from one set of
    resamples (the gate's own `quality._weights`, so "percentile" is `quality.paired`):
    percentile, BCa (bias-corrected and accelerated, the acceleration from the jackknife of
    the mean) and studentized (bootstrap-t, each resample's own standard error)."""
    from scipy import stats

    from sluice.learn.quality import _weights

    d = np.asarray(difference, dtype=np.float64)
    n, mean = len(d), float(d.mean())
    sums = np.vstack([np.column_stack([w @ d, w @ (d * d)]) for w in _weights(n, resamples,
                                                                             seed)])
    means = sums[:, 0] / n
    tail = (1.0 - confidence) / 2
    out = {"percentile": float(np.percentile(means, tail * 100))}
    if np.all(d == d[0]):  # every user the same difference: every interval is that point
        return {**out, "BCa": mean, "studentized": mean}
    share = np.mean(means < mean) + 0.5 * np.mean(means == mean)
    z0 = stats.norm.ppf(np.clip(share, 1 / (resamples + 1), resamples / (resamples + 1)))
    jack = (d.sum() - d) / (n - 1)
    u = jack.mean() - jack
    accel = (u ** 3).sum() / (6 * ((u ** 2).sum()) ** 1.5)
    z = z0 + stats.norm.ppf(tail)
    out["BCa"] = float(np.percentile(means, 100 * stats.norm.cdf(z0 + z / (1 - accel * z))))
    spread = np.sqrt(np.maximum(sums[:, 1] / n - means ** 2, 0) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(spread > 0, (means - mean) / spread,
                     np.sign(means - mean) * np.inf)
    t = np.nan_to_num(t, nan=0.0)
    out["studentized"] = float(mean - np.quantile(t, 1 - tail) * d.std(ddof=1) / np.sqrt(n))
    return out


METHODS = ("percentile", "BCa", "studentized", "sign-flip")


def lows(difference: np.ndarray, seed: int) -> dict[str, float]:
    """Each method's 95% low end over 1,000 resamples (sign-flip: the gate's `signflip`)."""
    from sluice.learn.quality import signflip

    return {**bootstrap_lows(difference, 1000, 0.95, seed),
            "sign-flip": signflip(difference, 1000, 0.95, seed).low}


def per_user_differences(settings) -> np.ndarray:
    from sluice.learn.training import fit_and_evaluate, prepare

    prepared = prepare(settings, "ml")
    params = settings.app.model.params("als")
    per_user = [fit_and_evaluate(prepared, "als", {**params, "random_state": seed})
                .scored.per_user["ndcg_at_10"] for seed in (42, 7)]
    difference = per_user[0] - per_user[1]
    print(f"{len(difference):,} users evaluated; seeds 42 and 7 differ on "
          f"{np.mean(difference != 0):.0%} of them, by {difference.mean():+.4f} on average "
          f"(sd {difference.std():.4f}, skewness {skew(difference):+.2f})")
    return difference


def skew(values: np.ndarray) -> float:
    centered = values - values.mean()
    return float((centered ** 3).mean() / (centered ** 2).mean() ** 1.5)


def rate(count: int, draws: int) -> str:
    share = count / draws
    return f"{share:.2%} ± {np.sqrt(share * (1 - share) / draws):.2%}"


def null_rates(difference: np.ndarray, draws: int, sizes: tuple[int, ...]) -> list[dict]:
    """How often each method's interval is above zero under no difference, two ways: the
    differences with their signs flipped at random (symmetric: what the sign-flip test
    assumes), and the differences less their mean, drawn as they are (mean zero, their skew
    kept: what it does not)."""
    rng = np.random.default_rng(1)
    centered = difference - difference.mean()
    rows = []
    for null in ("symmetric", "centered"):
        for n in sizes:
            above = dict.fromkeys(METHODS, 0)
            for _ in range(draws):
                picked = rng.choice(len(difference), n)
                drawn = (difference[picked] * rng.choice([-1.0, 1.0], n) if null == "symmetric"
                         else centered[picked])
                for name, low in lows(drawn, int(rng.integers(1 << 30))).items():
                    above[name] += low > 0
            rows.append({"null": null, "users": n, "draws": draws,
                         **{name: rate(above[name], draws) for name in METHODS}})
            print(rows[-1], flush=True)
    return rows


def confirm(difference: np.ndarray, draws: int, n: int = 100) -> list[dict]:
    """The sign-flip test alone (about 1 ms a draw) under the symmetric null at `n` users,
    with enough draws for a standard error of a tenth of a point."""
    from sluice.learn.quality import signflip

    rng = np.random.default_rng(4)
    above = 0
    for _ in range(draws):
        drawn = difference[rng.choice(len(difference), n)] * rng.choice([-1.0, 1.0], n)
        above += signflip(drawn, 1000, 0.95, int(rng.integers(1 << 30))).low > 0
    return [{"null": "symmetric", "users": n, "draws": draws, "sign-flip": rate(above, draws)}]


def power(difference: np.ndarray, draws: int, shifts: tuple[float, ...]) -> list[dict]:
    """How often each method promotes a real lift: the sign-flipped differences shifted by a
    share of their standard deviation."""
    rng = np.random.default_rng(2)
    sd = float(difference.std())
    rows = []
    for n in (100, 400):
        for shift in shifts:
            above = dict.fromkeys(METHODS, 0)
            for _ in range(draws):
                drawn = (difference[rng.choice(len(difference), n)] * rng.choice([-1.0, 1.0], n)
                         + shift * sd)
                for name, low in lows(drawn, int(rng.integers(1 << 30))).items():
                    above[name] += low > 0
            rows.append({"users": n, "lift": f"{shift:.2f} sd ({shift * sd:+.4f})",
                         "draws": draws, **{name: rate(above[name], draws) for name in METHODS}})
            print(rows[-1], flush=True)
    return rows


def cost(users: int = 100_000) -> list[dict]:
    """Seconds for one gate interval (1,000 resamples) over `users` users."""
    import time

    from sluice.learn.quality import paired, signflip

    difference = np.random.default_rng(3).normal(0.001, 0.1, users)
    rows = []
    for name, run in (("percentile (quality.paired)",
                       lambda: paired(difference, np.zeros(users))),
                      ("percentile + BCa + studentized, one set of resamples",
                       lambda: bootstrap_lows(difference, 1000, 0.95, 0)),
                      ("sign-flip (quality.signflip)", lambda: signflip(difference))):
        start = time.perf_counter()
        run()
        rows.append({"method": name, "users": f"{users:,}",
                     "seconds": f"{time.perf_counter() - start:.2f}"})
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
    parser.add_argument("--draws", type=int, default=5_000)
    parser.add_argument("--power-draws", type=int, default=1_000)
    parser.add_argument("--confirm-draws", type=int, default=40_000)
    parser.add_argument("--skip-decisions", action="store_true")
    args = parser.parse_args()
    print(table(cost(), ["method", "users", "seconds"]))
    print()
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
        difference = per_user_differences(settings)
        if args.draws:
            print(table(null_rates(difference, args.draws, SIZES),
                        ["null", "users", "draws", *METHODS]))
            print()
        if args.confirm_draws:
            print(table(confirm(difference, args.confirm_draws),
                        ["null", "users", "draws", "sign-flip"]))
            print()
        if args.power_draws:
            print(table(power(difference, args.power_draws, (0.1, 0.2)),
                        ["users", "lift", "draws", *METHODS]))
            print()
        if args.skip_decisions:
            return 0
        print(table(decisions(settings, frame), ["run", "users", "promoted", "refresh"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
