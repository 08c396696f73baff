"""Golden fixtures of every kept format, read by today's code; data newer than the code is
refused with one line naming both versions.

tests/fixtures/formats/v<N>/ holds what Sluice wrote in format version N: a raw log folder, a
model bundle, the warehouse's raw schema as DDL + rows, and a config (v2: the bundle only, the
one format at version 2). They are never
regenerated: a change of format must still read them here, or ship a migration that
`sluice upgrade` runs (sluice/operate/upgrade.py) and a test that reads them after it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from sluice import formats
from sluice.bundle import ModelBundle
from sluice.intake.eventlog import EventLog, LogWriteError, segments
from sluice.settings import ConfigError, load_app_config
from sluice.warehouse.db import connect, format_version
from sluice.warehouse.ingest import Ingestor

V1 = Path(__file__).parent / "fixtures" / "formats" / "v1"
V2 = Path(__file__).parent / "fixtures" / "formats" / "v2"  # kinds whose format moved to 2
TOO_NEW = "format version 2 is newer than this Sluice reads (1)"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The v1 raw log and landing folder, and the v1 warehouse made from its DDL + rows."""
    shutil.copytree(V1 / "raw", tmp_path / "raw")
    shutil.copytree(V1 / "landing", tmp_path / "landing")
    sql = (V1 / "warehouse.sql").read_text().replace("$FIXTURE", str(tmp_path))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(sql)
    return tmp_path


def _events(warehouse: Path) -> dict[tuple[str, str], tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select tenant, event_id, event_type, event_at, user_id, session_id, "
                           "item_id, interaction_type, ranking_id, fields, items "
                           "from raw.events").fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def test_the_v1_raw_log_loads_as_it_did(tmp_path):
    shutil.copytree(V1 / "raw", tmp_path / "raw")
    report = Ingestor(tmp_path / "w.duckdb", tmp_path / "raw", tmp_path / "landing").run()
    assert (report.rows_loaded, report.rows_quarantined) == (5, 0)
    events = _events(tmp_path / "w.duckdb")
    kind, at, *who = events[("shop", "e2")][:6]
    assert (kind, str(at), who) == ("interaction", "2026-01-01 00:04:00",
                                    [None, "s2", "i1", "purchase"])
    assert json.loads(events[("default", "it1")][7]) == {"category": "books", "price": 12.5}
    assert json.loads(events[("default", "r1")][8]) == [{"id": "i1"}, {"id": "i2"}]
    assert events[("default", "e1")][6] == "r1"


def test_the_v1_warehouse_is_read_and_ingest_loads_nothing_again(home):
    with connect(home / "warehouse.duckdb") as con:
        assert format_version(con) == 1
    before = _events(home / "warehouse.duckdb")
    report = Ingestor(home / "warehouse.duckdb", home / "raw", home / "landing").run()
    assert {f.status for f in report.files} == {"unchanged"}
    assert _events(home / "warehouse.duckdb") == before and len(before) == 5


def test_the_v1_bundle_loads():
    bundle = ModelBundle.load(V1 / "bundle")
    assert bundle.meta["format_version"] == 1 and bundle.meta["cutoff_ms"] == 1767225600000
    assert bundle.user_index == {"u1": 0, "u2": 1} and list(bundle.item_ids) == ["i1", "i2", "i3"]
    assert bundle.user_factors @ bundle.item_factors[2] == pytest.approx([0.5, 0.5])
    assert bundle.user_items[1, 1] == 2.0 and bundle.similar[0, 1] == pytest.approx(0.5)
    assert np.array_equal(bundle.candidates, [[2, 1], [2, 0]])
    assert bundle.catalog["i2"] == {"category": "games"}


def test_the_v1_config_loads(monkeypatch):
    config = load_app_config(V1 / "sluice.yaml")
    assert config.format_version == 1 and config.model.algorithm == "bpr"
    assert config.model.bpr.factors == 16 and config.events.event_value_threshold == 2.5
    assert config.trackers[0].tenant == "shop" and config.templates["cheap"].base == "filter_based"
    assert config.auth.keys[0].key_env == "GOLDEN_READ_KEY"


def test_a_newer_raw_log_is_refused_by_readers_and_writers(tmp_path):
    shutil.copytree(V1 / "raw", tmp_path / "raw")
    formats.write_marker(tmp_path / "raw", "raw_log", 2)
    with pytest.raises(formats.FormatTooNewError, match=r"raw_log " + re.escape(TOO_NEW)):
        segments(tmp_path / "raw")
    log = EventLog(tmp_path / "raw")
    with pytest.raises(LogWriteError, match=re.escape(TOO_NEW)):
        log.append([{"event": "item", "id": "x", "timestamp": 1, "tenant": "default",
                     "item": "x"}])


def test_a_new_raw_log_is_marked_and_an_old_one_is_left_as_version_1(tmp_path):
    EventLog(tmp_path / "new").append([{"event": "item", "id": "x", "timestamp": 1}])
    assert formats.read_marker(tmp_path / "new") == formats.CURRENT["raw_log"]
    shutil.copytree(V1 / "raw", tmp_path / "old")
    (tmp_path / "old" / formats.MARKER).unlink()
    EventLog(tmp_path / "old").append([{"event": "item", "id": "y", "timestamp": 1}])
    assert formats.read_marker(tmp_path / "old") is None
    assert formats.check_marker(tmp_path / "old", "raw_log") == 1


def test_a_newer_warehouse_is_refused(home):
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("update raw.sluice_meta set value = '2'")
    for read_only in (False, True):
        with pytest.raises(formats.FormatTooNewError, match="warehouse " + re.escape(TOO_NEW)):
            connect(home / "warehouse.duckdb", read_only=read_only)


def test_a_newer_bundle_is_refused(tmp_path):
    shutil.copytree(V2 / "bundle", tmp_path / "bundle")
    meta = tmp_path / "bundle" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format_version": 3}))
    with pytest.raises(formats.FormatTooNewError,
                       match=re.escape("bundle format version 3 is newer than this Sluice "
                                       "reads (2)")):
        ModelBundle.load(tmp_path / "bundle")


def test_the_v2_bundle_loads_its_index_from_its_own_file():
    """Version 2: the approximate index is `ann.faiss` beside the arrays (mapped at load)."""
    bundle = ModelBundle.load(V2 / "bundle")
    assert bundle.meta["format_version"] == 2 and bundle.ann is not None
    assert (bundle.ann.kind, bundle.ann.items, bundle.ann.dims) == ("ivf", 60, 4)
    query = bundle.user_factors[1]
    exact = np.argsort(-(bundle.item_factors @ query), kind="stable")[:10]
    found = bundle.ann.search(query, 60, 1_000)  # every list probed: every item found
    ranked = found[np.argsort(-(bundle.item_factors[found] @ query), kind="stable")][:10]
    assert ranked.tolist() == exact.tolist()


def test_a_newer_config_is_refused(tmp_path):
    text = (V1 / "sluice.yaml").read_text().replace("format_version: 1", "format_version: 2")
    (tmp_path / "sluice.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_app_config(tmp_path / "sluice.yaml")
    assert TOO_NEW in str(caught.value) and "\n" not in str(caught.value)
