"""Two jobs on one warehouse take turns: no double load, and a stuck holder is named."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from sluice.warehouse.db import connect
from sluice.warehouse.ingest import Ingestor
from sluice.warehouse.locks import LockTimeoutError, warehouse_lock


def test_two_ingest_runs_at_once_load_everything_once(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for part in range(4):
        lines = [json.dumps({"event": "interaction", "id": f"p{part}-{i}", "user": f"u{i % 50}",
                             "item": f"i{i % 70}", "type": "click",
                             "timestamp": 1767225600000 + i}) for i in range(3000)]
        (landing / f"part{part}.jsonl").write_text("\n".join(lines) + "\n")
    warehouse = tmp_path / "warehouse.duckdb"
    reports = []

    def run() -> None:
        reports.append(Ingestor(warehouse, tmp_path / "raw", landing).run())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.rows_loaded for r in reports) == [0, 12_000]
    assert sum(r.duplicates_skipped for r in reports) == 0
    con = connect(warehouse, read_only=True)
    try:
        assert con.execute("select count(*) from raw.events").fetchone()[0] == 12_000
        assert con.execute("select count(*) from raw.manifest").fetchone()[0] == 4
    finally:
        con.close()


def test_a_lock_held_by_another_process_makes_us_wait_then_fail_clearly(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from sluice.warehouse.locks import warehouse_lock\n"
        f"with warehouse_lock({str(warehouse)!r}):\n"
        "    print('held', flush=True); time.sleep(3)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        said = []
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as err:
            with warehouse_lock(warehouse, timeout=0.5, say=said.append):
                pass
        assert "Prefect UI" in str(err.value)
        assert said and "waiting" in said[0]
        assert time.monotonic() - started >= 0.5
        with warehouse_lock(warehouse, timeout=30):  # ours once the holder lets go
            assert time.monotonic() - held_at >= 2.5
    finally:
        holder.kill()
        holder.wait()
