"""Recommendations with per-slot sources, as POST (JSON body) or GET (query parameters)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from serving.api.deps import MetricsDep, Reader, ServiceDep
from serving.api.errors import responses
from sluice.auth import Principal
from sluice.filters import FilterError
from sluice.recommender import TEMPLATES, RecommendationError, Request

router = APIRouter(prefix="/v1", tags=["recommendations"],
                   responses=responses(401, 403, 413, 422))

MAX_BODY_BYTES = 256 * 1024
TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ItemId = Annotated[str, Field(min_length=1, max_length=256)]
_TENANT_DOC = "default: the key's tenant (`default` for a key of every tenant)"


class RecommendationRequest(BaseModel):
    tenant: str | None = Field(None, pattern=TENANT, description=_TENANT_DOC)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    item_id: str | None = Field(None, min_length=1, max_length=256)
    template: str = Field("personalized", max_length=64,
                          description=f"{', '.join(TEMPLATES)} or one from config/")
    num_results: int | None = Field(None, ge=1, le=500, description="default 25")
    fill_with_random: bool | None = Field(None, description="default true")
    exclude_seen: bool = True
    exclude_ids: list[ItemId] = Field(default_factory=list, max_length=500)
    filters: list[dict[str, Any]] | None = Field(
        None, max_length=32,
        description='conditions that must all hold: {"field", "op", "value"}, op in '
                    "eq ne in not_in gt gte lt lte contains is")


class Slot(BaseModel):
    item_id: str
    score: float
    position: int
    recommendation_source: str


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


def _tenant(requested: str | None, principal: Principal) -> str:
    tenant = requested or principal.default_tenant
    principal.require("read", tenant)
    return tenant


def _answer(body: RecommendationRequest, principal: Principal, service: ServiceDep,
            metrics: MetricsDep) -> RecommendationResponse:
    tenant = _tenant(body.tenant, principal)
    try:
        answer = service.recommend(service.request(tenant=tenant,
                                                   **body.model_dump(exclude={"tenant"})))
    except (RecommendationError, FilterError) as exc:
        raise HTTPException(422, [{"field": exc.field, "reason": exc.reason}]) from exc
    for slot in answer.items:
        metrics.slots.labels(tenant, slot.recommendation_source).inc()
    return RecommendationResponse.model_validate(answer.as_dict())


@router.post("/recommendations")
def post_recommendations(body: RecommendationRequest, principal: Reader, service: ServiceDep,
                         metrics: MetricsDep) -> RecommendationResponse:
    """Recommend for a user, a session or an item, by template."""
    return _answer(body, principal, service, metrics)


@router.get("/recommendations")
def get_recommendations(query: Annotated[RecommendationRequest, Query()], principal: Reader,
                        service: ServiceDep, metrics: MetricsDep) -> RecommendationResponse:
    """The same as POST, with query parameters."""
    return _answer(query, principal, service, metrics)


class RankRequest(BaseModel):
    tenant: str | None = Field(None, pattern=TENANT, description=_TENANT_DOC)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    items: list[ItemId] = Field(min_length=1, max_length=500)


@router.post("/rank")
def rank(body: RankRequest, principal: Reader, service: ServiceDep) -> RecommendationResponse:
    """Reorder up to 500 items for a user; items the model does not know go last, in order."""
    answer = service.rank(Request(tenant=_tenant(body.tenant, principal), user_id=body.user_id,
                                  session_id=body.session_id), body.items)
    return RecommendationResponse.model_validate(answer.as_dict())
