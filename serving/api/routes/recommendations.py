"""Recommendations with per-slot sources, as POST (JSON body) or GET (query parameters)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from serving.api.deps import MetricsDep, ServiceDep
from sluice.filters import FilterError
from sluice.recommender import TEMPLATES, RecommendationError, Request

router = APIRouter(prefix="/v1", tags=["recommendations"])


class RecommendationRequest(BaseModel):
    tenant: str = Field("default", min_length=1, max_length=64)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    item_id: str | None = Field(None, min_length=1, max_length=256)
    template: str = Field("personalized", max_length=64,
                          description=f"{', '.join(TEMPLATES)} or one from config/")
    num_results: int | None = Field(None, ge=1, le=500, description="default 25")
    fill_with_random: bool | None = Field(None, description="default true")
    exclude_seen: bool = True
    exclude_ids: list[str] = Field(default_factory=list, max_length=500)
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


def _answer(body: RecommendationRequest, service: ServiceDep,
            metrics: MetricsDep) -> RecommendationResponse:
    try:
        answer = service.recommend(service.request(**body.model_dump()))
    except (RecommendationError, FilterError) as exc:
        raise HTTPException(422, [{"field": exc.field, "reason": exc.reason}]) from exc
    for slot in answer.items:
        metrics.slots.labels(body.tenant, slot.recommendation_source).inc()
    return RecommendationResponse.model_validate(answer.as_dict())


@router.post("/recommendations")
def post_recommendations(body: RecommendationRequest, service: ServiceDep,
                         metrics: MetricsDep) -> RecommendationResponse:
    """Recommend for a user, a session or an item, by template."""
    return _answer(body, service, metrics)


@router.get("/recommendations")
def get_recommendations(query: Annotated[RecommendationRequest, Query()], service: ServiceDep,
                        metrics: MetricsDep) -> RecommendationResponse:
    """The same as POST, with query parameters."""
    return _answer(query, service, metrics)


class RankRequest(BaseModel):
    tenant: str = Field("default", min_length=1, max_length=64)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    items: list[str] = Field(min_length=1, max_length=500)


@router.post("/rank")
def rank(body: RankRequest, service: ServiceDep) -> RecommendationResponse:
    """Reorder up to 500 items for a user; items the model does not know go last, in order."""
    answer = service.rank(Request(tenant=body.tenant, user_id=body.user_id,
                                  session_id=body.session_id), body.items)
    return RecommendationResponse.model_validate(answer.as_dict())
