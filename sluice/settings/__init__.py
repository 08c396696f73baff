"""One settings object: environment for paths and ports, config/sluice.yaml for the rest.

The config sections live beside this module by side of the data flow (learning, serving,
access); they are re-exported here so that `from sluice.settings import X` names every one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sluice.settings.access import (  # noqa: F401 (re-exported)
    ApiKeyConfig,
    AuthConfig,
    AwsKeyConfig,
    Role,
    TrackerConfig,
    _Credential,
)
from sluice.settings.keys import unknown_keys
from sluice.settings.learning import (  # noqa: F401 (re-exported)
    MODEL_ALGORITHMS,
    Algorithm,
    AttributesConfig,
    BPRConfig,
    EASEConfig,
    EvaluationConfig,
    EventsConfig,
    ItemItemConfig,
    LMFConfig,
    MatrixConfig,
    ModelConfig,
    RegistryConfig,
    SufficiencyConfig,
    TuneConfig,
)
from sluice.settings.serving import (  # noqa: F401 (re-exported)
    AlertsConfig,
    AnnConfig,
    ExperimentsConfig,
    ExplorationConfig,
    ServingConfig,
    TemplateConfig,
    TierShareThreshold,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "sluice.yaml"


class WarehouseConfig(BaseModel):
    """Which warehouse the batch path uses: the DuckDB file under SLUICE_HOME (default), or
    the PostgreSQL server whose DSN is in SLUICE_WAREHOUSE_DSN (never in this file: it may
    hold a password)."""

    engine: Literal["duckdb", "postgres"] = "duckdb"


class AppConfig(BaseModel):
    """What config/sluice.yaml holds."""

    format_version: int = Field(1, ge=1)  # sluice/formats.py; absent: 1
    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
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
    # where `sluice up` runs the Prefect server and its UI, and where CLI flows look for it
    prefect_port: int = Field(4200, ge=1, le=65535)
    mlflow_tracking_uri: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'mlflow' / 'mlflow.db'}",
        validation_alias="MLFLOW_TRACKING_URI",
    )
    # a folder, or a URL MLflow writes to itself (s3://bucket/prefix, with boto3's credentials
    # and AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL for MinIO or another S3 API)
    mlflow_artifacts: str | None = None
    # fsspec URLs (memory://, file://, s3:// with s3fs, ...) for the raw log and landing folder
    raw_url: str | None = None
    landing_url: str | None = None
    # the PostgreSQL warehouse's DSN, when warehouse.engine is postgres; a secret (not shown)
    warehouse_dsn: SecretStr | None = None

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

    def require_warehouse_dsn(self) -> str:
        if self.warehouse_dsn is None or not self.warehouse_dsn.get_secret_value().strip():
            raise ConfigError("warehouse.engine is postgres but SLUICE_WAREHOUSE_DSN is not set: "
                              "set it to the server's DSN, e.g. "
                              "postgresql://sluice@db.example:5432/sluice")
        return self.warehouse_dsn.get_secret_value()

    @property
    def artifact_root(self) -> Path | str:
        """Where MLflow artifacts go: SLUICE_MLFLOW_ARTIFACTS (a folder, or a URL kept as a
        string), else beside a SQLite store, else under SLUICE_HOME."""
        if self.mlflow_artifacts:
            if "://" in self.mlflow_artifacts:
                return self.mlflow_artifacts.rstrip("/")
            return Path(self.mlflow_artifacts).expanduser().resolve()
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
        raise ConfigError(f"config file {path} is not valid YAML: {_one_line(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    _check_format(raw, path)
    unknown = unknown_keys(AppConfig, raw)
    if unknown:
        raise ConfigError(f"config file {path} is invalid: {'; '.join(unknown)}")
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file {path} is invalid: {validation_message(exc)}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(f"config file {path} is invalid: {exc}") from None


def _one_line(exc: Exception) -> str:
    """A YAML error's lines (what, where, the line quoted with a caret) as one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())


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
