"""Exploration and an online experiment against plain serving, interleaved in one server.

Issues #16 and #17 ask that serving with exploration on, and with an experiment running,
stay within 10% of plain serving's throughput. On shared cores the machine drifts more than
that within minutes, so one long run per variant measures the drift, not the variant. Here
one server process answers all three:

- plain: tenant `default`, the personalized template;
- exploration: the same champion through a configured template `explore` whose
  `exploration.share` of the model's slots are explored;
- experiment: tenant `abtest`, whose champion is the same model, under a 50/50 A/B
  experiment between it and a second version (both loaded; each user hashed to an arm).

wrk runs short rounds against each in turn (the order rotates every round), so each
variant's ratio is taken against plain serving measured seconds apart. Two throughputs per
round: answers per wall second (what a client sees, moved by whatever else the cores run) and
answers per CPU second of the server process (/proc: what the variant costs, far less moved by
neighbours). The summary per variant: the geometric mean ratio over rounds with a 95%
t-interval (on the log ratios), the median and the range.
`python benchmarks/serving_variants.py [--rounds 8] [--seconds 5] [--items 10000]`
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import api_key, server_process, table, wrk

from benchmarks.serving import LUA, _home, register, synthetic_bundle
from sluice.experiments import Arm, Experiment, Experiments

VARIANTS = ("plain", "exploration", "experiment")


def lua_for(field: str | None = None, value: str = "") -> str:
    """The benchmark's request script, with one more request field (None: none)."""
    if field is None:
        return LUA
    return LUA.replace('"num_results":25', f'"num_results":25,"{field}":"{value}"')


def check(base: str, key: str) -> None:
    """Each variant does what it says: the experiment assigns arms, the template explores."""
    def ask(**fields: str) -> list[dict]:
        return [httpx.post(f"{base}/v1/recommendations", headers={"X-Api-Key": key},
                           json={"user_id": f"u{u}", "num_results": 25, **fields}
                           ).raise_for_status().json() for u in range(40)]
    arms = {slot.get("arm") for a in ask(tenant="abtest") for slot in a["items"]}
    explored = sum(slot["explored"] for a in ask(template="explore") for slot in a["items"])
    plain = sum(slot["explored"] for a in ask() for slot in a["items"])
    if arms != {"control", "treatment"} or not explored or plain:
        raise SystemExit(f"variants not as set up: arms {arms}, explored slots {explored} "
                         f"with exploration, {plain} without")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rounds(base: str, pid: int, key: str, args: argparse.Namespace) -> list[dict[str, float]]:
    """Per round and variant: answers per wall second and per server CPU second, p99; the
    order rotates each round."""
    scripts = {"plain": lua_for(), "exploration": lua_for("template", "explore"),
               "experiment": lua_for("tenant", "abtest")}
    for name in VARIANTS:  # warm every template's path once
        wrk(base, scripts[name], 2, args.connections, key=key)
    measured = []
    for r in range(args.rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        found = {}
        for name in order:
            cpu = cpu_seconds(pid)
            result = wrk(base, scripts[name], args.seconds, args.connections, key=key)
            cpu = cpu_seconds(pid) - cpu
            if result["errors"]:
                raise SystemExit(f"{name}: {int(result['errors'])} non-2xx answers; "
                                 "read the server's log above")
            found[name] = result["rps"]
            found[f"{name} per CPU s"] = result["rps"] * args.seconds / max(cpu, 0.01)
            found[f"{name} p99 ms"] = result["p99_ms"]
        measured.append(found)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {found[n]:,.0f}/s ({found[f'{n} per CPU s']:,.0f}/CPU s)" for n in VARIANTS),
            flush=True)
    return measured


def summary(measured: list[dict[str, float]]) -> list[dict]:
    """Per variant and throughput: its ratio to plain serving in the same round."""
    rows = []
    for name in VARIANTS[1:]:
        for unit, suffix in (("wall s", ""), ("CPU s", " per CPU s")):
            logs = np.log([m[name + suffix] / m["plain" + suffix] for m in measured])
            half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
            low, mid, high = np.exp([logs.mean() - half, logs.mean(), logs.mean() + half])
            rows.append({"variant": name, "answers per": unit, "rounds": len(logs),
                         "ratio to plain (geometric mean)": float(mid),
                         "95% interval": f"[{low:.3f}, {high:.3f}]",
                         "median": float(np.exp(np.median(logs))),
                         "min": float(np.exp(logs.min())), "max": float(np.exp(logs.max())),
                         "within 10%": "yes" if low >= 0.9 else
                         ("no" if high < 0.9 else "undecided")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--exploration", type=float, default=0.1)
    args = parser.parse_args()
    bundle = synthetic_bundle(args.items)
    config = {"templates": {
        "explore": {"base": "personalized", "exploration": {"share": args.exploration}}}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env, _ = _home(home, bundle, config, None, None, None)
        register(bundle, home, name="sluice-abtest")  # the same champion, another tenant
        second = register(synthetic_bundle(args.items, seed=1), home, champion=False,
                          name="sluice-abtest")
        Experiments(home).create(Experiment("bench", "abtest", (
            Arm("control", "champion", 0.5), Arm("treatment", second, 0.5))))
        with server_process("serving.main:app", env=env, ready_path="/ready") as (base, proc):
            key = api_key("admin")  # a key of every tenant
            check(base, key)
            measured = rounds(base, proc.pid, key, args)
    print(f"\n{args.rounds} rounds of {args.seconds}s per variant, {args.connections} "
          f"connections, one worker, {args.items:,} items, exploration share "
          f"{args.exploration}; plain serving: median "
          f"{statistics.median(m['plain'] for m in measured):,.0f} req/s")
    print(table(measured, [c for n in VARIANTS for c in (n, f"{n} per CPU s", f"{n} p99 ms")]))
    rows = summary(measured)
    print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
