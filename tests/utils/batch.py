"""Reading a batch job's output, and comparing it with live API answers slot by slot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from sluice.vocabulary import FALLBACK
from tests.utils.auth import READ


def read_output(out: Path) -> tuple[list[dict], list[dict], dict]:
    """The JSON Lines, the slot rows and the manifest of a job's folder."""
    lines = [json.loads(line) for line in (out / "output.jsonl").read_text().splitlines()]
    slots = pq.read_table(out / "slots.parquet").to_pylist()
    return lines, slots, json.loads((out / "manifest.json").read_text())


def slots_by_user(slots: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in sorted(slots, key=lambda r: (r["line"], r["position"])):
        found.setdefault(row["user_id"], []).append(row)
    return found


def assert_same_as_live(base: str, slots: list[dict], users: list[str], num_results: int,
                        headers: dict[str, str] = READ, **body: Any) -> int:
    """Each user's batch slots equal the live answer's, slot by slot: the source always, the
    item and score unless both are random (`fallback`) draws. Returns the slots compared."""
    batch = slots_by_user(slots)
    compared = 0
    for user in users:
        live = httpx.post(f"{base}/v1/recommendations", headers=headers, timeout=30,
                          json={"user_id": user, "num_results": num_results, **body}).json()
        mine = batch[user]
        assert [s["recommendation_source"] for s in live["items"]] == [
            r["recommendation_source"] for r in mine], user
        for slot, row in zip(live["items"], mine, strict=True):
            assert slot["position"] == row["position"]
            assert row["model_version"] == live["model_version"]
            if slot["recommendation_source"] != FALLBACK:
                assert (slot["item_id"], slot["score"]) == (row["item_id"], row["score"]), (
                    user, live["items"], mine)
            compared += 1
    return compared
