"""A real `kill -9` half-way through ingest: no partial file stays, the next run finishes the job.

Ingest runs in a child process on several raw log segments and a landing file; the child is
SIGKILLed as soon as it reports progress inside a file after at least one file was committed,
so the kill lands mid-transaction. DuckDB then recovers from its WAL; PostgreSQL aborts the
transaction of the session that went away (the same test on the PostgreSQL warehouse).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.intake.eventlog import EventLog, segments
from sluice.warehouse.engine import DuckDBWarehouse, Warehouse
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.postgres import PostgresWarehouse

T0 = 1_750_000_000_000
CHUNK = 2_000
CHILD = """
import sys
from pathlib import Path
from sluice.warehouse import ingest, loading
from sluice.warehouse.postgres import PostgresWarehouse
loading.CHUNK_LINES = int(sys.argv[2])
root = Path(sys.argv[1])
warehouse = PostgresWarehouse(sys.argv[3]) if sys.argv[3] else root / "warehouse.duckdb"
ingest.Ingestor(warehouse, root / "raw", root / "landing",
                progress=lambda message: print(message, flush=True)).run()
print("FINISHED", flush=True)
"""


def _event(n: int, prefix: str = "e") -> dict:
    base = {"id": f"{prefix}{n}", "timestamp": T0 + n, "tenant": "default"}
    if n % 10 == 0:
        return base | {"event": "ranking", "session": f"s{n % 97}",
                       "items": [{"id": f"i{k}"} for k in range(n % 7, n % 7 + 5)]}
    return base | {"event": "interaction", "user": f"u{n % 50}", "session": f"s{n % 97}",
                   "item": f"i{n % 13}", "type": "click" if n % 3 else "purchase"}


def _write_inputs(root: Path, per_file: int) -> dict[str, int]:
    """Three raw log segments and one landing file; returns the counts a full load must give."""
    log = EventLog(root / "raw", segment_bytes=1)  # every append starts a new segment
    bad = 0
    for part in range(3):
        events = [_event(n) for n in range(part * per_file, (part + 1) * per_file)]
        events[5] = {"event": "interaction", "id": f"bad{part}", "timestamp": T0}  # no user
        bad += 1
        log.append(events)
    log.close()
    landing = root / "landing"
    landing.mkdir(parents=True)
    lines = [json.dumps(_event(n, "l")) for n in range(per_file)]
    lines[7] = "{not json"
    lines += [json.dumps(_event(n)) for n in range(100, 110)]  # already in segment 0
    (landing / "bulk.jsonl").write_text("\n".join(lines) + "\n")
    return {"rows": 3 * (per_file - 1) + per_file - 1, "quarantined": bad + 1,
            "duplicates": 10}


def _kill_mid_file(root: Path, dsn: str) -> list[str]:
    """Runs ingest in a child and SIGKILLs it inside a file; returns the progress it printed."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(CHUNK), dsn],
                             stdout=subprocess.PIPE, text=True, env=env)
    seen: list[str] = []
    try:
        for line in child.stdout:
            seen.append(line.strip())
            committed = any(": committed " in s for s in seen)
            if committed and " records (" in line:  # inside the next file, mid-transaction
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    return seen


def _rows(warehouse: Warehouse, sql: str) -> list[tuple]:
    return [tuple(row) for row in warehouse.rows(sql)]


def _assert_only_whole_files(warehouse: Warehouse) -> None:
    """Every file with rows has its manifest row, and the manifest counts match the rows."""
    per_file = dict(_rows(warehouse, "select source_file, count(*) from raw.events group by 1"))
    manifest = dict(_rows(warehouse, "select path, rows_loaded from raw.manifest"))
    assert per_file == {path: n for path, n in manifest.items() if n}
    quarantined = {p for (p,) in _rows(warehouse, "select distinct source_file "
                                                  "from raw.quarantine")}
    assert quarantined <= set(manifest)


@pytest.fixture(params=["duckdb", "postgres"])
def killed(request, tmp_path) -> tuple[Path, Warehouse, dict[str, int], list[str]]:
    """Inputs big enough that the kill lands inside a file; bigger again if it did not."""
    for attempt, per_file in enumerate((10_000, 40_000, 160_000)):
        root = tmp_path / f"attempt{attempt}"
        expected = _write_inputs(root, per_file)
        if request.param == "postgres":
            server = request.getfixturevalue("postgres_server")
            dsn = server.database(f"crash_{os.getpid()}_{id(root)}_{attempt}").dsn()
            warehouse: Warehouse = PostgresWarehouse(dsn)
        else:
            dsn, warehouse = "", DuckDBWarehouse(root / "warehouse.duckdb")
        progress = _kill_mid_file(root, dsn)
        if "FINISHED" not in progress:
            return root, warehouse, expected, progress
    pytest.fail("ingest always finished before it could be killed")


def test_kill_9_mid_file_leaves_no_partial_file_and_rerun_loads_exactly_once(killed):
    root, warehouse, expected, progress = killed
    inputs = [str(p) for p in segments(root / "raw")] + [str(root / "landing" / "bulk.jsonl")]

    _assert_only_whole_files(warehouse)
    loaded_before = {p for (p,) in _rows(warehouse, "select path from raw.manifest")}
    assert loaded_before, progress  # at least one file was committed before the kill ...
    assert loaded_before < set(inputs), progress  # ... and at least one was not

    report = Ingestor(warehouse, root / "raw", root / "landing").run()
    statuses = {f.path: f.status for f in report.files}
    assert {p for p, s in statuses.items() if s == "unchanged"} == loaded_before
    assert {p for p, s in statuses.items() if s == "loaded"} == set(inputs) - loaded_before

    _assert_only_whole_files(warehouse)
    assert _rows(warehouse, "select count(*), count(distinct (tenant, event_id)) "
                            "from raw.events") == [(expected["rows"], expected["rows"])]
    assert _rows(warehouse, "select count(*) from raw.quarantine") == [
        (expected["quarantined"],)]
    assert _rows(warehouse, "select sum(rows_loaded), sum(rows_quarantined), "
                            "sum(duplicates_skipped) from raw.manifest") == [
        (expected["rows"], expected["quarantined"], expected["duplicates"])]
    for path, size, checksum in _rows(warehouse, "select path, size_bytes, checksum "
                                                 "from raw.manifest"):
        data = Path(path).read_bytes()
        assert (size, checksum) == (len(data), hashlib.sha256(data).hexdigest())

    again = Ingestor(warehouse, root / "raw", root / "landing").run()
    assert {f.status for f in again.files} == {"unchanged"}
    assert again.rows_loaded == again.rows_quarantined == 0
