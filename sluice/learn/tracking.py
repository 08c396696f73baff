"""What a training run writes to MLflow: params, metrics with intervals, the gate's outcome,
the bundle as a registered model, and its lineage (what it learned from).

Lineage, as tags `lineage.*` of the run: the ingest high-water mark (the newest
`raw.manifest.loaded_at` and how many files it covers), the dbt invocation that built the
marts (`run_results.json`), a digest of the training mart's rows (also the digest of the
dataset logged with `mlflow.log_input`), the config digest and the code version (git sha).
`lineage(tracking_uri, name, version)` reads them back for a registered version.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from sluice.bundle import ModelBundle
from sluice.learn import gate, quality, registry
from sluice.learn.configuration import interactions_meta
from sluice.learn.matrix import config_params
from sluice.learn.versions import RegistryError
from sluice.settings import PROJECT_ROOT, Settings
from sluice.warehouse.engine import Warehouse, from_settings

if TYPE_CHECKING:
    from sluice.learn.model_base import Model
    from sluice.learn.training import Fitted, Prepared

ID_COLUMNS = ("user_id", "item_id", "interaction_type")
HEADLINE = ("ndcg_at_10", "recall_at_10", "precision_at_10")


def log_run(settings: Settings, prepared: Prepared, final: Model, candidate: Fitted,
            baseline: Fitted, stats: dict[str, Any]) -> None:
    """Params, metrics (each with `_ci_low`/`_ci_high`), dataset statistics, protocol, lineage."""
    app, split = settings.app, prepared.split
    mlflow.log_params({
        "algorithm": final.name, **final.params(),
        **{f"weight.{k}": v for k, v in app.events.weights.items()},
        "event_value_threshold": app.events.event_value_threshold,
        **config_params(app.matrix),
        "evaluation.protocol": app.evaluation.protocol,
        "evaluation.protocol_used": split.protocol,
        "holdout_fraction": app.evaluation.holdout_fraction,
        "evaluation.leave_out": app.evaluation.leave_out,
        "evaluation.min_users": app.evaluation.min_users,
        "evaluation.gate_metric": app.evaluation.gate_metric,
        "holdout_cutoff": str(split.cutoff),
    })
    metrics = candidate.metrics
    mlflow.log_metrics({
        **metrics, **{f"popularity.{k}": v for k, v in baseline.metrics.items()},
        "fit_seconds": candidate.fit_seconds,
        **{f"dataset.{k}": v for k, v in stats.items() if isinstance(v, int | float)},
    })
    mlflow.log_dict(stats, "dataset_stats.json")
    mlflow.log_dict(app.matrix.model_dump(), "matrix_config.json")
    interactions = interactions_meta(app.events)  # the refresh rule's record, as the bundle's
    found = lineage_tags(settings, prepared)
    mlflow.log_input(dataset_input(settings, prepared, found["lineage.mart_digest"]),
                     context="training")
    mlflow.set_tags({"tenant": prepared.tenant, "algorithm": final.name,
                     "dataset.time_min": stats["time_min"], "dataset.time_max": stats["time_max"],
                     "evaluation.protocol_note": split.note[:5000],
                     "training.interactions": json.dumps(interactions, sort_keys=True), **found})


def mart_digest(frame: pd.DataFrame) -> str:
    """A digest of the training rows' content, whatever their order."""
    hashed = pd.util.hash_pandas_object(frame.astype({c: str for c in ID_COLUMNS if c in frame}),
                                        index=False).to_numpy()
    summed = int(hashed.sum(dtype=np.uint64))  # order-free; wraps around
    return hashlib.sha256(f"{len(frame)}:{summed}".encode()).hexdigest()[:16]


