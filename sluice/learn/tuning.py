"""Hyperparameter search: Optuna's TPE sampler within a time budget, each trial a nested run.

Trials are scored on a validation split made inside the training part by the same protocol,
so the holdout that is reported and gated on never chooses the parameters. The best is then
fit on the whole training part, scored on the holdout, refit on all data, logged in the
parent run, registered and put through the same champion gate.

Ranges are wide and on log scales where a parameter's effect is multiplicative (ALS factors
16-512, regularization 0.01-100 with the shipped 10 well inside, alpha 0.1-100, and the
matrix's `recency_boost` 1-100 when ALS trains on it; EASE l2 1-10^4); `tune.grid` in config
replaces a parameter's range by a list of values to choose from.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow

from sluice.learn import registry
from sluice.learn.training import Prepared, TrainResult, finish, fit_and_evaluate, prepare
from sluice.settings import Settings

log = logging.getLogger(__name__)

# (kind, low, high): "int" and "float" uniform, "int_log" and "log" on a log scale.
Range = tuple[str, float, float]
DEFAULT_SPACES: dict[str, dict[str, Range | list[Any]]] = {
    "als": {"factors": ("int_log", 16, 512), "regularization": ("log", 1e-2, 100.0),
            "alpha": ("log", 0.1, 100.0), "iterations": ("int", 10, 30)},
    "bpr": {"factors": ("int_log", 16, 256), "learning_rate": ("log", 1e-3, 0.2),
            "regularization": ("log", 1e-4, 0.1), "iterations": [100]},
    "lmf": {"factors": ("int_log", 8, 128), "learning_rate": ("log", 0.1, 2.0),
            "regularization": ("log", 0.1, 2.0), "iterations": [30]},
    "cosine": {"neighbours": ("int_log", 10, 500)},
    "tfidf": {"neighbours": ("int_log", 10, 500)},
    "bm25": {"neighbours": ("int_log", 10, 500), "k1": ("log", 0.3, 3.0),
             "b": ("float", 0.0, 1.0)},
    "ease": {"l2": ("log", 1.0, 1e4)},
    "popularity": {},
}


BOOST_TUNABLE = ("als",)  # families whose parameters carry the recency boost they train on


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


def search_space(settings: Settings, algorithm: str) -> dict[str, Range | list[Any]]:
    """The built-in ranges of `algorithm`, with `tune.grid` lists in place of ranges; ALS
    also searches the matrix's recency boost when it trains on one."""
    boosts = boost_space(settings, algorithm)
    space = {**DEFAULT_SPACES.get(algorithm, {}), **boosts,
             **settings.app.tune.grid.get(algorithm, {})}
    known = {**settings.app.model.params(algorithm), **boosts}
    unknown = sorted(set(space) - set(known))
    if unknown:
        raise ValueError(f"tune.grid.{algorithm}: {unknown} are not parameters of "
                         f"{algorithm} (it takes {sorted(known)})")
    return space


def boost_space(settings: Settings, algorithm: str) -> dict[str, Range | list[Any]]:
    """`recency_boost` on a log scale, 1-100 (32 shipped), for a family that takes it
    as a parameter and trains on the boost (none when the boost is off)."""
    matrix = settings.app.matrix
    if (algorithm not in BOOST_TUNABLE or algorithm not in matrix.recency_models
            or matrix.recency_boost <= 0 or matrix.weighting != "none"):
        return {}
    return {"recency_boost": ("log", 1.0, 100.0)}


def suggest(trial: Any, space: dict[str, Range | list[Any]]) -> dict[str, Any]:
    """One draw from the space through an Optuna trial."""
    params: dict[str, Any] = {}
    for name, spec in sorted(space.items()):
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
            continue
        kind, low, high = spec
        if kind in ("int", "int_log"):
            params[name] = trial.suggest_int(name, int(low), int(high), log=kind == "int_log")
        else:
            params[name] = trial.suggest_float(name, low, high, log=kind == "log")
    return params


def tune_tenant(settings: Settings, tenant: str, algorithm: str | None = None,
                trials: int | None = None, progress: Callable[[str], None] | None = None,
                time_budget: float | None = None) -> TuneResult:
    """Search (at most `trials`, within `time_budget` seconds), then register the best
    through the gate; trials are nested runs."""
    say = progress or log.info
    started = time.perf_counter()
    tune = settings.app.tune
    algorithm = algorithm or tune.algorithm or settings.app.model.algorithm
    space = search_space(settings, algorithm)
    prepared = prepare(settings, tenant)
    validation = prepare(settings, tenant, frame=prepared.split.train, catalog=prepared.catalog)
    baseline = fit_and_evaluate(prepared, "popularity", {}, settings)
    experiment_id = registry.experiment(registry.client(settings.mlflow_tracking_uri),
                                        f"sluice-{tenant}", settings.artifact_root)
    run_name = f"tune-{algorithm}-{tenant}-{time.strftime('%Y%m%d-%H%M%S')}"
    budget = time_budget or tune.time_budget_seconds
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        mlflow.set_tags({"tune": "parent", "tune.algorithm": algorithm, "tune.sampler": "tpe",
                         "tune.selected_on": "validation split of the training part"})
        mlflow.log_dict({"space": space, "time_budget_seconds": budget}, "tune_space.json")
        done = search(settings, validation, algorithm, space, trials or tune.trials, budget, say)
        best = max(done, key=lambda t: t.metrics[settings.app.evaluation.gate_metric])
        mlflow.log_params({"tune.trials": len(done), "tune.time_budget_seconds": budget,
                           **{f"tune.best.{k}": v for k, v in best.params.items()}})
        mlflow.log_metrics({f"validation.{k}": v for k, v in best.metrics.items()})
        candidate = fit_and_evaluate(prepared, algorithm, best.params, settings)
        prepared.timings["fit"] = candidate.fit_seconds
        result = finish(settings, prepared, candidate, baseline, say, started)
    return TuneResult(result, parent_run_id=parent.info.run_id, trials=done)


def search(settings: Settings, validation: Prepared, algorithm: str,
           space: dict[str, Range | list[Any]], trials: int, budget: float,
           say: Callable[[str], None]) -> list[Trial]:
    """Optuna trials on the validation split, each a nested MLflow run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = settings.app.model.params(algorithm)
    metric = settings.app.evaluation.gate_metric
    done: list[Trial] = []

    def objective(trial: Any) -> float:
        overrides = suggest(trial, space)
        params = {**base, **overrides}
        # the parent's experiment: without it a nested run goes to MLflow's "Default"
        parent = mlflow.active_run()
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True,
                              experiment_id=parent.info.experiment_id if parent else None) as child:
            fitted = fit_and_evaluate(validation, algorithm, params)
            mlflow.log_params({"algorithm": algorithm, **params})
            mlflow.log_metrics({**fitted.metrics, "fit_seconds": fitted.fit_seconds})
            mlflow.set_tags({"tune": "trial", "tenant": validation.tenant,
                             "evaluated_on": "validation"})
        done.append(Trial(params, fitted.metrics, fitted.fit_seconds, child.info.run_id))
        say(f"[{validation.tenant}] trial {trial.number} {json.dumps(overrides)}: validation "
            f"{metric} {fitted.metrics[metric]:.4f}")
        return fitted.metrics[metric]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=settings.app.tune.seed))
    study.optimize(objective, n_trials=trials if space else 1, timeout=budget)
    return done
