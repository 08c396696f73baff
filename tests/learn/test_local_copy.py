"""Serving's local copies of registered versions: whole or absent, whoever downloads first."""

from __future__ import annotations

import threading

import numpy as np

from sluice.bundle import ModelBundle
from sluice.learn import registry
from tests.utils.models import register_champion, synthetic_bundle


def test_processes_sharing_a_folder_never_read_a_half_written_copy(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bundle = synthetic_bundle(seed=3)
    version = register_champion(bundle, uri, tmp_path / "artifacts")
    root = tmp_path / "serving-models"
    got: list[object] = []

    def fetch() -> None:
        try:
            path = registry.local_copy(uri, "sluice-default", version, root)
            got.append(ModelBundle.load(path))
        except Exception as exc:  # noqa: BLE001 (the test reports what went wrong)
            got.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(g, ModelBundle) for g in got), got
    for loaded in got:
        assert isinstance(loaded, ModelBundle)
        assert np.array_equal(loaded.item_factors, bundle.item_factors)
    # one copy in place, no scratch folders left behind
    assert sorted(p.name for p in (root / "sluice-default").iterdir()) == [version]
    assert (root / "sluice-default" / version / "ready").exists()


def test_a_torn_copy_left_from_before_is_replaced(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = register_champion(synthetic_bundle(seed=4), uri, tmp_path / "artifacts")
    root = tmp_path / "serving-models"
    torn = root / "sluice-default" / version
    torn.mkdir(parents=True)
    (torn / "half.bin").write_bytes(b"\0" * 10)  # no `ready`: a download that died
    path = registry.local_copy(uri, "sluice-default", version, root)
    assert path == torn and (path / "ready").exists() and not (path / "half.bin").exists()
    ModelBundle.load(path)
