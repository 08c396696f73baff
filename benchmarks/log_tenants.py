"""What `sluice batch`'s tenant check costs before Prefect starts: the raw log scanned for a
tenant's interactions (`sluice.intake.log_tenants`), against the read the batch flow makes of
the same log (`LogFollower.poll`, answers logged back skipped unparsed, nothing applied).
A log of answers for `default` (4 in 5 lines) and interactions of seven other tenants, with
one interaction of `default` as its last line.
`python benchmarks/log_tenants.py [--lines 1000000]`
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluice.intake.eventlog import EventLog  # noqa: E402
from sluice.intake.follower import LogFollower  # noqa: E402
from sluice.intake.log_tenants import asked_and_known, tenants_with_interactions  # noqa: E402

T0 = 1_796_117_400_000


def _event(n: int) -> dict[str, Any]:
    if n % 5 == 0:
        return {"event": "interaction", "id": f"i{n}", "timestamp": T0 + n,
                "tenant": f"shop{n % 7}", "user": f"u{n % 5000}", "item": f"it{n % 900}",
                "type": "click"}
    return {"event": "recommendation", "id": f"r{n}", "timestamp": T0 + n, "tenant": "default",
            "user": f"u{n % 5000}", "items": [
                {"id": f"it{k}", "score": 0.5, "recommendation_source": "model_personalized"}
                for k in range(5)]}


def write_log(root: Path, lines: int) -> int:
    log = EventLog(root)
    for start in range(0, lines, 10_000):
        log.append([_event(n) for n in range(start, min(start + 10_000, lines))])
    log.append([{"event": "interaction", "id": "last", "timestamp": T0, "tenant": "default",
                 "user": "u1", "item": "x", "type": "click"}])
    log.close()
    return sum(p.stat().st_size for p in root.glob("segment-*"))


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    found = call()
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sluice-log-tenants-")) / "raw"
    try:
        size = write_log(root, args.lines)
        print(f"raw log: {args.lines + 1:,} lines, {size / 1e6:.0f} MB")
        flow_s, _ = timed(lambda: LogFollower(root).poll(skip=(b'"event":"recommendation"',)))
        print(f"| case | seconds | ratio to the flow's read ({flow_s:.2f} s) |\n|---|---:|---:|")
        for label, among in (("`default` (its only interaction last)", ["default"]),
                             ("`shop3` (interactions from the start)", ["shop3"]),
                             ("`nosuch` (absent: a refusal)", ["nosuch"]),
                             ("every tenant (the refusal's list)", None)):
            seconds, found = timed(lambda among=among: tenants_with_interactions(root, among))
            assert found == ({*among} - {"nosuch"} if among else
                             {"default", *(f"shop{k}" for k in range(7))}), found
            print(f"| {label} | {seconds:.2f} | {seconds / flow_s:.2f} |")
        every = {"default", *(f"shop{k}" for k in range(7))}
        two_s, _ = timed(lambda: (tenants_with_interactions(root, ["nosuch"]),
                                  tenants_with_interactions(root)))
        print(f"| a refusal of `nosuch`, two readings (asked, then every) | {two_s:.2f} | "
              f"{two_s / flow_s:.2f} |")
        for label, among, expected in (
                ("a refusal of `nosuch`, one reading (`asked_and_known`)", ["nosuch"],
                 (set(), every)),
                ("`default` by `asked_and_known` (found last: the list read meanwhile)",
                 ["default"], ({"default"}, {"default"})),
                ("`shop3` by `asked_and_known`", ["shop3"], ({"shop3"}, {"shop3"}))):
            seconds, found = timed(lambda among=among: asked_and_known(root, among))
            assert found == expected, found
            print(f"| {label} | {seconds:.2f} | {seconds / flow_s:.2f} |")
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
