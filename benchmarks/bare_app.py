"""The reference: bare FastAPI endpoints that do no work, with the same JSON shapes."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()

SLOTS = [{"item_id": f"i{n}", "score": 0.5, "position": n + 1,
          "recommendation_source": "model_personalized"} for n in range(25)]
ANSWER = {"recommendation_id": "0" * 32, "model_version": "1", "template": "personalized",
          "items": SLOTS, "personalized_count": 25, "model_personalized_count": 25,
          "model_non_personalized_count": 0, "model_fallback_count": 0, "fallback_count": 0,
          "non_personalized_count": 0, "total": 25}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/events")
async def events(request: Request) -> dict[str, int]:
    await request.body()
    return {"accepted": 0}


@app.post("/v1/recommendations")
def recommendations() -> dict:
    return ANSWER