def lineage_tags(settings: Settings, prepared: Prepared) -> dict[str, str]:
    """The run's lineage as tags (values are text; an unknown part says why)."""
    tags = {"lineage.mart_digest": mart_digest(prepared.frame),
            "lineage.config_digest": hashlib.sha256(
                settings.app.model_dump_json().encode()).hexdigest()[:16],
            "lineage.code_version": code_version()}
    tags.update(_ingest_mark(from_settings(settings)))
    tags.update(_dbt_invocation(settings.home / "dbt" / "target" / "run_results.json"))
    return tags


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                             capture_output=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, text=True, capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if sha.returncode != 0:
        return "unknown (not a git checkout)"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _ingest_mark(warehouse: Warehouse) -> dict[str, str]:
    try:
        files, mark = warehouse.rows("select count(*), max(loaded_at) from raw.manifest")[0]
    except Exception as exc:  # marts built elsewhere (tests, a copied warehouse)
        return {"lineage.ingest_high_water": f"unknown ({type(exc).__name__})"}
    return {"lineage.ingest_high_water": str(mark), "lineage.ingest_files": str(files)}


def _dbt_invocation(path: Path) -> dict[str, str]:
    try:
        meta = json.loads(path.read_text())["metadata"]
    except (OSError, ValueError, KeyError):
        return {"lineage.dbt_invocation": f"unknown (no {path.name})"}
    return {"lineage.dbt_invocation": str(meta.get("invocation_id")),
            "lineage.dbt_generated_at": str(meta.get("generated_at"))}


def lineage(tracking_uri: str, name: str, version: str) -> dict[str, Any]:
    """A registered version's lineage record: its run, what it learned from, its gate."""
    client = registry.client(tracking_uri)
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as exc:  # no such version, or not a number
        raise RegistryError(f"{name} has no version {version}: `sluice models` lists them"
                            ) from exc
    run = client.get_run(found.run_id)  # type: ignore[arg-type]  # a registered version has a run
    tags = run.data.tags
    return {"name": name, "version": str(found.version), "run_id": found.run_id,
            "algorithm": tags.get("algorithm"), "tenant": tags.get("tenant"),
            "protocol": run.data.params.get("evaluation.protocol_used"),
            "protocol_note": tags.get("evaluation.protocol_note"),
            "gate_reason": found.tags.get("gate_reason"),
            "datasets": [{"name": i.dataset.name, "digest": i.dataset.digest}
                         # every training run logs its input: `inputs` is there
                         for i in run.inputs.dataset_inputs],  # type: ignore[union-attr]
            "off_policy": _off_policy(run.data.metrics, tags),
            "attributes": _attributes(run.data.params, tags),
            **{k.removeprefix("lineage."): v for k, v in tags.items()
               if k.startswith("lineage.")}}


def _attributes(params: dict[str, str], tags: dict[str, str]) -> dict[str, Any] | None:
    """The fields the attribute index read, where they came from, and the training note."""
    if "attributes.fields_source" not in params:  # trained before it was recorded
        return None
    return {"fields": params.get("attributes.fields"),
            "fields_source": params["attributes.fields_source"],
            "note": tags.get("attributes.note")}


def _off_policy(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, Any] | None:
    """A run's off-policy estimates (sluice.learn.offpolicy), with DR's reward model and, where
    DR rests on that model, the words saying so (`dr_warning`)."""
    found: dict[str, Any] = {k.removeprefix("off_policy."): v for k, v in metrics.items()
                             if k.startswith("off_policy.")}
    if "off_policy.reward_model" in tags:
        found["reward_model"] = tags["off_policy.reward_model"]
    if "off_policy.dr_warning" in tags:
        found["dr_warning"] = tags["off_policy.dr_warning"]
    return found or None


