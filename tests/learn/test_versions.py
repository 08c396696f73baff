"""The registry steered: list, promote, roll back and retention on a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from sluice.learn import registry, versions
from sluice.learn.tracking import log_model
from tests.utils.cli import sluice
from tests.utils.factories import environment
from tests.utils.models import synthetic_bundle

NAME = "sluice-shop"


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def register(store: str, root: Path, algorithm: str, ndcg: float, name: str = NAME) -> str:
    """One version as training makes it: a run with tags and metrics, a logged model (a small
    bundle: promote refuses what serving could not load)."""
    c = registry.client(store)
    experiment = registry.experiment(c, name, root / "artifacts")
    with mlflow.start_run(experiment_id=experiment):
        mlflow.set_tags({"algorithm": algorithm, "dataset.time_min": "2026-03-01 08:00:00",
                         "dataset.time_max": "2026-03-04 20:00:00"})
        mlflow.log_metric("ndcg_at_10", ndcg)
        return log_model(synthetic_bundle(items=20, users=5, heads=0), name)


def champion(store: str) -> str:
    return str(registry.alias_version(registry.client(store), NAME, registry.CHAMPION).version)


def test_promote_records_the_reason_and_rollback_walks_back(store, tmp_path):
    v1, v2, v3 = (register(store, tmp_path, "als", n) for n in (0.1, 0.2, 0.15))
    c = registry.client(store)
    versions.move_champion(c, NAME, v1, "no champion yet")  # as the gate does
    versions.move_champion(c, NAME, v2, "beats v1")
    assert versions.promote(store, NAME, v3, "ticket 42") == v2
    assert champion(store) == v3
    tags = c.get_model_version(NAME, v3).tags
    assert tags[versions.REASON] == "promoted by hand: ticket 42"
    assert tags[versions.PREVIOUS] == v2
    assert versions.rollback(store, NAME, "ctr fell") == (v3, v2)
    assert champion(store) == v2
    assert c.get_model_version(NAME, v2).tags[versions.REASON] == "rolled back from v3: ctr fell"
    assert versions.rollback(store, NAME, "again") == (v2, v1)
    with pytest.raises(versions.RegistryError, match="no earlier champion recorded"):
        versions.rollback(store, NAME, "once more")
    with pytest.raises(versions.RegistryError, match="has no version 9"):
        versions.promote(store, NAME, "9", "typo")


def test_retention_keeps_champion_previous_and_newest_candidates(store, tmp_path):
    made = [register(store, tmp_path, "als", 0.1 * n) for n in range(1, 9)]
    c = registry.client(store)
    versions.move_champion(c, NAME, "4", "gate")
    versions.move_champion(c, NAME, "6", "gate")
    locations = {v.version: c.get_logged_model(v.source.removeprefix("models:/")
                                               ).artifact_location
                 for v in c.search_model_versions(f"name = '{NAME}'")}
    deleted = versions.prune(store, NAME, keep_candidates=2)
    assert sorted(deleted, key=int) == ["1", "2", "3", "5"]
    left = sorted((str(v.version) for v in c.search_model_versions(f"name = '{NAME}'")), key=int)
    assert left == ["4", "6", "7", "8"] and len(made) == 8
    for version, location in locations.items():
        exists = Path(location.removeprefix("file://")).exists()
        assert exists == (str(version) in left), (version, location)
    assert champion(store) == "6"


def test_sluice_models_lists_versions_with_algorithm_metric_window_alias(store, tmp_path):
    env = environment(tmp_path)
    env["MLFLOW_TRACKING_URI"] = store
    register(store, tmp_path, "als", 0.25)
    register(store, tmp_path, "bpr", 0.3)
    versions.move_champion(registry.client(store), NAME, "2", "gate")
    proc = sluice(env, "models")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["tenant", "version", "algorithm", "ndcg_at_10", "data",
                                "window", "alias", "age", "gate"]
    assert lines[2].split()[:6] == ["shop", "2", "bpr", "0.3000", "2026-03-01..2026-03-04",
                                    "champion"]
    assert lines[3].split()[:5] == ["shop", "1", "als", "0.2500", "2026-03-01..2026-03-04"]


def test_sluice_models_show_of_a_version_that_is_not_there_says_where_to_look(store, tmp_path):
    env = environment(tmp_path)
    env["MLFLOW_TRACKING_URI"] = store
    register(store, tmp_path, "als", 0.25)
    for version in ("9", "abc"):
        proc = sluice(env, "models", "show", version, "--tenant", "shop")
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[0] == (
            f"sluice models: RegistryError: {NAME} has no version {version}: `sluice models` "
            "lists them"), proc.stderr


def test_sluice_models_of_a_tenant_without_versions_names_it(store, tmp_path):
    env = environment(tmp_path)
    env["MLFLOW_TRACKING_URI"] = store
    register(store, tmp_path, "als", 0.25)
    proc = sluice(env, "models", "--tenant", "nope")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no registered versions for tenant 'nope' (sluice-nope): "
                                  "`sluice models` lists every tenant's")
    assert len(proc.stdout.splitlines()) == 1  # the line alone, no empty table under it


def test_sluice_models_tenant_before_show_promote_or_rollback_counts(store, tmp_path):
    """`sluice models --tenant shop show 1` read default's registry (the subcommand's own
    default won); `models promote` / `models rollback` are `promote` / `rollback`."""
    env = environment(tmp_path)
    env["MLFLOW_TRACKING_URI"] = store
    v1, v2 = (register(store, tmp_path, "als", n) for n in (0.1, 0.2))
    versions.move_champion(registry.client(store), NAME, v1, "no champion yet")
    shown = sluice(env, "models", "--tenant", "shop", "show", v1)
    assert shown.returncode == 0, shown.stderr
    moved = sluice(env, "models", "--tenant", "shop", "promote", v2, "--reason", "hand")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith(f"{NAME}@champion: v{v1} -> v{v2} (hand)")
    back = sluice(env, "models", "rollback", "--tenant", "shop")
    assert back.returncode == 0, back.stderr
    assert champion(store) == v1
