"""Config sections of the batch side: events, matrix, models, evaluation, tuning, registry."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator


class EventsConfig(BaseModel):
    weights: dict[str, float] = Field(default_factory=lambda: {"click": 1.0, "purchase": 4.0})
    event_value_threshold: float | None = None
    anonymous_user_prefix: str = "session:"
    item_fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one interaction type needs a weight")
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"weights must be positive, got {bad}")
        return value


class SufficiencyConfig(BaseModel):
    min_interactions: int = Field(1000, ge=0)
    min_users_with_two_interactions: int = Field(25, ge=0)


class MatrixConfig(BaseModel):
    """How the interactions mart becomes the training matrix (type weights come from events)."""

    use_event_value: bool = False
    event_value_types: list[str] = Field(default_factory=list)
    half_life_days: float | None = Field(None, gt=0)
    # each user's latest events weigh more, by position in their own history: an event's
    # weight x (1 + recency_boost * 0.5 ** (events after it / recency_half_life)), for the
    # families in recency_models and with weighting none; 0: off
    recency_boost: float = Field(32.0, ge=0)
    recency_half_life: float = Field(5.0, gt=0)
    recency_models: list[str] = Field(default_factory=lambda: ["als"])
    weighting: Literal["none", "bm25", "tfidf"] = "none"
    bm25_k1: float = Field(100.0, gt=0)
    bm25_b: float = Field(0.8, ge=0, le=1)

    @field_validator("recency_models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(MODEL_ALGORITHMS))
        if unknown:
            raise ValueError(f"unknown algorithms {unknown}, use {list(MODEL_ALGORITHMS)}")
        return value


class BPRConfig(BaseModel):
    factors: int = Field(64, ge=2, le=1024)
    learning_rate: float = Field(0.01, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(100, ge=1, le=5000)


class LMFConfig(BaseModel):
    factors: int = Field(32, ge=2, le=1024)
    learning_rate: float = Field(1.0, gt=0)
    regularization: float = Field(0.6, ge=0)
    iterations: int = Field(30, ge=1, le=5000)
    neg_prop: int = Field(30, ge=1)


class ItemItemConfig(BaseModel):
    neighbours: int = Field(100, ge=1)
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    max_dense_cells: int = Field(50_000_000, ge=1)


class EASEConfig(BaseModel):
    l2: float = Field(500.0, gt=0)
    max_items: int = Field(20_000, ge=1)   # its item x item solve: items^2 x 8 bytes


Algorithm = Literal["als", "bpr", "lmf", "cosine", "bm25", "tfidf", "ease", "popularity"]
MODEL_ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
GPU_ALGORITHMS = ("als", "bpr")  # the families implicit has CUDA versions of


class ModelConfig(BaseModel):
    name: str = "sluice"
    algorithm: Algorithm = "als"
    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(10.0, ge=0)   # as config/sluice.yaml ships them
    iterations: int = Field(15, ge=1, le=500)
    alpha: float = Field(0.125, gt=0)
    random_state: int = 42
    # where ALS and BPR train: cpu, gpu (implicit's CUDA models; an error without CUDA) or
    # auto (the GPU when implicit finds one, else the CPU); the bundle always holds CPU arrays
    device: Literal["cpu", "gpu", "auto"] = "cpu"
    bpr: BPRConfig = Field(default_factory=BPRConfig)
    lmf: LMFConfig = Field(default_factory=LMFConfig)
    item_item: ItemItemConfig = Field(default_factory=ItemItemConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    similar_items_neighbours: int = Field(50, ge=1, le=1000)

    def params(self, algorithm: str | None = None) -> dict[str, Any]:
        """The constructor parameters of `algorithm` (default: the configured one)."""
        algorithm = algorithm or self.algorithm
        seed: dict[str, Any] = {"random_state": self.random_state}
        if algorithm in GPU_ALGORITHMS:
            seed["device"] = self.device
        if algorithm == "als":
            return {"factors": self.factors, "regularization": self.regularization,
                    "iterations": self.iterations, "alpha": self.alpha, **seed}
        if algorithm == "bpr":
            return {**self.bpr.model_dump(), **seed}
        if algorithm == "lmf":
            return {**self.lmf.model_dump(), **seed}
        if algorithm in ("cosine", "tfidf"):
            return {"neighbours": self.item_item.neighbours,
                    "max_dense_cells": self.item_item.max_dense_cells}
        if algorithm == "ease":
            return {**self.ease.model_dump(), "max_dense_cells": self.item_item.max_dense_cells}
        if algorithm == "bm25":
            return {"neighbours": self.item_item.neighbours, "k1": self.item_item.bm25_k1,
                    "b": self.item_item.bm25_b, "max_dense_cells": self.item_item.max_dense_cells}
        return {}


class AttributesConfig(BaseModel):
    """The attribute index (sluice.learn.attributes): items' neighbours by their fields."""

    fields: dict[str, float] = Field(default_factory=dict)  # name -> weight; {}: item_fields
    text_fields: list[str] = Field(default_factory=list)  # string fields split into words
    neighbours: int = Field(50, ge=1, le=1000)
    numeric_bins: int = Field(10, ge=2, le=1000)
    max_df: float = Field(0.5, gt=0, le=1)  # values held by more items than this are dropped
    max_items_per_value: int = Field(1000, ge=2)  # ... or by more than this many (build cost)
    cold_item_interactions: int = Field(5, ge=0)  # similar_items blends attributes below it

    @field_validator("fields")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"field weights must be positive, got {bad}")
        return value


