"""Off-policy estimators on the simulation whose truth is known (tests/learn/test_offpolicy.py:
2,000 users with their own click probabilities, served 5 slots each by the real exploration
policy, share 0.2 over a pool of 5, and a better and a worse candidate within its support).

    python benchmarks/offpolicy.py                # 20 seeds, unclipped and clipped at 5 and 8
    python benchmarks/offpolicy.py --sweep        # smaller logs: when DR rests on its model
    python benchmarks/offpolicy.py --beyond       # candidates partly outside the log's support

Per estimator and candidate: how many of the seeds' 95% intervals cover the truth, their mean
width, the root mean squared error and the mean error (bias) of the point values; `dm` is the
reward model's guess alone. DR's rows add the mean `support` (the share of the candidate's
slots the logged clicks correct) and in how many seeds DR was marked `dr_on_model`.

`--sweep` draws logs of fewer users (answers), unclipped, and gives per size the median ESS
in answers, DR's coverage and RMSE against the direct method's, the spread of the support
over the seeds, and how often DR is marked: where the marks' threshold on the ESS comes
from. `--beyond` gives the better candidate, for a share of the users, items the policy
never shows them (no logged slot can match there, and DR is the reward model's guess on
those slots): per share, the mean support and ESS, DR's coverage and bias: where the
threshold on the support comes from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluice.learn.offpolicy import ESTIMATORS, estimate  # noqa: E402
from tests.learn.test_offpolicy import simulate  # noqa: E402

SIZES = (10, 20, 40, 70, 100, 150, 250, 400, 1000)  # users (answers) per log in the sweep
BEYOND = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.4, 0.5, 0.75, 0.9)  # shares outside the support


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--beyond", action="store_true")
    args = parser.parse_args()
    if args.sweep:
        sweep(args.seeds)
        return
    if args.beyond:
        beyond(args.seeds)
        return
    logs = [simulate(seed) for seed in range(args.seeds)]
    print("| clip | candidate | estimator | covered | mean width | RMSE | bias | support | "  # noqa: T201
          "DR marked |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")  # noqa: T201
    for clip in (None, 5.0, 8.0):
        for candidate in ("better", "worse"):
            found = [(estimate(logged, targets[candidate], seed=seed, clip=clip),
                      truth[candidate]) for seed, (logged, targets, truth) in enumerate(logs)]
            for name in (*ESTIMATORS, "dm"):
                error = np.array([f[f"{name}_ctr"] - t for f, t in found])
                covered, width, support, marked = "-", "-", "-", "-"
                if name != "dm":
                    low, high = (np.array([f[f"{name}_ctr_{t}"] for f, _ in found])
                                 for t in ("low", "high"))
                    truths = np.array([t for _, t in found])
                    covered = f"{int(((low <= truths) & (truths <= high)).sum())}/{len(found)}"
                    width = f"{np.mean(high - low):.4f}"
                if name == "dr":
                    support = f"{np.mean([f['support'] for f, _ in found]):.3f}"
                    marked = f"{sum(bool(f['dr_on_model']) for f, _ in found)}/{len(found)}"
                print(f"| {clip or 'none'} | {candidate} | {name.upper()} | {covered} | "  # noqa: T201
                      f"{width} | {np.sqrt(np.mean(error ** 2)):.4f} | {error.mean():+.4f} | "
                      f"{support} | {marked} |")


def sweep(seeds: int) -> None:
    """DR on logs of SIZES users, unclipped: coverage and error against its ESS."""
    print("| users | candidate | median ESS (answers) | median matched slots | DR covered | "  # noqa: T201
          "IPS covered | DR RMSE | IPS RMSE | DM RMSE | support (5%-95%) | DR marked |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")  # noqa: T201
    for users in SIZES:
        logs = [simulate(1000 + seed, users) for seed in range(seeds)]
        for candidate in ("better", "worse"):
            found = [(estimate(logged, targets[candidate], seed=seed), truth[candidate])
                     for seed, (logged, targets, truth) in enumerate(logs)]
            found = [(f, t) for f, t in found if "dr_ctr" in f]  # a log matching nothing
            row = [f"{np.median([f['ess'] for f, _ in found]):.0f}",
                   f"{np.median([f['matched_slots'] for f, _ in found]):.0f}"]
            for name in ("dr", "ips"):
                hit = sum(f[f"{name}_ctr_low"] <= t <= f[f"{name}_ctr_high"] for f, t in found)
                row.append(f"{hit}/{len(found)}")
            for name in ("dr", "ips", "dm"):
                error = np.array([f[f"{name}_ctr"] - t for f, t in found])
                row.append(f"{np.sqrt(np.mean(error ** 2)):.4f}")
            spread = np.percentile([f["support"] for f, _ in found], [5, 95])
            row.append(f"{spread[0]:.2f}-{spread[1]:.2f}")
            row.append(f"{sum(bool(f['dr_on_model']) for f, _ in found)}/{len(found)}")
            print(f"| {users} | {candidate} | {' | '.join(row)} |")  # noqa: T201


def beyond(seeds: int) -> None:
    """DR of the better candidate outside the support for a share of the users, unclipped."""
    print("| share of users outside | mean support | median ESS (answers) | DR covered | "  # noqa: T201
          "DR bias | DR RMSE | DM bias | DR marked |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")  # noqa: T201
    for share in BEYOND:
        found = []
        for seed in range(seeds):
            logged, targets, truth = simulate(seed, beyond=share)
            found.append((estimate(logged, targets["better"], seed=seed), truth["better"]))
        error = np.array([f["dr_ctr"] - t for f, t in found])
        dm = np.array([f["dm_ctr"] - t for f, t in found])
        hit = sum(f["dr_ctr_low"] <= t <= f["dr_ctr_high"] for f, t in found)
        print(f"| {share:g} | {np.mean([f['support'] for f, _ in found]):.3f} | "  # noqa: T201
              f"{np.median([f['ess'] for f, _ in found]):.0f} | {hit}/{len(found)} | "
              f"{error.mean():+.4f} | {np.sqrt(np.mean(error ** 2)):.4f} | {dm.mean():+.4f} | "
              f"{sum(bool(f['dr_on_model']) for f, _ in found)}/{len(found)} |")


if __name__ == "__main__":
    main()
