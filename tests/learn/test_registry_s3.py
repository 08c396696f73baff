"""MLflow artifacts on a real S3 API: SLUICE_MLFLOW_ARTIFACTS as an s3:// URL.

MLflow's S3 artifact store reads its endpoint from MLFLOW_S3_ENDPOINT_URL (or botocore's own
AWS_ENDPOINT_URL, which tests/e2e/test_s3.py uses for every part at once).
"""

from __future__ import annotations

import numpy as np

from sluice.bundle import ModelBundle
from sluice.learn import registry
from sluice.settings import Settings
from tests.utils.models import register_champion, synthetic_bundle


def test_artifacts_go_to_the_bucket_and_the_champion_comes_back(s3, tmp_path, monkeypatch):
    for name, value in s3.env("MLFLOW_S3_ENDPOINT_URL").items():
        monkeypatch.setenv(name, value)
    bucket = s3.new_bucket()
    monkeypatch.setenv("SLUICE_MLFLOW_ARTIFACTS", f"s3://{bucket}/mlflow/")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    settings = Settings(home=tmp_path / "home")
    assert settings.artifact_root == f"s3://{bucket}/mlflow"  # a URL stays a URL

    bundle = synthetic_bundle(items=30, users=10)
    version = register_champion(bundle, settings.mlflow_tracking_uri, settings.artifact_root)
    keys = s3.keys(bucket, "mlflow/tests/")
    assert any(k.endswith("/MLmodel") for k in keys)
    assert any("/artifacts/bundle/" in k for k in keys)
    assert not (tmp_path / "artifacts").exists()  # nothing beside the SQLite store

    champion = registry.download_alias(settings.mlflow_tracking_uri, "sluice-default",
                                       dst=tmp_path / "served")
    assert champion is not None and champion.version == version
    loaded = ModelBundle.load(champion.local_path)
    np.testing.assert_array_equal(loaded.item_factors, bundle.item_factors)
    assert list(loaded.user_ids) == list(bundle.user_ids)
