"""Config sections of access: trackers and credentials."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from sluice.vocabulary import (
    DEFAULT_TENANT,
    MAX_ID_LENGTH,
    TENANT_NAME,
    TENANT_PATTERN,
)


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
