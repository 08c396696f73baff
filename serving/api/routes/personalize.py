"""Personalize-compatible API under /personalize, for the real boto3 clients.

    boto3.client("personalize-events", endpoint_url="http://HOST:PORT/personalize")
    boto3.client("personalize-runtime", endpoint_url="http://HOST:PORT/personalize")

Errors use the AWS rest-json shape (`x-amzn-ErrorType` + `{"message"}`), so boto3 raises
`InvalidInputException` / `ResourceNotFoundException`: every `InputError` raised here maps to
it in serving/api/errors.py.

Credentials: PutEvents is authorised by its trackingId; PutItems, PutUsers and the runtime
calls by an API key (`X-Api-Key`) of the dataset group's tenant. With `auth.aws_access_keys`
configured, every call must also be SigV4-signed by one of them (or carry an API key), so a
boto3 client with a wrong secret is refused.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from serving.api import answers
from serving.api import personalize_bodies as bodies
from serving.api.deps import AwsCaller, MetricsDep, ServiceDep
from serving.api.errors import RETRY_AFTER_SECONDS, aws_error, aws_responses
from serving.api.limits import BIG_BODY
from serving.api.metrics import Metrics, field_label
from sluice.auth import AuthError, Principal
from sluice.errors import InputError, NotFoundError
from sluice.intake import personalize, restjson
from sluice.intake.eventlog import LogWriteError
from sluice.intake.events import check_id
from sluice.intake.limits import loads_exact, without_bom
from sluice.intake.personalize import PersonalizeError
from sluice.serve import personalize as runtime
from sluice.serve.answers import Answer, RecommendationRequest
from sluice.serve.service import Service
from sluice.vocabulary import (
    DEFAULT_TENANT,
    MAX_ID_LENGTH,
    PERSONALIZED,
    SIMILAR_ITEMS,
    TEMPLATES,
    TENANT_NAME,
)

router = APIRouter(prefix="/personalize", tags=["personalize"],
                   responses=aws_responses(400, 401, 403, 404, 406, 413, 415))
# each operation's body limit: the largest body botocore sends (serving/api/personalize_bodies)
MAX_EVENTS_BODY_BYTES = bodies.PUT_EVENTS
MAX_ITEMS_BODY_BYTES, MAX_USERS_BODY_BYTES = bodies.PUT_ITEMS, bodies.PUT_USERS
MAX_RECOMMENDATIONS_BODY_BYTES = bodies.GET_RECOMMENDATIONS
MAX_RANKING_BODY_BYTES = bodies.GET_PERSONALIZED_RANKING
MAX_BODY_BYTES = 1024 * 1024  # any other path: refused by name, its body unread
MAX_RANKING_INPUT = bodies.MAX_RANKING_INPUT


def _json_body(required: list[str], **properties: Any) -> dict[str, Any]:
    """The request body as botocore sends it, for the OpenAPI schema (and its fuzzing)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


_STR = {"type": "string"}
_ID = {"type": "string", "minLength": 1, "maxLength": 256}  # the id rule of both APIs
_LIST = {"type": "array", "items": _STR}
_DATASET = {kind: {"type": "string", "pattern": f"^arn:aws:personalize:[a-z0-9-]{{1,12}}:"
                                                f"[0-9]{{12}}:dataset/{TENANT_NAME}/{kind}$"}
            for kind in ("ITEMS", "USERS")}
# `<campaign|recommender>/<dataset group>`, or with a template's name after it (the last part
# selects that template; sluice.serve.personalize.campaign)
_CAMPAIGN, _RECOMMENDER = ({"type": "string", "pattern": f"^arn:aws:personalize:[a-z0-9-]{{1,12}}:"
                                                         f"[0-9]{{12}}:{kind}/{TENANT_NAME}"
                                                         "(/[^/]+)?$"}
                           for kind in ("campaign", "recommender"))
