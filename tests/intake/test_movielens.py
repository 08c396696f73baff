"""MovieLens-100k, the managed service's own tutorial data, loads as a Personalize CSV.

The data ships inside the `recbole` wheel; it is fetched with pip (never installed, never
committed) into a cache under the system temp dir, so it is downloaded once per machine.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import duckdb
import pytest

from sluice.warehouse.ingest import Ingestor

CACHE = Path(tempfile.gettempdir()) / "sluice-test-cache" / "recbole"
INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def _movielens_inter() -> str:
    wheels = sorted(CACHE.glob("recbole-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "-d", str(CACHE), "recbole"], capture_output=True, text=True,
                              timeout=300)
        wheels = sorted(CACHE.glob("recbole-*.whl"))
        if done.returncode or not wheels:
            pytest.skip(f"pip cannot fetch the recbole wheel (MovieLens-100k): "
                        f"{done.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return wheel.read(INTER).decode()


def test_movielens_100k_in_the_personalize_schema_loads_with_nothing_quarantined(tmp_path):
    lines = _movielens_inter().splitlines()
    assert lines[0].startswith("user_id:token\titem_id:token\trating:float\ttimestamp")
    rows = [line.split("\t") for line in lines[1:] if line]
    landing = tmp_path / "landing"
    landing.mkdir()
    # the timestamps untouched: epoch seconds from 1997, nine digits
    (landing / "ml-100k.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
        + "".join(f"{u},{i},{t},rating,{r}\n" for u, i, r, t in rows))
    assert min(len(t) for *_, t in rows) == 9
    report = Ingestor(tmp_path / "warehouse.duckdb", tmp_path / "raw", landing).run()
    assert (report.rows_quarantined, report.rows_loaded) == (0, len(rows)) == (0, 100_000)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        first, last = con.execute(
            "select min(event_at), max(event_at) from raw.events").fetchone()
    assert (first.year, first.month, last.year, last.month) == (1997, 9, 1998, 4)


def test_movielens_100k_without_event_type_loads_as_interactions_exactly_once(tmp_path):
    """Personalize's interactions schema requires only USER_ID, ITEM_ID and TIMESTAMP (its
    getting-started tutorial imports MovieLens so): every row is an interaction of type
    `interaction`, none is mistaken for a catalog row, and a second ingest adds nothing."""
    rows = [line.split("\t") for line in _movielens_inter().splitlines()[1:] if line]
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "interactions.csv").write_text(
        "USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in rows))
    ingest = Ingestor(tmp_path / "warehouse.duckdb", tmp_path / "raw", landing)
    report = ingest.run()
    assert (report.rows_quarantined, report.rows_loaded) == (0, 100_000)
    assert ingest.run().rows_loaded == 0
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        kinds = con.execute("select event_type, interaction_type, count(*), "
                            "count(distinct user_id), count(distinct item_id) "
                            "from raw.events group by all").fetchall()
    assert kinds == [("interaction", "interaction", 100_000, 943, 1682)]
