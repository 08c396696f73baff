"""Model families behind one interface (`model_base.Model`): the factor families here (ALS,
BPR, LMF), the history families in `history_models` (item-item, EASE), popularity, and
`make_model`, which builds any of them by name.

ALS and BPR train on the GPU through `implicit`'s CUDA models when `device` says so
(`model.device`: cpu, gpu or auto). Their factors are copied back to CPU arrays
(`to_cpu()`) before anything else sees them, so evaluation, the bundle and serving never
need CUDA. BPR and LMF carry their biases as factor columns (implicit appends them), so the
dot product already includes them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from sluice.learn.history_models import (
    BM25,
    EASE,
    TFIDF,
    Cosine,
    HistoryModel,
    ItemItem,
    quiet_implicit,
)
from sluice.learn.model_base import Model, Popularity, als_fold_in, als_gram

__all__ = ["ALS", "BM25", "BPR", "DEVICES", "EASE", "LMF", "MODELS", "TFIDF", "Cosine",
           "HistoryModel", "ItemItem", "Model", "Popularity", "als_fold_in", "als_gram",
           "gpu_available", "make_model", "on_gpu", "quiet_implicit"]

DEVICES = ("cpu", "gpu", "auto")
IterationCallback = Callable[[int, float, Any], None]  # implicit's (iteration, seconds, loss)


def gpu_available() -> bool:
    """Whether implicit can train on a GPU here: its CUDA build, RMM and a device."""
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def on_gpu(device: str, algorithm: str) -> bool:
    """Whether `device` means implicit's CUDA model here; `gpu` without CUDA is an error."""
    if device not in DEVICES:
        raise ValueError(f"model.device: unknown {device!r}, use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return False
    if gpu_available():
        return True
    if device == "gpu":
        raise RuntimeError(
            f"model.device 'gpu': {algorithm} found no usable GPU (implicit.gpu.HAS_CUDA is "
            f"false); on a machine with an NVIDIA driver install RMM for implicit's CUDA 13 "
            f"build (pip install rmm-cu13), or set model.device to cpu or auto")
    return False


def fit_implicit(model: Any, matrix: sp.csr_matrix, gpu: bool,
                 callback: IterationCallback | None = None) -> Any:
    """Fit implicit's `model`; a GPU model comes back as its CPU version (`to_cpu()`), so
    nothing downstream (evaluation, the bundle, serving) ever holds CUDA memory."""
    model.fit(matrix, show_progress=False, callback=callback)
    return model.to_cpu() if gpu else model


class ALS(Model):
    """Implicit-feedback ALS (Hu, Koren, Volinsky) through `implicit`."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 2.0, random_state: int = 42, device: str = "cpu",
                 recency_boost: float | None = None):
        self.factors, self.regularization = factors, regularization
        self.iterations, self.alpha, self.random_state = iterations, alpha, random_state
        self.device = device
        # the matrix's recency boost this model trains on (None: matrix.recency_boost); the
        # caller applies it (InteractionMatrix.for_model), so that tuning can choose it
        self.recency_boost = recency_boost

    @property  # a property where the base class declares a plain attribute
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.device == "cpu"  # nothing promises that the CUDA solver is

    @property  # a property where the base class declares a plain attribute
    def fold_in_alpha(self) -> float:  # type: ignore[override]
        return self.alpha

    @property  # a property where the base class declares a plain attribute
    def fold_in_regularization(self) -> float:  # type: ignore[override]
        return self.regularization

    def params(self) -> dict[str, Any]:
        boost = {} if self.recency_boost is None else {"recency_boost": self.recency_boost}
        return {"factors": self.factors, "regularization": self.regularization,
                "iterations": self.iterations, "alpha": self.alpha,
                "random_state": self.random_state, "device": self.device, **boost}

    def fit(self, user_items: sp.csr_matrix, callback: IterationCallback | None = None) -> ALS:
        """Fit; `callback(iteration, seconds, loss)` after each iteration (benchmarks)."""
        matrix = user_items.tocsr().astype(np.float32)
        gpu = on_gpu(self.device, self.name)
        if gpu:
            # implicit 0.7's CUDA fit ignores its alpha: the confidences are scaled here and
            # the model gets alpha 1, which is the same objective on either version
            matrix = matrix * np.float32(self.alpha)
        model = self._gpu_model() if gpu else self._cpu_model()
        self._keep_factors(fit_implicit(model, matrix, gpu, callback))
        return self

    def _cpu_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization,
            iterations=self.iterations, alpha=self.alpha, random_state=self.random_state,
            calculate_training_loss=False)

    def _gpu_model(self) -> Any:
        from implicit.gpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=1.0,
            iterations=self.iterations, random_state=self.random_state,
            calculate_training_loss=False)


class _SGDFactorModel(Model):
    """BPR and LMF: implicit's SGD learners, folded in by a ridge solve on their item factors.

    They have no closed-form user solve, so a new history is projected with the ALS solve at
    confidence 1 + `fold_in_alpha` * weight; its ridge term is scaled to the item factors'
    own size (`fold_in_shrinkage` x mean eigenvalue of YtY), fixed at fit time and shipped in
    the bundle meta.
    """

    fold_in_alpha = 1.0
    fold_in_shrinkage = 0.1

    def __init__(self, factors: int, learning_rate: float, regularization: float,
                 iterations: int, random_state: int = 42, num_threads: int = 0):
        self.factors, self.learning_rate = factors, learning_rate
        self.regularization, self.iterations = regularization, iterations
        self.random_state, self.num_threads = random_state, num_threads

    @property  # a property where the base class declares a plain attribute
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.num_threads == 1  # several threads run hogwild SGD

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "learning_rate": self.learning_rate,
                "regularization": self.regularization, "iterations": self.iterations,
                "random_state": self.random_state, "num_threads": self.num_threads}

    def _fitted(self, matrix: sp.csr_matrix) -> Any:
        return fit_implicit(self._implicit_model(), matrix, gpu=False)

    @abc.abstractmethod
    def _implicit_model(self) -> Any: ...

    def fit(self, user_items: sp.csr_matrix) -> _SGDFactorModel:
        self._keep_factors(self._fitted(user_items.tocsr().astype(np.float32)))
        y = self.item_factors.astype(np.float64)
        self.fold_in_regularization = float(
            self.fold_in_shrinkage * np.trace(y.T @ y) / max(y.shape[1], 1) + 1e-6)
        return self


class BPR(_SGDFactorModel):
    """Bayesian Personalized Ranking through `implicit` (item bias as the last factor)."""

    name = "bpr"

    def __init__(self, factors: int = 64, learning_rate: float = 0.01,
                 regularization: float = 0.01, iterations: int = 100, random_state: int = 42,
                 num_threads: int = 0, device: str = "cpu"):
        super().__init__(factors, learning_rate, regularization, iterations, random_state,
                         num_threads)
        self.device = device

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.num_threads == 1 and self.device == "cpu"  # CUDA SGD races as well

    def params(self) -> dict[str, Any]:
        return {**super().params(), "device": self.device}

    def _fitted(self, matrix: sp.csr_matrix) -> Any:
        gpu = on_gpu(self.device, self.name)
        return fit_implicit(self._gpu_model() if gpu else self._implicit_model(), matrix, gpu)

    def _implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            random_state=self.random_state, num_threads=self.num_threads)

    def _gpu_model(self) -> Any:
        from implicit.gpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            random_state=self.random_state)


class LMF(_SGDFactorModel):
    """Logistic Matrix Factorization through `implicit` (user and item biases as factors).

    implicit has no CUDA version of it: `model.device` does not apply."""

    name = "lmf"

    def __init__(self, factors: int = 32, learning_rate: float = 1.0,
                 regularization: float = 0.6, iterations: int = 30, neg_prop: int = 30,
                 random_state: int = 42, num_threads: int = 0):
        super().__init__(factors, learning_rate, regularization, iterations, random_state,
                         num_threads)
        self.neg_prop = neg_prop

    def params(self) -> dict[str, Any]:
        return {**super().params(), "neg_prop": self.neg_prop}

    def _implicit_model(self) -> Any:
        from implicit.cpu.lmf import LogisticMatrixFactorization

        return LogisticMatrixFactorization(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            neg_prop=self.neg_prop, random_state=self.random_state,
            num_threads=self.num_threads)


MODELS: dict[str, type[Model]] = {
    family.name: family for family in (ALS, BPR, LMF, Cosine, BM25, TFIDF, EASE, Popularity)}


def make_model(algorithm: str, **params: Any) -> Model:
    try:
        family = MODELS[algorithm]
    except KeyError:
        raise ValueError(f"model.algorithm: unknown {algorithm!r}, use one of "
                         f"{', '.join(sorted(MODELS))}") from None
    try:
        return family(**params)
    except TypeError as exc:
        raise ValueError(f"model {algorithm!r}: bad parameters {sorted(params)}: {exc}") from None