_MAP = {"type": "object", "additionalProperties": _STR}
_PUT_EVENTS = _json_body(
    ["trackingId", "sessionId", "eventList"], trackingId=_STR, sessionId=_ID, userId=_ID,
    eventList={"type": "array", "items": {
        "type": "object", "required": ["eventType", "sentAt"],
        "properties": {"eventId": _STR, "eventType": _STR, "eventValue": {"type": "number"},
                       "itemId": _ID, "sentAt": {"type": "number"}, "properties": _STR,
                       "recommendationId": _STR, "impression": _LIST,
                       "metricAttribution": {"type": "object", "required": [
                           "eventAttributionSource"], "properties": {
                               "eventAttributionSource": _STR}}}}})
_ENTITIES = {kind: _json_body(["datasetArn", kind], datasetArn=_DATASET[kind.upper()], **{kind: {
    "type": "array", "items": {"type": "object", "required": [key],
                               "properties": {key: _STR, "properties": _STR}}}})
    for kind, key in (("items", "itemId"), ("users", "userId"))}
_SHARED = {"context": _MAP, "filterArn": _STR, "filterValues": _MAP, "metadataColumns": {
    "type": "object", "properties": {"ITEMS": _LIST}, "additionalProperties": False}}
_GET_RECOMMENDATIONS = _json_body(  # campaignArn or recommenderArn
    [], campaignArn=_CAMPAIGN, recommenderArn=_RECOMMENDER, userId=_ID, itemId=_ID,
    numResults={"type": "integer"}, **_SHARED,
    promotions={"type": "array", "maxItems": 0, "description": "not supported: refused"})
_GET_RANKING = _json_body(["campaignArn", "userId", "inputList"], campaignArn=_CAMPAIGN,
                          userId=_ID, inputList=_LIST, **_SHARED)


def _allowed(principal: Principal | None, action: str, tenant: str | None = None) -> None:
    if principal is None:
        raise AuthError(403, "authorization", "sign the request (SigV4) with a configured "
                        "access key, or send X-Api-Key", "MissingAuthenticationTokenException")
    principal.require(action, tenant)


async def _body(request: Request, limit: int, shape: restjson.Shape) -> dict[str, Any]:
    """The request's JSON object (every rest-json operation takes one), each member of the
    operation's input `shape` of its JSON type (sluice/intake/restjson.py), once its media
    types are restJson1's: a body not sent as application/json is a 415, an Accept that
    allows no JSON answer a 406. The callers authenticate first, as AWS's front end does: a
    call without a credential is a 403 whatever its body (for PutEvents the body is the
    credential, its trackingId). A large body is read (its depth measured, parsed) off the
    event loop."""
    raw = await request.body()
    if len(raw) > limit:
        raise PersonalizeError("body", f"larger than {limit} bytes")
    restjson.check_media_types(request.headers.get("content-type"),
                               request.headers.get("accept"), bool(raw))
    read = partial(restjson.read_body, without_bom(raw) or b"{}", loads_exact, shape)
    return await run_in_threadpool(read) if len(raw) > BIG_BODY else read()


async def _store(service: Service, events: list[dict[str, Any]],
                 metrics: Metrics) -> JSONResponse:
    try:
        await run_in_threadpool(service.accept, events)
    except LogWriteError as exc:
        return aws_error("ServiceUnavailableException", f"events not stored, retry: {exc}", 503,
                         headers={"Retry-After": RETRY_AFTER_SECONDS})
    for event in events:
        metrics.events.labels("accepted", event["event"], event["tenant"], "").inc()
    return JSONResponse({})


@router.post("/events", openapi_extra=_PUT_EVENTS, responses=aws_responses(503))
async def put_events(request: Request, principal: AwsCaller, service: ServiceDep,
                     metrics: MetricsDep) -> JSONResponse:
    """PutEvents: up to 10 interactions of one session, for the tracker's tenant."""
    if principal is None and service.keys.signatures:
        _allowed(principal, "write")
    try:
        body = await _body(request, MAX_EVENTS_BODY_BYTES, restjson.PUT_EVENTS)
        tracking_id = personalize.tracking_id(body)
        tenant = service.trackers.tenant(tracking_id) if tracking_id is not None else None
        if tracking_id is not None and tenant is None:
            raise NotFoundError("trackingId", f"no event tracker {tracking_id!r:.80}")
        if principal is not None and tenant is not None:
            principal.require("write", tenant)
        events = personalize.put_events(body, tenant or DEFAULT_TENANT)
    except InputError as exc:
        _rejected(metrics, "interaction", exc)
        raise
    return await _store(service, events, metrics)


