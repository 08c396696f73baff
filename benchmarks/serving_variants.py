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
neighbours). The summary per variant: the median ratio over rounds with a 95% bootstrap
interval, the geometric mean and the range. Before the HTTP rounds, the same three in this
process: the server's own CPU per answer without HTTP (see in_process).
`python benchmarks/serving_variants.py [--rounds 8] [--seconds 5] [--items 10000]`
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import api_key, server_process, table, wrk

from benchmarks.serving import LUA, USERS, _home, register, synthetic_bundle
from sluice.experiments import Arm, Experiment, Experiments

# what each variant's requests add to plain serving's (the set-up in main makes them mean it)
FIELDS: dict[str, dict[str, str]] = {"plain": {}, "exploration": {"template": "explore"},
                                     "experiment": {"tenant": "abtest"}}
VARIANTS = tuple(FIELDS)


def lua_for(fields: dict[str, str]) -> str:
    """The benchmark's request script, with these request fields added."""
    extra = "".join(f',"{name}":"{value}"' for name, value in fields.items())
    return LUA.replace('"num_results":25', '"num_results":25' + extra)


def rotation(r: int) -> tuple[str, ...]:
    """The variants in round r's order: each goes first, second and last in turn."""
    return VARIANTS[r % 3:] + VARIANTS[:r % 3]


def check(base: str, key: str) -> None:
    """Each variant does what it says: the experiment assigns arms, the template explores."""
    def ask(**fields: str) -> list[dict]:
        return [httpx.post(f"{base}/v1/recommendations", headers={"X-Api-Key": key},
                           json={"user_id": f"u{u}", "num_results": 25, **fields}
                           ).raise_for_status().json() for u in range(40)]
    arms = {slot.get("arm") for a in ask(**FIELDS["experiment"]) for slot in a["items"]}
    explored = sum(slot["explored"] for a in ask(**FIELDS["exploration"])
                   for slot in a["items"])
    plain = sum(slot["explored"] for a in ask(**FIELDS["plain"]) for slot in a["items"])
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
    scripts = {name: lua_for(fields) for name, fields in FIELDS.items()}
    for name in VARIANTS:  # warm every template's path once
        wrk(base, scripts[name], 2, args.connections, key=key)
    measured = []
    for r in range(args.rounds):
        order = rotation(r)
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


SUMMARY = ("variant", "answers per", "rounds", "median ratio to plain", "95% interval",
           "geometric mean", "min", "max", "within 10%")
THROUGHPUTS = (("wall s", ""), ("CPU s", " per CPU s"))


def summary(measured: list[dict[str, float]], columns: tuple = THROUGHPUTS,
            inverse: bool = False) -> list[dict]:
    """Per variant and throughput: its ratio to plain serving in the same round, the median
    over rounds with a 95% bootstrap interval (a round that a neighbour's burst or a stall
    hit is an outlier, not a trend). `inverse`: the figures are costs per answer, so the
    throughput ratio is plain's over the variant's."""
    rows, rng = [], np.random.default_rng(0)
    for name in VARIANTS[1:]:
        for unit, suffix in columns:
            ratios = np.array([m[name + suffix] / m["plain" + suffix] for m in measured])
            ratios = 1 / ratios if inverse else ratios
            medians = np.median(rng.choice(ratios, (1000, len(ratios))), axis=1)
            low, high = np.percentile(medians, [2.5, 97.5])
            rows.append({"variant": name, "answers per": unit, "rounds": len(ratios),
                         "median ratio to plain": float(np.median(ratios)),
                         "95% interval": f"[{low:.3f}, {high:.3f}]",
                         "geometric mean": float(np.exp(np.log(ratios).mean())),
                         "min": float(ratios.min()), "max": float(ratios.max()),
                         "within 10%": "yes" if low >= 0.9 else
                         ("no" if high < 0.9 else "undecided")})
    return rows


def in_process(env: dict[str, str], args: argparse.Namespace) -> list[dict[str, float]]:
    """Per round and variant: the server's own work per answer (resolve, recommend, queue
    for the log) in this process, in thread CPU microseconds: no HTTP, no wrk beside it. The
    log queue is written out between batches, outside the timing, as serving's writer
    thread does (a queue left to grow would tax whichever variant ran later)."""
    from sluice.serve.service import Service
    from sluice.settings import get_settings

    os.environ.update(env)
    service = Service(get_settings())
    service.start(background=False)
    rng = np.random.default_rng(0)
    measured = []
    try:
        for r in range(-1, args.in_process_rounds):  # round -1 warms every path up
            found = {}
            for name in rotation(r):
                requests = [service.request(user_id=f"u{user}", num_results=25,
                                            **FIELDS[name])
                            for user in rng.integers(0, USERS, 500)]
                started = time.thread_time()
                for request in requests:
                    service.recommend(request)
                found[name] = (time.thread_time() - started) / len(requests) * 1e6
                service.answers.drain()
            if r >= 0:
                measured.append(found)
    finally:
        service.stop()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--exploration", type=float, default=0.1)
    parser.add_argument("--in-process-rounds", type=int, default=40)
    parser.add_argument("--no-http", action="store_true", help="only the in-process rounds")
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
        work = in_process(env, args)
        print(f"in process, {args.in_process_rounds} rounds of 500 answers per variant "
              "(requests resolved beforehand): thread CPU microseconds per answer; median "
              + ", ".join(f"{n} {statistics.median(w[n] for w in work):.1f}" for n in VARIANTS))
        print(table(summary(work, (("CPU us (in process)", ""),), inverse=True),
                    list(SUMMARY)))
        if args.no_http:
            return
        with server_process("serving.main:app", env=env, ready_path="/ready") as (base, proc):
            key = api_key("admin")  # a key of every tenant
            check(base, key)
            measured = rounds(base, proc.pid, key, args)
    print(f"\n{args.rounds} rounds of {args.seconds}s per variant, {args.connections} "
          f"connections, one worker, {args.items:,} items, exploration share "
          f"{args.exploration}; plain serving: median "
          f"{statistics.median(m['plain'] for m in measured):,.0f} req/s")
    print(table(measured, [c for n in VARIANTS for c in (n, f"{n} per CPU s", f"{n} p99 ms")]))
    print()
    print(table(summary(measured), list(SUMMARY)))


if __name__ == "__main__":
    main()
