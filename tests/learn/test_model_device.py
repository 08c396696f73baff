"""`model.device`: ALS and BPR on implicit's CUDA models, with CPU arrays in the bundle.

This machine has no GPU: the CPU path, `auto` falling back to it, and `gpu`'s error run for
real. The GPU branch's own plumbing (alpha folded into the confidences, `to_cpu()` before
anything keeps the factors) is checked with a stand-in for implicit's CUDA model; a real
GPU run happens only where implicit finds CUDA.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml

from sluice.bundle import ModelBundle
from sluice.learn import models, registry
from sluice.learn.models import ALS, BPR, LMF, make_model, on_gpu
from sluice.learn.training import train_tenant
from sluice.settings import ModelConfig, Settings
from tests.learn.test_models import group_of, taste_matrix
from tests.utils.marts import WEIGHTS, taste_history, write_marts

NO_CUDA = pytest.mark.skipif(models.gpu_available(), reason="implicit found a GPU here")


def test_cpu_is_the_default_and_only_als_and_bpr_take_a_device():
    config = ModelConfig()
    assert config.device == "cpu"
    assert config.params("als")["device"] == config.params("bpr")["device"] == "cpu"
    for algorithm in ("lmf", "cosine", "ease", "popularity"):
        assert "device" not in config.params(algorithm)
    assert ALS().params()["device"] == "cpu" and BPR().params()["device"] == "cpu"
    with pytest.raises(ValueError, match="bad parameters"):
        make_model("lmf", device="gpu")


def test_an_unknown_device_is_refused_by_the_config_and_the_model():
    with pytest.raises(pydantic.ValidationError, match="device"):
        ModelConfig(device="tpu")
    with pytest.raises(ValueError, match="model.device: unknown 'tpu', use one of cpu, gpu"):
        ALS(device="tpu").fit(taste_matrix())


@NO_CUDA
@pytest.mark.parametrize("family", [ALS, BPR])
def test_gpu_without_cuda_fails_in_one_line_naming_what_to_do(family):
    with pytest.raises(RuntimeError) as err:
        family(device="gpu").fit(taste_matrix())
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.device 'gpu'")
    assert "pip install rmm-cu13" in message and "set model.device to cpu or auto" in message


@NO_CUDA
def test_auto_trains_on_the_cpu_here_with_the_same_factors():
    assert on_gpu("auto", "als") is False
    data = taste_matrix()
    cpu = ALS(factors=8, iterations=10).fit(data)
    auto = ALS(factors=8, iterations=10, device="auto").fit(data)
    np.testing.assert_array_equal(auto.item_factors, cpu.item_factors)
    np.testing.assert_array_equal(auto.user_factors, cpu.user_factors)


class StandIn:
    """implicit's CUDA model as far as Sluice uses it (build, fit, to_cpu), on the CPU."""

    def __init__(self, cpu_family, **params):
        self.params, self.cpu = params, cpu_family(**params)
        self.given, self.converted = None, False

    def fit(self, matrix, show_progress=False, callback=None):
        self.given = matrix.copy()
        self.cpu.fit(matrix, show_progress=show_progress, callback=callback)

    def to_cpu(self):
        self.converted = True
        return self.cpu


def stand_in_gpu(monkeypatch, module: str, name: str, cpu_family) -> list[StandIn]:
    """CUDA "found", and implicit.gpu.<module>.<name> built as a StandIn; returns those made."""
    import importlib

    made: list[StandIn] = []

    def build(**params):
        made.append(StandIn(cpu_family, **params))
        return made[-1]

    monkeypatch.setattr(models, "gpu_available", lambda: True)
    monkeypatch.setattr(importlib.import_module(f"implicit.gpu.{module}"), name, build)
    return made


def test_gpu_als_gets_alpha_through_the_confidences_and_is_kept_as_cpu_arrays(monkeypatch):
    from implicit.cpu.als import AlternatingLeastSquares

    made = stand_in_gpu(monkeypatch, "als", "AlternatingLeastSquares", AlternatingLeastSquares)
    data = taste_matrix()
    on_cuda = ALS(factors=8, iterations=10, alpha=2.0, device="gpu").fit(data)
    (stand_in,) = made
    assert stand_in.converted  # the factors came from to_cpu(), never from the GPU model
    # implicit 0.7's CUDA fit ignores alpha: Sluice scales the matrix and passes alpha 1
    assert stand_in.params["alpha"] == 1.0
    np.testing.assert_allclose(stand_in.given.toarray(), 2.0 * data.toarray())
    assert isinstance(on_cuda.item_factors, np.ndarray)
    assert on_cuda.item_factors.dtype == np.float32 and on_cuda.item_factors.flags.c_contiguous
    # alpha applied once: the same objective as the CPU model's own alpha
    cpu = ALS(factors=8, iterations=10, alpha=2.0).fit(data)
    np.testing.assert_allclose(on_cuda.item_factors, cpu.item_factors, rtol=1e-5, atol=1e-6)