# the labels a refused write is counted under: the write operations' members and the request's
# parts (a name given twice that no model names counts as `body`, so labels stay few)
_LABELS = {*restjson.PUT_EVENTS.members, *restjson.PUT_ITEMS.members,
           *restjson.PUT_USERS.members, "body", "content-type", "accept"}


def _rejected(metrics: Metrics, kind: str, exc: InputError) -> None:
    """Count a refused write (a missing tracker or dataset group is not a rejected event)."""
    if not isinstance(exc, NotFoundError):
        label = field_label(exc.field)
        metrics.events.labels("rejected", kind, "unknown",
                              label if label in _LABELS else "body").inc()


async def _put_entities(request: Request, principal: Principal | None, service: Service,
                        metrics: Metrics, kind: str) -> JSONResponse:
    _allowed(principal, "write")  # no tenant yet: refuse a missing key before parsing
    try:
        limit, shape = ((MAX_ITEMS_BODY_BYTES, restjson.PUT_ITEMS) if kind == "item"
                        else (MAX_USERS_BODY_BYTES, restjson.PUT_USERS))
        body = await _body(request, limit, shape)
        tenant, events = personalize.put_entities(body, kind, int(time.time() * 1000))
    except InputError as exc:
        _rejected(metrics, kind, exc)
        raise
    _allowed(principal, "write", tenant)
    if not _known(service, tenant):
        raise NotFoundError("datasetArn", f"no dataset group {tenant!r}")
    return await _store(service, events, metrics)


@router.post("/items", openapi_extra=_ENTITIES["items"], responses=aws_responses(503))
async def put_items(request: Request, principal: AwsCaller, service: ServiceDep,
                    metrics: MetricsDep) -> JSONResponse:
    """PutItems: add or update up to 10 items of a dataset group."""
    return await _put_entities(request, principal, service, metrics, "item")


@router.post("/users", openapi_extra=_ENTITIES["users"], responses=aws_responses(503))
async def put_users(request: Request, principal: AwsCaller, service: ServiceDep,
                    metrics: MetricsDep) -> JSONResponse:
    """PutUsers: add or update up to 10 users of a dataset group."""
    return await _put_entities(request, principal, service, metrics, "user")


def _known(service: Service, tenant: str) -> bool:
    return tenant in service.trackers.tenants() or tenant in service.models


def _campaign(service: Service, body: dict[str, Any],
              principal: Principal | None) -> runtime.Campaign:
    """The call's campaign: a dataset group the caller may read, which Sluice serves, and a
    template (when the ARN names one) that exists."""
    found = runtime.campaign(body)
    _allowed(principal, "read", found.tenant)
    if not _known(service, found.tenant):
        raise NotFoundError(found.field, f"no campaign for dataset group {found.tenant!r}")
    runtime.check_template(found, (*TEMPLATES, *service.settings.app.templates))
    return found


def _predicted(answer: Answer, service: Service, tenant: str,
               columns: list[str] | None) -> dict[str, Any]:
    """The answer as botocore's ItemList, with each item's `metadata` when columns were asked."""
    items: list[dict[str, Any]] = [
        {"itemId": s.item_id, "score": s.score, "reason": [s.recommendation_source]}
        for s in answer.items]
    if columns is not None:
        fields = service.recommender(tenant).fields
        for item in items:
            item["metadata"] = runtime.metadata(fields(item["itemId"]), columns)
    return {"recommendationId": answer.recommendation_id, "itemList": items}


