"""One error shape for the native API, `{"detail": [{"field", "reason", "index"?}]}`, and the
AWS rest-json shape under /personalize; both are declared in the OpenAPI schema.

Every `sluice.errors.InputError` (events, filters, recommendation and Personalize parameters)
is mapped here, once: the native API answers its status with the field and the reason, the
Personalize API the AWS error type boto3 raises."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sluice.auth import AuthError
from sluice.errors import InputError, NotFoundError

PERSONALIZE_PREFIX = "/personalize"
RETRY_AFTER_SECONDS = "5"  # a 503 (the event log cannot take writes) says when to retry


class Problem(BaseModel):
    field: str
    reason: str
    index: int | None = None


class Problems(BaseModel):
    detail: list[Problem]


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {401: "no valid API key", 403: "the key may not do this (role or tenant)",
                 404: "no such resource, naming the field",
                 413: "the body is too large", 422: "invalid input, naming the field",
                 503: "the event log cannot take writes now; retry"}
    return {s: {"model": Problems, "description": described[s]} for s in statuses}


def problem(status: int, field: str, reason: str, index: int | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    detail: dict[str, Any] = {"field": field, "reason": reason}
    if index is not None:
        detail["index"] = index
    return JSONResponse({"detail": [detail]}, status_code=status, headers=headers)


def aws_error(code: str, message: str, status: int,
              headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"__type": code, "message": message}, status_code=status,
                        headers={"x-amzn-ErrorType": code, **(headers or {})})


# (native status, AWS error type, AWS status) by error class, the most specific first
INPUT_ERRORS: tuple[tuple[type[InputError], int, str, int], ...] = (
    (NotFoundError, 404, "ResourceNotFoundException", 404),
    (InputError, 422, "InvalidInputException", 400),
)


def input_error(exc: InputError, path: str) -> JSONResponse:
    """The response for wrong input: native `{"detail": [...]}` or AWS shape by route."""
    native, code, status = next((native, code, status) for kind, native, code, status
                                in INPUT_ERRORS if isinstance(exc, kind))
    if path.startswith(PERSONALIZE_PREFIX):
        return aws_error(code, f"{exc.field}: {exc.reason}", status)
    return problem(native, exc.field, exc.reason)


def field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "filters", 0, "field")` -> `filters[0].field`."""
    parts = list(loc[1:] if len(loc) > 1 and loc[0] in ("body", "query") else loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _refused(request: Request, exc: AuthError) -> JSONResponse:
        app.state.metrics.refused.labels(str(exc.status)).inc()
        if request.url.path.startswith(PERSONALIZE_PREFIX):
            return aws_error(exc.code, f"{exc.field}: {exc.reason}", exc.status)
        headers = {"WWW-Authenticate": 'Bearer realm="sluice"'} if exc.status == 401 else None
        return problem(exc.status, exc.field, exc.reason, headers=headers)

    @app.exception_handler(InputError)
    async def _wrong_input(request: Request, exc: InputError) -> JSONResponse:
        return input_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": "body" if e.get("type") == "json_invalid"  # loc: a char position
                   else field_path(tuple(e.get("loc", ()))), "reason": str(e.get("msg"))}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)
