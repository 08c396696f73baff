"""Off-policy estimators on the simulation whose truth is known (tests/learn/test_offpolicy.py:
2,000 users with their own click probabilities, served 5 slots each by the real exploration
policy, share 0.2 over a pool of 5, and a better and a worse candidate within its support).

    python benchmarks/offpolicy.py                # 20 seeds, unclipped and clipped at 5 and 8

Per estimator and candidate: how many of the seeds' 95% intervals cover the truth, their mean
width, the root mean squared error and the mean error (bias) of the point values; `dm` is the
reward model's guess alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluice.learn.offpolicy import ESTIMATORS, estimate  # noqa: E402
from tests.learn.test_offpolicy import simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    logs = [simulate(seed) for seed in range(args.seeds)]
    print("| clip | candidate | estimator | covered | mean width | RMSE | bias |")  # noqa: T201
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")  # noqa: T201
    for clip in (None, 5.0, 8.0):
        for candidate in ("better", "worse"):
            found = [(estimate(logged, targets[candidate], seed=seed, clip=clip),
                      truth[candidate]) for seed, (logged, targets, truth) in enumerate(logs)]
            for name in (*ESTIMATORS, "dm"):
                error = np.array([f[f"{name}_ctr"] - t for f, t in found])
                covered, width = "-", "-"
                if name != "dm":
                    low, high = (np.array([f[f"{name}_ctr_{t}"] for f, _ in found])
                                 for t in ("low", "high"))
                    truths = np.array([t for _, t in found])
                    covered = f"{int(((low <= truths) & (truths <= high)).sum())}/{len(found)}"
                    width = f"{np.mean(high - low):.4f}"
                print(f"| {clip or 'none'} | {candidate} | {name.upper()} | {covered} | "  # noqa: T201
                      f"{width} | {np.sqrt(np.mean(error ** 2)):.4f} | {error.mean():+.4f} |")


if __name__ == "__main__":
    main()