def _request(service: Service, body: dict[str, Any], tenant: str,
             **given: Any) -> tuple[RecommendationRequest, list[str] | None]:
    """The request, with what GetRecommendations and GetPersonalizedRanking share checked:
    the named filter, the context and the metadata columns to return (the second value)."""
    runtime.refuse_promotions(body.get("promotions"))
    recommender = service.recommender(tenant)
    columns = runtime.metadata_columns(body.get("metadataColumns"), lambda: (
        recommender.known_fields() | set(service.settings.app.events.item_fields)))
    context = runtime.context(body.get("context"))
    req = service.request(tenant=tenant, **given, **runtime.filter_args(body))
    req.context = context  # Personalize's limits, wider than the native API's resolve checks
    return req, columns


@router.post("/recommendations", openapi_extra=_GET_RECOMMENDATIONS)
async def get_recommendations(request: Request, principal: AwsCaller,
                              service: ServiceDep) -> JSONResponse:
    """GetRecommendations: by userId (personalized) or itemId (similar items, for userId
    when given)."""
    _allowed(principal, "read")  # the tenant comes later, from campaignArn
    body = await _body(request, MAX_RECOMMENDATIONS_BODY_BYTES,
                       restjson.GET_RECOMMENDATIONS)
    found = _campaign(service, body, principal)
    tenant = found.tenant
    user, item = check_id(body.get("userId"), "userId"), check_id(body.get("itemId"), "itemId")
    if not user and not item:
        raise PersonalizeError("userId", "userId or itemId is required")
    req, columns = _request(
        service, body, tenant, user_id=user, item_id=item,
        num_results=service.num_results(body.get("numResults"), "numResults"),
        template=found.template or (SIMILAR_ITEMS if item else PERSONALIZED))
    answer = await answers.recommend(service, req)
    return JSONResponse(_predicted(answer, service, tenant, columns))


@router.post("/personalize-ranking", openapi_extra=_GET_RANKING)
async def get_personalized_ranking(request: Request, principal: AwsCaller,
                                   service: ServiceDep) -> JSONResponse:
    """GetPersonalizedRanking: reorder inputList for userId (the filter's items left out)."""
    _allowed(principal, "read")
    body = await _body(request, MAX_RANKING_BODY_BYTES, restjson.GET_PERSONALIZED_RANKING)
    found = _campaign(service, body, principal)
    tenant = found.tenant
    user, items = check_id(body.get("userId"), "userId", True), body.get("inputList")
    if (not isinstance(items, list) or not 1 <= len(items) <= MAX_RANKING_INPUT
            or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LENGTH for i in items)):
        raise PersonalizeError("inputList", f"a list of 1 to {MAX_RANKING_INPUT} item ids")
    req, columns = _request(service, body, tenant, user_id=user,
                            template=found.template or PERSONALIZED)
    answer = service.rank(req, items)
    predicted = _predicted(answer, service, tenant, columns)
    return JSONResponse({"personalizedRanking": predicted["itemList"],
                         "recommendationId": predicted["recommendationId"]})


# operations of botocore's models that Sluice does not serve: refused by name, so a boto3
# client gets an error it parses (not a bare 404) that says what to use instead
_UNSUPPORTED = {
    "actions": "PutActions", "action-interactions": "PutActionInteractions",
    "action-recommendations": "GetActionRecommendations"}
_SERVED = ("PutEvents (POST /events), PutItems (/items), PutUsers (/users), GetRecommendations "
           "(/recommendations), GetPersonalizedRanking (/personalize-ranking)")


@router.api_route("/{path:path}", include_in_schema=False,
                  methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def unknown_operation(path: str, request: Request) -> JSONResponse:
    """Any other path or method under /personalize, in the AWS error shape."""
    operation = _UNSUPPORTED.get(path.strip("/"))
    if operation is not None and request.method == "POST":
        return aws_error("InvalidInputException", f"{operation}: not supported by Sluice, which "
                         f"has no Actions datasets; it serves {_SERVED}", 400)
    return aws_error("UnknownOperationException", f"no Personalize operation "
                     f"{request.method} /personalize/{path:.80}; Sluice serves {_SERVED}", 404)
