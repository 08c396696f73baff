"""Answering on the event loop when that is cheap, in a worker thread when it is not."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from sluice.serve.answers import Answer, NeedsScan, RecommendationRequest
from sluice.serve.service import Service


async def recommend(service: Service, request: RecommendationRequest) -> Answer:
    """Most answers read a kept ranking head (tens of microseconds): answered in place, they
    skip the thread hand-off. One that must score the whole catalog runs in a thread, so the
    event loop keeps taking requests while it does."""
    try:
        return service.recommend(request, scan=False)
    except NeedsScan:
        return await run_in_threadpool(service.recommend, request)
