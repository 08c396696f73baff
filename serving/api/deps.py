"""Annotated dependencies shared by the routes: the service, metrics and who is calling.

Authentication lives in `sluice.auth`; these only take the credential off the request. An
`AuthError` raised here becomes a 401/403 in the native or the AWS shape (serving/api/errors).
They are `async def` because they never wait on anything: FastAPI runs a plain `def`
dependency in its thread pool, a hand-off per dependency per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.api.metrics import Metrics
from sluice.auth import (
    LOOPBACK_ONLY,
    SIGV4_ALGORITHM,
    AuthError,
    KeyTable,
    Principal,
    is_loopback,
    presented_key,
)
from sluice.serve.service import Service

_api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="ApiKey",
                        description="an API key from config `auth.keys` or SLUICE_API_KEYS")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer",
                     description="the same API key as `Authorization: Bearer KEY`")


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServiceDep = Annotated[Service, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _keys(request: Request) -> KeyTable:
    return request.app.state.service.keys


def _loopback_only(request: Request) -> Principal:
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise AuthError(403, "authorization", "auth is off (no API keys configured): only "
                        "loopback clients are served")
    return LOOPBACK_ONLY


async def caller(request: Request,
           api_key: Annotated[str | None, Security(_api_key)] = None,
           bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
           ) -> Principal:
    """The principal behind `X-Api-Key` or `Authorization: Bearer`; 401 without one."""
    keys = _keys(request)
    if not keys.enabled:
        return _loopback_only(request)
    return keys.authenticate(api_key or (bearer.credentials if bearer else None))


def requires(action: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        principal.require(action)
        return principal

    return check


Reader = Annotated[Principal, Depends(requires("read"))]
Writer = Annotated[Principal, Depends(requires("write"))]
Admin = Annotated[Principal, Depends(requires("admin"))]


async def aws_caller(request: Request) -> Principal | None:
    """Personalize API: a SigV4 signature (when access keys are configured) or an API key.

    None when the call carries neither; PutEvents may still go on its trackingId alone.
    """
    keys = _keys(request)
    if not keys.enabled:
        return _loopback_only(request)
    if keys.signatures and request.headers.get("authorization", "").startswith(SIGV4_ALGORITHM):
        body = await request.body()
        path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        return keys.verify_sigv4(request.method, path, request.url.query, request.headers, body)
    key = presented_key(request.headers)
    return keys.authenticate(key) if key else None


AwsCaller = Annotated[Principal | None, Depends(aws_caller)]
