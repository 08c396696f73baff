"""Soak: a mixed load of event writes and recommendation reads for minutes, on loopback.

A synthetic champion is registered in a temporary store and the real app serves it with the
demo keys of config/sluice.yaml. wrk sends, over all its connections, one call in four as a
batch of 10 interaction events (ids drawn from a bounded pool, as retrying clients do, so the
real-time state fills up during the first interval and then stays) and three in four as
25-slot recommendations for known users. Every interval prints throughput, p99, errors and
the server's resident memory. Verdict: no error at all, and resident memory flat after the
first third: its least-squares slope over the rest under --max-growth MiB per minute.

    python benchmarks/soak.py [--duration 180] [--interval 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import api_key, server_process, table, wrk

from tests.utils.models import register_champion, synthetic_bundle

USERS, ITEMS, POOL = 1000, 2000, 10_000

LUA = """
local read = {["Content-Type"] = "application/json", ["X-Api-Key"] = "READ_KEY"}
local write = {["Content-Type"] = "application/json", ["X-Api-Key"] = "WRITE_KEY"}
counter = 0
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
init = function(args) math.randomseed(os.time() * 1000 + tid) end
request = function()
  counter = counter + 1
  if counter % 4 == 0 then
    local t = {}
    for i = 1, 10 do
      local n = (counter * 10 + i) % POOL
      t[i] = string.format('{"event":"interaction","id":"soak-%d-%d","timestamp":TS,'
        .. '"user":"u%d","item":"i%d","type":"click"}', tid, n, n % USERS, (n * 7) % ITEMS)
    end
    return wrk.format("POST", "/v1/events", write, "[" .. table.concat(t, ",") .. "]")
  end
  local body = string.format('{"user_id":"u%d","num_results":25}', math.random(0, USERS - 1))
  return wrk.format("POST", "/v1/recommendations", read, body)
end
"""


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def errors(result: dict) -> int:
    sockets = str(result.get("socket_errors", ""))
    return int(result["errors"]) + sum(int(n) for n in re.findall(r"\d+", sockets))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=180, help="seconds of load in all")
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--max-growth", type=float, default=1.0,
                        help="largest RSS slope after the first third, MiB per minute")
    args = parser.parse_args()
    lua = (LUA.replace("READ_KEY", api_key("read")).replace("WRITE_KEY", api_key("write"))
           .replace("TS", str(int(time.time() * 1000))).replace("USERS", str(USERS))
           .replace("ITEMS", str(ITEMS)).replace("POOL", str(POOL)))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        uri = f"sqlite:///{home}/mlflow/mlflow.db"
        register_champion(synthetic_bundle(items=ITEMS, users=USERS, factors=32), uri,
                          home / "artifacts")
        env = {"SLUICE_HOME": str(home), "MLFLOW_TRACKING_URI": uri,
               "SLUICE_LOG_LEVEL": "WARNING"}
        with server_process("serving.main:app", env=env, ready_path="/ready") as (base, proc):
            rows.append({"second": 0, "requests/s": 0.0, "p99 ms": 0.0, "errors": 0,
                         "rss MiB": rss_mib(proc.pid)})
            started = time.monotonic()
            while (left := round(args.duration - (time.monotonic() - started))) >= 1:
                seconds = min(args.interval, left)
                result = wrk(base, lua, seconds, args.connections)
                rows.append({"second": round(time.monotonic() - started),
                             "requests/s": result["rps"], "p99 ms": result["p99_ms"],
                             "errors": errors(result), "rss MiB": rss_mib(proc.pid)})
                print(table(rows[-1:], list(rows[0])).splitlines()[-1], flush=True)
    return report(rows, args)


def slope_per_minute(rows: list[dict]) -> float:
    """Least-squares slope of resident memory over time, in MiB per minute."""
    xs, ys = [r["second"] / 60 for r in rows], [r["rss MiB"] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0


def report(rows: list[dict], args: argparse.Namespace) -> int:
    loaded = rows[1:]
    total_errors = sum(r["errors"] for r in loaded)
    settled = loaded[len(loaded) // 3:]
    slope = slope_per_minute(settled)
    print(f"\nsoak, {args.duration}s, {args.connections} connections, 1 in 4 calls a batch of "
          f"10 events, 3 in 4 recommendations (25 slots)")
    print(table(rows, list(rows[0])))
    mean_rps = sum(r["requests/s"] for r in loaded) / len(loaded)
    print(f"\nthroughput {mean_rps:,.0f} requests/s (mean of intervals), worst p99 "
          f"{max(r['p99 ms'] for r in loaded):.1f} ms, errors {total_errors}, resident memory "
          f"{rows[0]['rss MiB']:.0f} MiB at start, {settled[0]['rss MiB']:.0f} after the first "
          f"third, {loaded[-1]['rss MiB']:.0f} at the end (slope {slope:+.2f} MiB/min since)")
    failed = []
    if total_errors:
        failed.append(f"{total_errors} errors")
    if len(settled) < 2:
        failed.append("too short to judge memory: give --duration >= 3 x --interval")
    elif slope > args.max_growth:
        failed.append(f"memory keeps growing, {slope:.2f} MiB/min (> {args.max_growth})")
    print("FAIL: " + "; ".join(failed) if failed else "PASS: no errors, memory flat")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
