"""One settings object: environment for paths and ports, config/sluice.yaml for the rest."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class ModelConfig(BaseModel):
    name: str = "sluice"
    algorithm: str = "als"
    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(0.05, ge=0)
    iterations: int = Field(15, ge=1, le=500)
    alpha: float = Field(2.0, gt=0)
    random_state: int = 42


class EvaluationConfig(BaseModel):
    holdout_fraction: float = Field(0.1, gt=0, lt=0.9)
    k: int = Field(10, ge=1, le=500)
    gate_metric: str = "ndcg_at_10"


class ServingConfig(BaseModel):
    default_num_results: int = Field(25, ge=1, le=500)
    max_num_results: int = Field(500, ge=1, le=500)
    popular_list_size: int = Field(1000, ge=10)
    model_poll_seconds: float = Field(10, gt=0)
    log_poll_seconds: float = Field(0.2, gt=0)


class TrackerConfig(BaseModel):
    tracking_id: str = Field(min_length=1, max_length=256)
    tenant: str = Field("default", min_length=1, max_length=64)


class AppConfig(BaseModel):
    """What config/sluice.yaml holds."""

    events: EventsConfig = Field(default_factory=EventsConfig)
    sufficiency: SufficiencyConfig = Field(default_factory=SufficiencyConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    trackers: list[TrackerConfig] = Field(default_factory=list)

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


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate."""


def load_app_config(path: Path) -> AppConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found: set SLUICE_CONFIG") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return AppConfig.model_validate(raw)
    except Exception as exc:
        raise ConfigError(f"config file {path} is invalid: {exc}") from exc


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
