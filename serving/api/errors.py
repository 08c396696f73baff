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
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from sluice.auth import AuthError
from sluice.errors import InputError, NotFoundError
from sluice.intake.personalize import MalformedError
from sluice.intake.restjson import NotAcceptableError, UnsupportedMediaError
from sluice.reloads import WorkersBehindError
from sluice.vocabulary import TENANT_PATTERN, TENANT_RULE

PERSONALIZE_PREFIX = "/personalize"
RETRY_AFTER_SECONDS = "5"  # a 503 (the event log cannot take writes) says when to retry


class Problem(BaseModel):
    field: str
    reason: str
    index: int | None = None


class Problems(BaseModel):
    detail: list[Problem]


class AwsError(BaseModel):
    """The AWS rest-json error of the routes under /personalize (boto3 reads `__type`, also
    sent as the `x-amzn-ErrorType` header)."""

    model_config = ConfigDict(populate_by_name=True)
    type: str = Field(alias="__type", examples=["InvalidInputException"])
    message: str


def aws_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The AWS error statuses a Personalize route answers, declared in the OpenAPI schema."""
    described = {400: "InvalidInputException, naming the field (SerializationException, "
                      "naming it too: a member of another JSON type than its model's, or a "
                      "body that is no JSON object)",
                 401: "UnrecognizedClientException: the API key is not valid",
                 403: "AccessDeniedException, MissingAuthenticationTokenException or "
                      "InvalidSignatureException",
                 404: "ResourceNotFoundException, naming the field",
                 406: "NotAcceptableException: the Accept header allows no application/json "
                      "answer",
                 413: "InvalidInputException: the body is too large",
                 415: "UnsupportedMediaTypeException: a body not sent as application/json",
                 503: "ServiceUnavailableException: the event log cannot take writes now; "
                      "retry after Retry-After seconds"}
    return {s: {"model": AwsError, "description": described[s]} for s in statuses}


# a reload (POST /admin/reload, an experiment created or stopped) that another serving
# process had not made within serving.reload_wait_seconds (sluice.reloads)
RELOAD_BEHIND: dict[int | str, dict[str, Any]] = {503: {
    "model": Problems,
    "description": "a serving process of this host had not reloaded within "
                   "serving.reload_wait_seconds; the reason names it (it moves when it gets "
                   "to it, or at its next poll)"}}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {401: "no valid API key", 403: "the key may not do this (role or tenant)",
                 404: "no such resource, naming the field",
                 409: "exists already, or is stored so it cannot be read: naming the field",
                 413: "the body is too large",
                 415: "the body is not sent as JSON (Content-Type: application/json)",
                 422: "invalid input, naming the field",
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
    (MalformedError, 422, "SerializationException", 400),
    (UnsupportedMediaError, 415, "UnsupportedMediaTypeException", 415),
    (NotAcceptableError, 406, "NotAcceptableException", 406),
    (InputError, 422, "InvalidInputException", 400),
)


def input_error(exc: InputError, path: str) -> JSONResponse:
    """The response for wrong input: native `{"detail": [...]}` or AWS shape by route."""
    native, code, status = next((native, code, status) for kind, native, code, status
                                in INPUT_ERRORS if isinstance(exc, kind))
    if path.startswith(PERSONALIZE_PREFIX):
        return aws_error(code, f"{_member(exc.field)}: {exc.reason}", status)
    return problem(native, exc.field, exc.reason)


# what the recommender names in the native API's words, as botocore's members spell it
_MEMBERS = {"item_id": "itemId", "user_id": "userId", "num_results": "numResults"}


def _member(field: str) -> str:
    return _MEMBERS.get(field, field)


def field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "filters", 0, "field")` -> `filters[0].field`."""
    parts = list(loc[1:] if len(loc) > 1 and loc[0] in ("body", "query", "path") else loc)
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

    @app.exception_handler(WorkersBehindError)
    async def _behind(request: Request, exc: WorkersBehindError) -> JSONResponse:
        return problem(503, "workers", str(exc))

    @app.exception_handler(InputError)
    async def _wrong_input(request: Request, exc: InputError) -> JSONResponse:
        return input_error(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if not_json(request, errors):
            sent = request.headers.get("content-type")
            return problem(415, "content-type", "the body must be JSON, sent with "
                           f"`Content-Type: application/json` (got {sent or 'none'})")
        detail = [{"field": "body" if e.get("type") == "json_invalid"  # loc: a char position
                   and tuple(e.get("loc", ()))[:1] == ("body",)  # (not a query parameter's)
                   else field_path(tuple(e.get("loc", ()))), "reason": reason(e)}
                  for e in errors]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own refusals (no such route, method not allowed, a body that could not
        be read) in the same shape as every other error."""
        if isinstance(exc.detail, list):  # already [{field, reason}]
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)
        field = HTTP_FIELDS.get(exc.status_code, "body")
        if request.url.path.startswith(PERSONALIZE_PREFIX):
            return aws_error("UnknownOperationException" if exc.status_code in (404, 405)
                             else "InvalidInputException", f"{field}: {exc.detail}",
                             exc.status_code, headers=dict(exc.headers or {}))
        status = 422 if exc.status_code == 400 else exc.status_code  # an unreadable body
        return problem(status, field, str(exc.detail), headers=dict(exc.headers or {}))


HTTP_FIELDS = {404: "path", 405: "method"}
_BODY_NOT_AN_OBJECT = ("model_attributes_type", "dict_type", "missing")


def not_json(request: Request, errors: Any) -> bool:
    """The body was refused whole because it was not sent as JSON (FastAPI reads a body as
    JSON only with a JSON content type)."""
    sent = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if sent == "application/json" or sent.endswith("+json"):
        return False
    return any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in _BODY_NOT_AN_OBJECT
               for e in errors)


def reason(error: Any) -> str:
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") == "missing":
        return "required: a JSON object"
    if error.get("type") == "extra_forbidden":
        return "not a field of this request (a misspelt name?)"
    if error.get("type") == "json_invalid" and tuple(error.get("loc", ()))[:1] == ("query",):
        return f"{error.get('msg')}: a query parameter of JSON (a `filters` condition) holds " \
               'one JSON object, e.g. {"field": "color", "op": "eq", "value": "red"}'
    if (error.get("ctx") or {}).get("pattern") == TENANT_PATTERN:  # the rule, not its regex
        return f"a tenant is {TENANT_RULE}, got {error.get('input')!r:.80}"
    expected = _EXPECTED.get(str(error.get("type")))
    if expected is not None and "input" in error:  # in /v1/events' words
        value = error["input"]
        return f"must be {expected}, got {_json_kind(value)} {value!r:.40}"
    return str(error.get("msg"))


# pydantic's type errors, said as /v1/events says them (sluice.intake.values)
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
             "int_from_float": "an integer", "float_type": "a number",
             "float_parsing": "a number", "bool_type": "true or false",
             "bool_parsing": "true or false", "list_type": "an array",
             "dict_type": "a JSON object", "model_type": "a JSON object",
             "model_attributes_type": "a JSON object"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    kinds: dict[type, str] = {str: "string", dict: "object", list: "array"}
    return kinds.get(type(value), type(value).__name__)
