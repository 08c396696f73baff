"""`upgrade` runs registered migrations in order, resumes after a crash half-way, and does
nothing the second time; a test-only warehouse and raw log migration stand in for real ones."""

from __future__ import annotations

import duckdb
import pytest

from sluice import formats
from sluice.intake.eventlog import EventLog
from sluice.operate.upgrade import Migration, UpgradeError, plan, stored_version, upgrade
from sluice.settings import get_settings
from sluice.warehouse.db import connect
from tests.utils.factories import environment, interaction


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for key, value in environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    settings = get_settings()
    EventLog(settings.raw_dir).append([interaction("u1", "i1")])
    with connect(settings.warehouse_path) as con:
        con.execute("insert into raw.events (event_id, tenant, event_type, event_at, "
                    "source_file, loaded_at) values ('a', 'default', 'item', now(), 'f', now()),"
                    " ('b', 'default', 'item', now(), 'f', now())")
    return settings


class AddNote:
    """Warehouse 1 -> 2: a column, then filled row by row; may crash between the two."""

    def __init__(self, crash_once: bool = False):
        self.crash, self.calls = crash_once, 0

    def __call__(self, settings, say) -> None:
        self.calls += 1
        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("alter table raw.events add column if not exists note varchar")
            con.execute("update raw.events set note = 'v2' where event_id = 'a' and note is null")
            say("note: 1 of 2 rows")
            if self.crash:
                self.crash = False
                raise KeyboardInterrupt("killed half-way")
            con.execute("update raw.events set note = 'v2' where note is null")
            say("note: 2 of 2 rows")


def notes(settings) -> list:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("select note from raw.events order by event_id").fetchall()


CURRENT_2 = {**formats.CURRENT, "warehouse": 2, "raw_log": 2}


def test_a_migration_resumes_after_a_crash_and_runs_once(settings):
    add_note = AddNote(crash_once=True)
    marks = []
    migrations = [Migration("warehouse", 2, "events get a note", add_note),
                  Migration("raw_log", 2, "mark the log", lambda s, say: marks.append(1))]
    lines: list[str] = []
    assert [m.kind for m in plan(settings, migrations, CURRENT_2)] == ["raw_log", "warehouse"]
    with pytest.raises(KeyboardInterrupt):
        upgrade(settings, lines.append, migrations, CURRENT_2)
    # the raw log step was recorded, the warehouse one was not
    assert stored_version(settings, "raw_log") == 2 and formats.read_marker(settings.raw_dir) == 2
    assert stored_version(settings, "warehouse") == 1
    assert lines[0] == "upgrade 1/2: raw_log 1 -> 2: mark the log"
    assert "upgrade 2/2: warehouse 1 -> 2: events get a note" in lines

    lines.clear()
    done = upgrade(settings, lines.append, migrations, CURRENT_2)
    assert [m.kind for m in done] == ["warehouse"] and marks == [1] and add_note.calls == 2
    assert notes(settings) == [("v2",), ("v2",)]
    assert stored_version(settings, "warehouse") == 2
    assert lines[-1] == "upgrade done: 1 migration(s) ran"

    lines.clear()
    assert upgrade(settings, lines.append, migrations, CURRENT_2) == []
    assert add_note.calls == 2 and lines == ["nothing to upgrade: raw_log 2, warehouse 2, config 1"]


def test_a_missing_migration_and_newer_data_are_refused(settings):
    with pytest.raises(UpgradeError, match="no migration of warehouse from version 1 to 2"):
        upgrade(settings, lambda _: None, [], {**formats.CURRENT, "warehouse": 2})
    formats.write_marker(settings.raw_dir, "raw_log", 3)
    with pytest.raises(formats.FormatTooNewError,
                       match=r"raw_log format version 3 is newer than this Sluice reads \(1\)"):
        upgrade(settings, lambda _: None)


def test_a_config_version_is_recorded_in_the_file(settings):
    text = settings.config.read_text()
    assert "\nformat_version: 1\n" in text
    migrations = [Migration("config", 2, "nothing", lambda s, say: None)]
    upgrade(settings, lambda _: None, migrations, {**formats.CURRENT, "config": 2})
    assert stored_version(settings, "config") == 2
    # only that line changed
    assert settings.config.read_text() == text.replace("format_version: 1", "format_version: 2")


def test_the_command_says_there_is_nothing_to_upgrade(settings, capsys):
    from cli.main import main

    assert main(["upgrade"]) == 0
    assert capsys.readouterr().out.strip() == (
        "nothing to upgrade: raw_log 1, warehouse 1, config 1")


def test_the_config_version_is_written_to_a_new_file_renamed_over_the_old(settings):
    """Rewritten in place, a kill between truncating and writing left an empty config."""
    settings.config.chmod(0o640)
    inode = settings.config.stat().st_ino
    migrations = [Migration("config", 2, "nothing", lambda s, say: None)]
    upgrade(settings, lambda _: None, migrations, {**formats.CURRENT, "config": 2})
    assert settings.config.stat().st_ino != inode
    assert settings.config.stat().st_mode & 0o777 == 0o640
    assert stored_version(settings, "config") == 2
    assert [p.name for p in settings.config.parent.glob(f".{settings.config.name}*")] == []


def test_a_newer_home_is_refused_by_serve_and_upgrade_in_one_line(settings):
    from tests.utils.cli import sluice

    formats.write_marker(settings.raw_dir, "raw_log", 2)
    env = {"SLUICE_HOME": str(settings.home), "SLUICE_CONFIG": str(settings.config),
           "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
    told = (f"{settings.raw_dir}/FORMAT.json: raw_log format version 2 is newer than this "
            "Sluice reads (1): upgrade Sluice, or restore a backup made by this version")
    done = sluice(env, "serve", timeout=120)  # before uvicorn: no start-up traceback
    assert (done.returncode, done.stderr.strip()) == (1, f"sluice serve: {told}")
    done = sluice(env, "upgrade")
    assert done.returncode == 1 and done.stderr.strip() == (
        "sluice upgrade: raw_log format version 2 is newer than this Sluice reads (1): "
        "upgrade Sluice, or restore a backup made by this version")