class EvaluationConfig(BaseModel):
    holdout_fraction: float = Field(0.1, gt=0, lt=0.9)
    k: int = Field(10, ge=1, le=500)
    gate_metric: str = "ndcg_at_10"
    protocol: Literal["time", "leave_last_out", "per_user"] = "time"
    leave_out: int = Field(1, ge=1, le=100)
    min_users: int = Field(200, ge=1)     # fewer evaluated: widen the time window, then per_user
    widen_to: float = Field(0.3, gt=0, lt=0.9)
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000)  # and the gate's sign draws
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 20261201
    gate_confidence: float = Field(0.95, gt=0.5, lt=1)
    gate_min_lift: float | None = Field(None, gt=0)   # promote at this relative lift anyway
    gate_min_users: int = Field(100, ge=1)  # fewer evaluated users promote nothing
    # off-policy: cap each logged slot's weight 1/propensity at this (lower variance, biased
    # low); None: unclipped
    off_policy_clip: float | None = Field(None, ge=1)
    # off-policy: below this effective sample (answers) an estimate is a small sample and DR
    # rests on its reward model; below this share of the candidate's slots reached by the
    # logged clicks (the mean weight), DR rests on its reward model too (benchmarks/README.md)
    off_policy_min_ess: float = Field(100.0, ge=1)
    off_policy_min_support: float = Field(0.85, gt=0, le=1)


class RegistryConfig(BaseModel):
    """Retention after each training run (sluice/learn/versions.py)."""

    keep_candidates: int = Field(5, ge=1)  # besides the champion and the one it replaced


class TuneConfig(BaseModel):
    """Hyperparameter search for flow `tune`: Optuna (TPE) within a time budget, one nested
    run per trial; `grid` narrows a parameter to listed values (else the built-in range)."""

    algorithm: Algorithm | None = None   # default: model.algorithm
    trials: int = Field(40, ge=1, le=5000)
    time_budget_seconds: float = Field(900.0, gt=0)
    seed: int = 7
    grid: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)

    @field_validator("grid")
    @classmethod
    def _grid_known(cls, value: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, list]]:
        unknown = sorted(set(value) - set(MODEL_ALGORITHMS))
        if unknown:
            raise ValueError(f"unknown algorithms {unknown}, use {list(MODEL_ALGORITHMS)}")
        empty = sorted(f"{a}.{p}" for a, ps in value.items() for p, vs in ps.items() if not vs)
        if empty:
            raise ValueError(f"every grid parameter needs at least one value, {empty} have none")
        return value
