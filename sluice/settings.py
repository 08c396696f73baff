"""One settings object: environment for paths and ports, config/sluice.yaml for the rest."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluice.vocabulary import (
    DEFAULT_NUM_RESULTS,
    DEFAULT_TENANT,
    MAX_ID_LENGTH,
    MAX_NUM_RESULTS,
    MIN_NUM_RESULTS,
    PERSONALIZED,
    TEMPLATES,
    TENANT_NAME,
    TENANT_PATTERN,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "sluice.yaml"


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
    weighting: Literal["none", "bm25", "tfidf"] = "none"
    bm25_k1: float = Field(100.0, gt=0)
    bm25_b: float = Field(0.8, ge=0, le=1)


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


class ModelConfig(BaseModel):
    name: str = "sluice"
    algorithm: Algorithm = "als"
    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(0.05, ge=0)
    iterations: int = Field(15, ge=1, le=500)
    alpha: float = Field(2.0, gt=0)
    random_state: int = 42
    bpr: BPRConfig = Field(default_factory=BPRConfig)
    lmf: LMFConfig = Field(default_factory=LMFConfig)
    item_item: ItemItemConfig = Field(default_factory=ItemItemConfig)
    ease: EASEConfig = Field(default_factory=EASEConfig)
    similar_items_neighbours: int = Field(50, ge=1, le=1000)

    def params(self, algorithm: str | None = None) -> dict[str, Any]:
        """The constructor parameters of `algorithm` (default: the configured one)."""
        algorithm = algorithm or self.algorithm
        seed = {"random_state": self.random_state}
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
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 20261201
    gate_confidence: float = Field(0.95, gt=0.5, lt=1)
    gate_min_lift: float | None = Field(None, gt=0)   # promote at this relative lift anyway


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


class ServingConfig(BaseModel):
    # what a request without num_results gets, and the most one may ask for (a larger one is
    # refused with 422 naming num_results); both within vocabulary's MAX_NUM_RESULTS
    default_num_results: int = Field(DEFAULT_NUM_RESULTS, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    max_num_results: int = Field(MAX_NUM_RESULTS, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    popular_list_size: int = Field(1000, ge=10)
    model_poll_seconds: float = Field(10, gt=0)
    log_poll_seconds: float = Field(0.2, gt=0)
    # each trained user's best unseen items, computed by the train flow into the bundle so
    # that most answers read a list instead of scoring every item (0: score every request)
    precomputed_candidates: int = Field(100, ge=0, le=1000)
    ranking_cache_size: int = Field(50_000, ge=0)  # users whose computed ranking head is kept

    @model_validator(mode="after")
    def _default_within_max(self) -> ServingConfig:
        if self.default_num_results > self.max_num_results:
            raise ValueError(f"default_num_results ({self.default_num_results}) is above "
                             f"max_num_results ({self.max_num_results})")
        return self


class ExplorationConfig(BaseModel):
    # the share of the model tier's slots given to items drawn from the model's next
    # candidates (sluice.serve.exploration); 0 is off, else within 0.05-0.3: below, the
    # off-policy estimates see too few explored slots to weigh; above, answers get worse
    share: float = Field(0.0, ge=0.0, le=0.3)

    @field_validator("share")
    @classmethod
    def _off_or_in_range(cls, value: float) -> float:
        if 0 < value < 0.05:
            raise ValueError("0 (off) or from 0.05 to 0.3")
        return value


class TemplateConfig(BaseModel):
    """A named template: a built-in chain (`base`) with static filters and defaults."""

    base: str = PERSONALIZED
    filters: list[dict[str, Any]] = Field(default_factory=list)
    num_results: int | None = Field(None, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS)
    fill_with_random: bool | None = None
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)

    @field_validator("base")
    @classmethod
    def _known_base(cls, value: str) -> str:
        if value not in TEMPLATES:
            raise ValueError(f"base must be one of {', '.join(TEMPLATES)}")
        return value


class TierShareThreshold(BaseModel):
    """Where slots come from, per tenant and template ("*": any), over alerts.window_minutes:
    an alert when the personalized share falls below, or the fallback share (model_fallback
    + fallback) rises above."""

    tenant: str = "*"
    template: str = "*"
    min_personalized_share: float | None = Field(None, ge=0, le=1)
    max_fallback_share: float | None = Field(None, ge=0, le=1)


class AlertsConfig(BaseModel):
    # the marts are as fresh as the last transform (the refresh deployment: every 2 hours)
    window_minutes: int = Field(180, ge=1, le=7 * 24 * 60)
    min_slots: int = Field(100, ge=1)  # fewer slots in the window: too few to judge
    tier_shares: list[TierShareThreshold] = Field(default_factory=list)


class TrackerConfig(BaseModel):
    tracking_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    tenant: str = Field(DEFAULT_TENANT, pattern=TENANT_PATTERN)


Role = Literal["read", "write", "admin"]
_TENANT_OR_ANY = rf"^(\*|{TENANT_NAME})$"


class _Credential(BaseModel):
    """Who a credential is (role, tenant or `*`); `name` labels it in logs instead of the key."""

    role: Role
    tenant: str = Field(DEFAULT_TENANT, pattern=_TENANT_OR_ANY)
    name: str | None = Field(None, max_length=64)
    demo: bool = False  # a publicly known key: serving keeps to loopback while one is active


class ApiKeyConfig(_Credential):
    """An API key, inline (`key`) or from an environment variable (`key_env`)."""

    key: SecretStr | None = None
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give exactly one of `key` and `key_env`")
        return self


class AwsKeyConfig(_Credential):
    """An AWS access key pair that may sign (SigV4) calls to the Personalize API."""

    access_key_id: str = Field(min_length=1, max_length=128)
    secret_access_key: SecretStr | None = None
    secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _one_source(self) -> AwsKeyConfig:
        if (self.secret_access_key is None) == (self.secret_env is None):
            raise ValueError("give exactly one of `secret_access_key` and `secret_env`")
        return self


class AuthConfig(BaseModel):
    """No keys at all: auth is off and serving answers loopback clients only."""

    keys: list[ApiKeyConfig] = Field(default_factory=list)
    aws_access_keys: list[AwsKeyConfig] = Field(default_factory=list)


class ExperimentsConfig(BaseModel):
    """The decision flow over running experiments (flows/experiments.py)."""

    min_units_per_arm: int = Field(100, ge=1)  # fewer: keep running, whatever the interval
    auto_promote: bool = False  # move `champion` to a challenger whose interval excludes 0


class AppConfig(BaseModel):
    """What config/sluice.yaml holds."""

    format_version: int = Field(1, ge=1)  # sluice/formats.py; absent: 1
    events: EventsConfig = Field(default_factory=EventsConfig)
    sufficiency: SufficiencyConfig = Field(default_factory=SufficiencyConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    attributes: AttributesConfig = Field(default_factory=AttributesConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    trackers: list[TrackerConfig] = Field(default_factory=list)
    templates: dict[str, TemplateConfig] = Field(default_factory=dict)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    filters: dict[str, str] = Field(default_factory=dict)  # name -> Personalize expression
    auth: AuthConfig = Field(default_factory=AuthConfig)
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)

    @model_validator(mode="after")
    def _filters_parse(self) -> AppConfig:
        from sluice.filters import FilterError, check_syntax, parse_conditions

        try:
            for name, template in self.templates.items():
                parse_conditions(template.filters, where=f"templates.{name}.filters")
            for name, expression in self.filters.items():
                try:
                    check_syntax(expression)
                except FilterError as exc:
                    raise FilterError(f"filters.{name}", exc.reason) from None
        except FilterError as exc:
            raise ValueError(f"{exc.field}: {exc.reason}") from None
        return self

    @model_validator(mode="after")
    def _templates_within_max(self) -> AppConfig:
        limit = self.serving.max_num_results
        over = sorted(n for n, t in self.templates.items() if (t.num_results or 0) > limit)
        if over:
            raise ValueError(f"templates {over}: num_results above serving.max_num_results "
                             f"({limit})")
        return self

    @model_validator(mode="after")
    def _one_tracker_per_tenant(self) -> AppConfig:
        tenants = [t.tenant for t in self.trackers]
        dupes = sorted({t for t in tenants if tenants.count(t) > 1})
        if dupes:
            raise ValueError(f"trackers: only one tracker per tenant, {dupes} have several")
        return self


class Settings(BaseSettings):
    """Paths and ports from the environment; the rest from the YAML file it names."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    home: Path = Path("data")
    config: Path = DEFAULT_CONFIG
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    mlflow_tracking_uri: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'mlflow' / 'mlflow.db'}",
        validation_alias="MLFLOW_TRACKING_URI",
    )
    mlflow_artifacts: Path | None = None
    # fsspec URLs (memory://, file://, s3:// with s3fs, ...) for the raw log and landing folder
    raw_url: str | None = None
    landing_url: str | None = None

    @field_validator("home", "config", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @functools.cached_property
    def app(self) -> AppConfig:
        return load_app_config(self.config)

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def raw_location(self) -> Path | str:
        """SLUICE_RAW_URL when set (read and written through fsspec), else `raw_dir`."""
        return self.raw_url or self.raw_dir

    @property
    def landing_location(self) -> Path | str:
        """SLUICE_LANDING_URL when set (read through fsspec), else `landing_dir`."""
        return self.landing_url or self.landing_dir

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def artifact_root(self) -> Path:
        """Where MLflow artifacts go: beside a SQLite store, else under SLUICE_HOME."""
        if self.mlflow_artifacts is not None:
            return self.mlflow_artifacts.expanduser().resolve()
        uri = self.mlflow_tracking_uri
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts"
        return self.home / "mlflow-artifacts"

    def registered_model_name(self, tenant: str) -> str:
        return f"{self.app.model.name}-{tenant}"

    def dbt_vars(self) -> dict[str, Any]:
        return {
            "events": self.app.events.model_dump(),
            "sufficiency": self.app.sufficiency.model_dump(),
        }


MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate."""


def load_app_config(path: Path) -> AppConfig:
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found: set SLUICE_CONFIG") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    _check_format(raw, path)
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path} is invalid: {validation_message(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(f"config file {path} is invalid: {exc}") from None


def _check_format(raw: dict[str, Any], path: Path) -> None:
    from sluice.formats import FormatTooNewError, check

    version = raw.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool):
        try:
            check("config", version, f"config file {path}")
        except FormatTooNewError as exc:
            raise ConfigError(str(exc)) from None


def validation_message(exc: ValidationError) -> str:
    """Each error as `where: why`, without the offending input (it may be a secret)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