def dataset_input(settings: Settings, prepared: Prepared, digest: str) -> Any:
    """The mart as an MLflow dataset: source, schema and a digest of its rows.

    `mlflow.data.from_pandas` profiles every row (11 s per million here); this is a hash.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    sample = prepared.frame.head(100)
    schema = infer_signature(sample.astype({c: str for c in ID_COLUMNS if c in sample})).inputs
    uri = from_settings(settings).uri()
    if uri.startswith("file:"):
        with warnings.catch_warnings():  # MLflow registers its local source twice, then warns
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(uri)
    else:  # MLflow resolves no postgresql:// source: the server (no password) goes in a tag
        from mlflow.data.code_dataset_source import CodeDatasetSource

        source = CodeDatasetSource(tags={"warehouse": uri})
    # MLflow's annotations leave `profile` abstract; MetaDataset defines it at run time
    return MetaDataset(source,  # type: ignore[abstract]
                       name=f"marts.interactions/{prepared.tenant}", digest=digest, schema=schema)


def log_gate(decision: gate.Decision, champion: gate.ChampionScore | None,
             rule: gate.Rule) -> None:
    """The gate's numbers as metrics `gate.*` (the difference's interval, the users it was
    decided on and the minimum, the sign draws), its outcome, method and reason as tags."""
    values = {"gate.candidate": decision.candidate, "gate.champion": decision.champion,
              "gate.difference_ci_low": decision.difference_low,
              "gate.difference_ci_high": decision.difference_high,
              "gate.popularity": decision.popularity, "gate.users": decision.users,
              "gate.min_users": rule.min_users, "gate.confidence": rule.confidence,
              "gate.resamples": rule.resamples}
    mlflow.log_metrics({k: float(v) for k, v in values.items()
                        if v is not None and np.isfinite(v)})
    mlflow.set_tags({"gate.promoted": str(decision.promoted).lower(),
                     "gate.refresh": str(decision.refresh).lower(),
                     "gate.method": gate.METHOD,  # what gate.difference_ci_* come from
                     "gate.reason": decision.reason[:5000],
                     "gate.champion_version": decision.champion_version or "",
                     "gate.champion_note": (champion.note if champion else "")[:5000]})


def lifts(settings: Settings, candidate: Fitted, baseline: Fitted) -> dict[str, float]:
    """`lift_<metric>` over popularity with `_ci_low/high`, users resampled in pairs."""
    out = {f"lift_{k}": _lift(candidate.metrics, baseline.metrics, k) for k in HEADLINE}
    if candidate.scored is None or baseline.scored is None:
        return out
    ev = settings.app.evaluation
    for key in HEADLINE:
        found = quality.ratio(candidate.scored.per_user[key], baseline.scored.per_user[key],
                              ev.bootstrap_resamples, ev.confidence, ev.seed)
        if np.isfinite(found.low) and np.isfinite(found.high):
            out[f"lift_{key}_ci_low"], out[f"lift_{key}_ci_high"] = found.low, found.high
    return out


def _lift(metrics: dict[str, float], baseline: dict[str, float], key: str) -> float:
    return metrics[key] / baseline[key] if baseline.get(key) else float("inf")


def _requirements(bundle: ModelBundle) -> list[str]:
    """What loading the pyfunc model needs: faiss too when the bundle carries its ANN index."""
    from importlib.metadata import version

    needed = [f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
              f"scipy=={version('scipy')}"]
    return needed + ([f"faiss-cpu=={version('faiss-cpu')}"] if bundle.ann is not None else [])


def log_model(bundle: ModelBundle, name: str, artifact: str = "model") -> str:
    """Log the bundle as a pyfunc model (signature, input example) and register a version."""
    from sluice.learn.pyfunc import SIGNATURE

    calibration = bundle.meta.get("ann")
    if calibration:  # the index's search breadth and the recall it measured there
        mlflow.log_metrics({f"ann.{key}": value for key, value in calibration.items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = bundle.save(Path(tmp) / "bundle")
        example = pd.DataFrame({"user_id": [str(bundle.user_ids[0])], "num_results": [10]})
        here = Path(__file__)
        info = mlflow.pyfunc.log_model(
            name=artifact, python_model=str(here.with_name("pyfunc_code.py")),
            code_paths=[str(here.parents[1])], artifacts={"bundle": str(path)},
            signature=SIGNATURE, input_example=example, registered_model_name=name,
            pip_requirements=_requirements(bundle),
        )
    return str(info.registered_model_version)
