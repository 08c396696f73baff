"""Recommendations with per-slot sources, as POST (JSON body) or GET (query parameters)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, Json

from serving.api import answers
from serving.api.bodies import JsonBody, QueryParams
from serving.api.deps import MetricsDep, Reader, ServiceDep
from serving.api.errors import responses
from sluice.auth import Principal
from sluice.serve.answers import RecommendationRequest
from sluice.vocabulary import (
    MAX_ID_LENGTH,
    MAX_NUM_RESULTS,
    MIN_NUM_RESULTS,
    PERSONALIZED,
    TEMPLATES,
    TENANT_PATTERN,
)

router = APIRouter(prefix="/v1", tags=["recommendations"],
                   responses=responses(401, 403, 413, 422))

MAX_BODY_BYTES = 256 * 1024
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
_TENANT_DOC = "default: the key's tenant (`default` for a key of every tenant)"


class RecommendationQuery(QueryParams):
    tenant: str | None = Field(None, pattern=TENANT_PATTERN, description=_TENANT_DOC)
    user_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    session_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    item_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    template: str = Field(PERSONALIZED, max_length=64,
                          description=f"{', '.join(TEMPLATES)} or one from config/")
    num_results: int | None = Field(
        None, ge=MIN_NUM_RESULTS, le=MAX_NUM_RESULTS,
        description="default serving.default_num_results; at most serving.max_num_results")
    fill_with_random: bool | None = Field(None, description="default true")
    exclude_seen: bool = True
    exclude_ids: list[ItemId] = Field(default_factory=list, max_length=500)
    # a query string holds text: each condition is one `filters` parameter holding its JSON
    filters: list[Json[dict[str, Any]]] | None = Field(
        None, max_length=32,
        description='conditions that must all hold, each a `filters` parameter holding the '
                    'JSON of one {"field", "op", "value"}, op in '
                    "eq ne in not_in gt gte lt lte contains is")


class RecommendationBody(RecommendationQuery, JsonBody):
    filters: list[dict[str, Any]] | None = Field(
        None, max_length=32,
        description='conditions that must all hold: {"field", "op", "value"}, op in '
                    "eq ne in not_in gt gte lt lte contains is")
    context: dict[str, str] | None = Field(
        None, max_length=32, description="up to 32 names to strings (device, page, ...): "
        "logged with the answer, so outcomes can be read by context")


class Slot(BaseModel):
    item_id: str
    score: float
    position: int
    recommendation_source: str
    arm: str | None = Field(None, description="the experiment arm that placed the slot")
    propensity: float = Field(description="the probability the policy put this item here")
    explored: bool = Field(description="an exploration draw of the model tier")


class RecommendationResponse(BaseModel):
    recommendation_id: str
    model_version: str | None
    template: str
    items: list[Slot]
    personalized_count: int
    model_personalized_count: int
    model_non_personalized_count: int
    model_fallback_count: int
    fallback_count: int
    non_personalized_count: int
    total: int
    experiment: str | None = Field(None, description="the running experiment, if any")
    arm: str | None = Field(None, description="its arm (`interleaved` for team draft)")
    experiment_unit: str | None = Field(
        None, description="what the experiment's arm is keyed on: `session` (the session id, "
                          "else the user id) or `user` (the user id, else the session id)")


def _tenant(requested: str | None, principal: Principal) -> str:
    tenant = requested or principal.default_tenant
    principal.require("read", tenant)
    return tenant


async def _answer(body: RecommendationQuery, principal: Principal, service: ServiceDep,
                  metrics: MetricsDep) -> Response:
    tenant = _tenant(body.tenant, principal)
    request = service.request(tenant=tenant, **body.model_dump(exclude={"tenant"}))
    answer = await answers.recommend(service, request)
    sources = Counter(slot.recommendation_source for slot in answer.items)
    for source, count in sources.items():
        metrics.slots.labels(tenant, source).inc(count)
    if answer.experiment is not None:
        metrics.experiment_answers.labels(tenant, answer.experiment, answer.arm or "").inc()
    metrics.count_window(tenant, answer.template, sources,
                         service.settings.app.alerts.window_minutes)
    return json_response(answer.as_dict())


def json_response(content: dict[str, Any]) -> Response:
    """The answer serialized once by orjson (it matches RecommendationResponse by
    construction; a response_model round trip would build and validate it again)."""
    return Response(orjson.dumps(content), media_type="application/json")


@router.post("/recommendations", response_model=RecommendationResponse,
             responses=responses(415))
async def post_recommendations(body: RecommendationBody, principal: Reader,
                               service: ServiceDep, metrics: MetricsDep) -> Response:
    """Recommend for a user, a session or an item, by template."""
    return await _answer(body, principal, service, metrics)


@router.get("/recommendations", response_model=RecommendationResponse)
async def get_recommendations(query: Annotated[RecommendationQuery, Query()],
                              principal: Reader, service: ServiceDep,
                              metrics: MetricsDep) -> Response:
    """The same as POST, with query parameters."""
    return await _answer(query, principal, service, metrics)


@router.get("/recommendations/{recommendation_id:path}", responses=responses(404))
async def explain_recommendation(recommendation_id: Annotated[str, Path(max_length=64)],
                                 principal: Reader, service: ServiceDep) -> Response:
    """One recent answer explained: per slot its source, the tier's reason (model score and
    rank, popularity, random draw, exploration with its propensity), the model version and
    its lineage."""
    tenant, explained = await run_in_threadpool(service.explain, recommendation_id)
    principal.require("read", tenant)
    return json_response(explained)


class RankRequest(JsonBody):
    tenant: str | None = Field(None, pattern=TENANT_PATTERN, description=_TENANT_DOC)
    user_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    session_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    items: list[ItemId] = Field(min_length=1, max_length=500)


@router.post("/rank", response_model=RecommendationResponse, responses=responses(415))
async def rank(body: RankRequest, principal: Reader, service: ServiceDep) -> Response:
    """Reorder up to 500 items for a user; items the model does not know go last, in order."""
    request = RecommendationRequest(tenant=_tenant(body.tenant, principal),
                                    user_id=body.user_id, session_id=body.session_id)
    answer = service.rank(request, body.items)
    return json_response(answer.as_dict())
