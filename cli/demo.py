"""`sluice generate` (a synthetic history in the landing folder) and `sluice demo` (that
history through the pipeline, then the API asked a few questions)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from cli.models import table
from cli.processes import free_port, start_server, stop_server, wait_ready
from sluice.settings import get_settings


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from sluice.intake.synthetic import SyntheticSpec, generate

    settings = get_settings()
    spec = SyntheticSpec(users=args.users, items=args.items, events=args.events,
                         seed=args.seed)
    marker = settings.landing_dir / f".synthetic-seed{spec.seed}.json"
    if marker.exists() and not args.force:
        info = json.loads(marker.read_text())
        print(f"synthetic history already in {settings.landing_dir} (seed {spec.seed})")
        return info
    print(f"generating {spec.events:,} events for {spec.users:,} users and {spec.items:,} items"
          f" over {spec.days} days ...")
    result = generate(settings.landing_dir, spec)
    info = {"known_user": result.known_user, "anonymous_session": result.anonymous_session,
            "stitched_user": result.stitched_user, "events": result.events,
            "files": [str(p) for p in result.paths]}
    marker.write_text(json.dumps(info))
    print(f"wrote {result.events:,} events to {len(result.paths)} files in "
          f"{settings.landing_dir}")
    return info


def cmd_demo(args: argparse.Namespace) -> None:
    from flows.pipeline import pipeline

    started = time.monotonic()
    info = cmd_generate(args)
    print("running flow `pipeline` (ingest -> transform -> train) ...")
    outcome = pipeline()
    for result in outcome.train:
        m, b = result.metrics, result.baseline
        print(f"model {result.model_name} v{result.version}: ndcg@10 "
              f"{m['ndcg_at_10']:.4f} (popularity {b['ndcg_at_10']:.4f}); {result.reason}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"starting the API on {base} ...")
    headers = key_headers("read")
    server = start_server(port)
    try:
        readiness = wait_ready(base, server)
        print(f"ready: {readiness['ready']}")
        asks = [
            ("a known user", {"user_id": info["known_user"]}),
            ("an anonymous visitor (session only)", {"session_id": info["anonymous_session"]}),
            ("a user never seen", {"user_id": "never-seen-user"}),
            ("items like i1 by their fields (brand, category, color, price)",
             {"item_id": "i1", "template": "similar_attributes"}),
        ]
        for title, params in asks:
            answer = httpx.post(f"{base}/v1/recommendations", headers=headers,
                                json={**params, "num_results": 10}, timeout=10).json()
            counts = {k: v for k, v in answer.items() if k.endswith("_count") or k == "total"}
            print(f"\n{title}: {params}\n" + table(
                answer["items"], ["position", "item_id", "score", "recommendation_source"]))
            print("counts: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    finally:
        stop_server(server)
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")


def key_headers(action: str) -> dict[str, str]:
    """Headers with a configured key that may do `action` (the demo keys of config/)."""
    from sluice.auth import client_key

    key = client_key(get_settings(), action)
    return {"X-Api-Key": key} if key else {}
