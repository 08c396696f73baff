"""Register small synthetic champions in a real MLflow store (no pipeline needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import scipy.sparse as sp

from sluice import npz
from sluice.ann import Calibration, ItemIndex, calibrate
from sluice.bundle import ANN, ARRAYS, HEAD_SIZE, ModelBundle
from sluice.learn import registry
from sluice.learn.candidates import CALIBRATION_USERS, fold_ins, precompute
from sluice.learn.model_base import als_fold_in, als_gram
from sluice.settings.serving import AnnConfig


def synthetic_bundle(items: int = 200, users: int = 50, factors: int = 8,
                     seed: int = 0, heads: int = 20) -> ModelBundle:
    """Random factors, three items per user, and each user's precomputed head (as training
    writes it) unless `heads` is 0."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(users), 3)
    cols = rng.integers(0, items, size=users * 3)
    user_items = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                               shape=(users, items))
    user_items.sum_duplicates()
    user_factors = rng.normal(size=(users, factors)).astype(np.float32)
    item_factors = rng.normal(size=(items, factors)).astype(np.float32)
    return ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(users)]),
        item_ids=np.array([f"i{i}" for i in range(items)]),
        user_factors=user_factors, item_factors=item_factors,
        candidates=precompute(user_factors, item_factors, user_items, heads) if heads else None,
        user_items=user_items, popular=np.arange(min(items, 100)),
        popular_scores=np.linspace(100, 1, min(items, 100)).astype(np.float32),
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 0, "tenant": "default"},
        catalog={f"i{i}": {"color": "red" if i % 2 else "blue"} for i in range(items)},
    )


def clustered_bundle(items: int = 20_000, users: int = 300, factors: int = 32,
                     seed: int = 0) -> ModelBundle:
    """Factors shaped like a trained model's (items in taste clusters, norms spread as
    popularity spreads them), no heads, a field `shelf` held by one item in 200 and
    `color` by half: a catalog for the approximate index (`sluice.ann`)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, factors)).astype(np.float32)
    taste = rng.integers(0, len(centres), items)
    item_factors = (centres[taste] * 0.1 + rng.normal(scale=0.05, size=(items, factors)))
    item_factors *= rng.lognormal(0, 0.4, (items, 1))
    user_factors = centres[rng.integers(0, len(centres), users)] + rng.normal(
        scale=0.5, size=(users, factors))
    rows = np.repeat(np.arange(users), 5)
    user_items = sp.csr_matrix((np.ones(len(rows), np.float32),
                                (rows, rng.integers(0, items, len(rows)))), shape=(users, items))
    user_items.sum_duplicates()
    return ModelBundle(
        user_ids=np.array([f"u{i}" for i in range(users)]),
        item_ids=np.array([f"i{i}" for i in range(items)]),
        user_factors=user_factors.astype(np.float32),
        item_factors=item_factors.astype(np.float32), user_items=user_items,
        popular=np.arange(100), popular_scores=np.linspace(100, 1, 100).astype(np.float32),
        meta={"alpha": 2.0, "regularization": 0.1, "cutoff_ms": 0, "tenant": "default"},
        catalog={f"i{i}": {"color": "red" if i % 2 else "blue", "shelf": "top" if i % 200 == 0
                           else "low"} for i in range(items)},
    )


def bundle_fold_ins(bundle: ModelBundle, users: int = CALIBRATION_USERS) -> np.ndarray:
    """The ALS fold-ins of the bundle's trained histories that the train flow's calibration
    takes from its model (`sluice.learn.candidates.fold_ins`), for bundles made without it."""
    factors, meta = bundle.item_factors, bundle.meta
    gram = als_gram(factors, float(meta["regularization"]))
    return fold_ins(lambda rows, weights: als_fold_in(factors, gram, rows, weights,
                                                      float(meta["alpha"])),
                    bundle.user_items, users)


def calibrate_bundle(bundle: ModelBundle,
                     target: float = AnnConfig().recall_target) -> Calibration:
    """Calibrates the bundle's index as the train flow calibrates a model's."""
    assert bundle.ann is not None
    return calibrate(bundle.ann, bundle.item_factors, bundle_fold_ins(bundle), target,
                     HEAD_SIZE)


def register_champion(bundle: ModelBundle, tracking_uri: str, artifacts: Path,
                      name: str = "sluice-default") -> str:
    from sluice.learn.training import log_model

    client = registry.client(tracking_uri)
    experiment = registry.experiment(client, "tests", artifacts)
    with mlflow.start_run(experiment_id=experiment):
        version = log_model(bundle, name)
    client.set_registered_model_alias(name, registry.CHAMPION, version)
    return version


def two_versions(tracking_uri: str, artifacts: Path, name: str = "sluice-default",
                 challenger: bool = False, **bundle: Any) -> tuple[str, str]:
    """Versions of synthetic bundles of seeds 1 and 2 (`bundle`: more of synthetic_bundle's
    arguments): the first the champion, the second the challenger if asked."""
    first, second = (register_champion(synthetic_bundle(seed=seed, **bundle), tracking_uri,
                                       artifacts, name) for seed in (1, 2))
    client = registry.client(tracking_uri)
    client.set_registered_model_alias(name, registry.CHAMPION, first)
    if challenger:
        client.set_registered_model_alias(name, "challenger", second)
    return first, second


def index_in_arrays(directory: Path, cut: int | None = None) -> Path:
    """The bundle at `directory` as format 1 wrote it: the index serialized into the arrays
    (`ann_index`, its first `cut` bytes if given), no ann.faiss."""
    with np.load(directory / ARRAYS, allow_pickle=False) as plain:
        arrays = {k: plain[k] for k in plain.files}
    arrays["ann_index"] = ItemIndex.read(directory / ANN).to_bytes()[:cut]
    npz.save(directory / ARRAYS, arrays)
    (directory / ANN).unlink()
    meta = json.loads((directory / "meta.json").read_text())
    (directory / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    return directory