def test_gpu_bpr_is_kept_as_cpu_arrays_with_its_bias_column(monkeypatch):
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    made = stand_in_gpu(monkeypatch, "bpr", "BayesianPersonalizedRanking",
                        BayesianPersonalizedRanking)
    model = BPR(factors=8, iterations=50, learning_rate=0.05, device="auto").fit(taste_matrix())
    (stand_in,) = made
    assert stand_in.converted and "num_threads" not in stand_in.params  # a CUDA signature
    assert not model.deterministic
    assert isinstance(model.item_factors, np.ndarray) and model.item_factors.shape[1] == 9
    assert model.fold_in_regularization > 0


@pytest.mark.skipif(not models.gpu_available(), reason="no CUDA GPU for implicit here")
@pytest.mark.parametrize("family", [ALS, BPR])
def test_a_real_gpu_fit_recovers_the_taste_as_cpu_arrays(family):
    data = taste_matrix()
    model = family(factors=8, device="gpu").fit(data)
    assert isinstance(model.item_factors, np.ndarray) and model.item_factors.dtype == np.float32
    top = model.recommend(np.arange(30), data, n=5)
    assert np.mean([group_of(i) == u % 3 for u, row in enumerate(top) for i in row]) > 0.8


def settings_for(home: Path, store: str, monkeypatch, device: str) -> Settings:
    config = {"events": {"weights": WEIGHTS},
              "model": {"factors": 8, "iterations": 8, "device": device},
              "evaluation": {"holdout_fraction": 0.2, "min_users": 10,
                             "bootstrap_resamples": 100}}
    path = home / "sluice.yaml"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SLUICE_HOME", str(home))
    monkeypatch.setenv("SLUICE_CONFIG", str(path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return Settings()


@NO_CUDA
def test_training_with_device_gpu_stops_before_registering_and_auto_trains(
        tmp_path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = settings_for(tmp_path / "gpu", store, monkeypatch, "gpu")
    write_marts(settings.warehouse_path, taste_history(), "shop")
    with pytest.raises(RuntimeError, match="model.device 'gpu'"):
        train_tenant(settings, "shop")
    client = registry.client(store)
    assert not client.search_model_versions(f"name = '{settings.registered_model_name('shop')}'")

    settings = settings_for(tmp_path / "auto", store, monkeypatch, "auto")
    write_marts(settings.warehouse_path, taste_history(), "shop")
    result = train_tenant(settings, "shop")
    assert result.version == "1" and result.params["device"] == "auto"
    assert client.get_run(result.run_id).data.params["device"] == "auto"
    found = registry.download_alias(store, settings.registered_model_name("shop"),
                                    registry.CANDIDATE, tmp_path / "dl")
    assert found is not None
    bundle = ModelBundle.load(found.local_path)
    assert json.loads(json.dumps(bundle.meta["params"]))["device"] == "auto"
    expected = ALS(**{**bundle.meta["params"], "device": "cpu"}).fit(bundle.user_items)
    np.testing.assert_array_equal(bundle.item_factors, expected.item_factors)


def test_lmf_has_no_gpu_version():
    assert "device" not in LMF().params()


@NO_CUDA
def test_a_champion_trained_on_a_gpu_is_refit_by_the_gate_on_the_cpu(tmp_path, monkeypatch):
    """The gate refits the champion's configuration when it saw the holdout; a champion
    trained with device gpu must not be unscorable on a machine without one."""
    from implicit.cpu.als import AlternatingLeastSquares

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = settings_for(tmp_path / "home", store, monkeypatch, "gpu")
    write_marts(settings.warehouse_path, taste_history(), "shop")
    with monkeypatch.context() as cuda:  # CUDA "found" for the first training only
        stand_in_gpu(cuda, "als", "AlternatingLeastSquares", AlternatingLeastSquares)
        first = train_tenant(settings, "shop")
    assert first.promoted and first.params["device"] == "gpu"
    settings = settings_for(tmp_path / "home", store, monkeypatch, "cpu")
    second = train_tenant(settings, "shop")
    assert second.params["device"] == "cpu"
    assert "was refit on this run's training part" in second.reason, second.reason
    assert "'device': 'gpu'" in second.reason  # its configuration as stored, not the refit's
    assert "could not be refit" not in second.reason
