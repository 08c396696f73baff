"""Events per second accepted over HTTP on loopback, durability on (fsync before 200).

Single-event calls and batches against the real app, next to a bare FastAPI endpoint that
does nothing, measured in the same run: `python benchmarks/intake.py [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import tempfile

from common import api_key, server, table, wrk

LUA = """
local batch = %d
counter = 0
local tid = 0
setup = function(thread) tid = tid + 1; thread:set("tid", tid) end
request = function()
  counter = counter + 1
  local t = {}
  for i = 1, batch do
    t[i] = string.format('{"event":"interaction","id":"b%%s-%%d-%%d","timestamp":1767225600000,'
      .. '"user":"u%%d","session":"s%%d","item":"i%%d","type":"click"}',
      tostring(tid), counter, i, counter %% 5000, counter %% 5000, (counter * 7 + i) %% 2000)
  end
  return wrk.format("POST", "/v1/events", HEADERS,
                    "[" .. table.concat(t, ",") .. "]")
end
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline", default=None,
                        help="another checkout (e.g. main's worktree) whose API is measured in "
                             "the same run: a change's cost as `ratio vs baseline`")
    args = parser.parse_args()
    rows = []
    for batch in (1, 10, 100, 500):
        lua = LUA % batch
        with server("benchmarks.bare_app:app") as base:
            bare = wrk(base, lua, args.seconds, args.connections)
        with tempfile.TemporaryDirectory() as home:
            env = {"SLUICE_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
                   "SLUICE_LOG_LEVEL": "WARNING"}
            with server("serving.main:app", env=env) as base:
                real = wrk(base, lua, args.seconds, args.connections, key=api_key("write"))
        baseline = _baseline(args, lua) if args.baseline else None
        rows.append({
            "events/call": batch,
            "bare calls/s": bare["rps"], "sluice calls/s": real["rps"],
            "sluice events/s": real["rps"] * batch,
            "ratio vs bare": real["rps"] / bare["rps"],
            "sluice p50 ms": real["p50_ms"], "sluice p99 ms": real["p99_ms"],
            "non-2xx": int(real["errors"]),
            **({"baseline calls/s": baseline["rps"],
                "ratio vs baseline": real["rps"] / baseline["rps"]} if baseline else {}),
        })
    print(f"intake, {args.connections} connections, {args.seconds}s each, fsync on every call "
          "(group commit)")
    print(table(rows, list(rows[0])))


def _baseline(args: argparse.Namespace, lua: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        env = {"SLUICE_HOME": home, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
               "SLUICE_LOG_LEVEL": "WARNING"}
        with server("serving.main:app", env=env, cwd=args.baseline) as base:
            return wrk(base, lua, args.seconds, args.connections, key=api_key("write"))


if __name__ == "__main__":
    main()
