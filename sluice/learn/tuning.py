"""Hyperparameter search: random draws from a grid, each trial a nested MLflow run.

Trials are scored on a validation split made inside the training part by the same protocol,
so the holdout that is reported and gated on never chooses the parameters. The best is then
fit on the whole training part, scored on the holdout, refit on all data, logged in the
parent run, registered and put through the same champion gate.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np

from sluice.learn import registry
from sluice.learn.training import TrainResult, finish, fit_and_evaluate, prepare
from sluice.settings import Settings

log = logging.getLogger(__name__)

# Used when config/sluice.yaml has no `tune.grid` for the algorithm.
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "als": {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0],
            "alpha": [1.0, 4.0, 16.0], "iterations": [15]},
    "bpr": {"factors": [32, 64, 128], "learning_rate": [0.01, 0.05, 0.1],
            "regularization": [0.001, 0.01, 0.1], "iterations": [100]},
    "lmf": {"factors": [16, 32, 64], "learning_rate": [0.5, 1.0],
            "regularization": [0.3, 0.6, 1.0], "iterations": [30]},
    "cosine": {"neighbours": [20, 50, 100, 200]},
    "tfidf": {"neighbours": [20, 50, 100, 200]},
    "bm25": {"neighbours": [20, 50, 100, 200], "k1": [0.6, 1.2, 2.0], "b": [0.25, 0.75]},
    "popularity": {},
}


@dataclass
class Trial:
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float
    run_id: str


@dataclass
class TuneResult:
    best: TrainResult
    parent_run_id: str = ""
    trials: list[Trial] = field(default_factory=list)


def draw(grid: dict[str, list[Any]], trials: int, seed: int) -> list[dict[str, Any]]:
    """Every combination when there are at most `trials`, else `trials` of them at random."""
    keys = sorted(grid)
    combos = [dict(zip(keys, values, strict=True))
              for values in itertools.product(*(grid[k] for k in keys))]
    if len(combos) <= trials:
        return combos
    picks = np.random.default_rng(seed).choice(len(combos), size=trials, replace=False)
    return [combos[i] for i in sorted(picks)]


def search_space(settings: Settings, algorithm: str) -> dict[str, list[Any]]:
    grid = settings.app.tune.grid.get(algorithm, DEFAULT_GRIDS.get(algorithm, {}))
    known = settings.app.model.params(algorithm)
    unknown = sorted(set(grid) - set(known))
    if unknown:
        raise ValueError(f"tune.grid.{algorithm}: {unknown} are not parameters of "
                         f"{algorithm} (it takes {sorted(known)})")
    return grid


def tune_tenant(settings: Settings, tenant: str, algorithm: str | None = None,
                trials: int | None = None,
                progress: Callable[[str], None] | None = None) -> TuneResult:
    """Search, then register the best through the gate; trials are nested runs."""
    say = progress or log.info
    started = time.perf_counter()
    tune = settings.app.tune
    algorithm = algorithm or tune.algorithm or settings.app.model.algorithm
    grid = search_space(settings, algorithm)
    candidates = draw(grid, trials or tune.trials, tune.seed)
    base = settings.app.model.params(algorithm)
    metric = settings.app.evaluation.gate_metric
    prepared = prepare(settings, tenant)
    validation = prepare(settings, tenant, frame=prepared.split.train, catalog=prepared.catalog)
    baseline = fit_and_evaluate(prepared, "popularity", {})
    experiment_id = registry.experiment(registry.client(settings.mlflow_tracking_uri),
                                        f"sluice-{tenant}", settings.artifact_root)
    done: list[Trial] = []
    best: Trial | None = None
    run_name = f"tune-{algorithm}-{tenant}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        mlflow.set_tags({"tune": "parent", "tune.algorithm": algorithm,
                         "tune.selected_on": "validation split of the training part"})
        mlflow.log_dict({"grid": grid, "trials": candidates}, "tune_space.json")
        for number, overrides in enumerate(candidates):
            params = {**base, **overrides}
            with mlflow.start_run(run_name=f"trial-{number}", nested=True) as child:
                fitted = fit_and_evaluate(validation, algorithm, params)
                mlflow.log_params({"algorithm": algorithm, **params})
                mlflow.log_metrics({**fitted.metrics, "fit_seconds": fitted.fit_seconds})
                mlflow.set_tags({"tune": "trial", "tenant": tenant,
                                 "evaluated_on": "validation"})
            trial = Trial(params, fitted.metrics, fitted.fit_seconds, child.info.run_id)
            done.append(trial)
            say(f"[{tenant}] trial {number} {json.dumps(overrides)}: validation "
                f"{metric} {fitted.metrics[metric]:.4f}")
            if best is None or trial.metrics[metric] > best.metrics[metric]:
                best = trial
        assert best is not None, "a search has at least one trial"
        mlflow.log_params({"tune.trials": len(done),
                           **{f"tune.best.{k}": v for k, v in best.params.items()}})
        mlflow.log_metrics({f"validation.{k}": v for k, v in best.metrics.items()})
        candidate = fit_and_evaluate(prepared, algorithm, best.params)
        prepared.timings["fit"] = candidate.fit_seconds
        result = finish(settings, prepared, candidate, baseline, say, started)
    return TuneResult(result, parent_run_id=parent.info.run_id, trials=done)
