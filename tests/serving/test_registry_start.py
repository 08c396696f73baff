"""`sluice serve --workers N` on a new MLflow store: the command creates the store's tables
once before the workers start (each used to run MLflow's migrations at the same time, and
they broke one another's: "model registry unreachable: duplicate column name: step"), and
says in one line when the store cannot be opened, then serves all the same."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
from alembic.script import ScriptDirectory

from sluice.learn import registry
from sluice.settings import PROJECT_ROOT
from tests.utils.auth import ADMIN, READ
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle
from tests.utils.server import running_server

# what the workers said when their migrations ran into one another's
RACE = ("unreachable", "could not be loaded", "duplicate column", "already exists",
        "Online migration")


def _workers_answering(base: str, n: int = 90) -> dict[str, str | None]:
    """The model version each serving process answered from (an answer id starts with its
    process's prefix); each request on a new connection, so every worker answers."""
    found = {}
    for i in range(n):
        r = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=30,
                       json={"user_id": f"u{i}", "num_results": 3})
        assert r.status_code == 200, r.text
        found[r.json()["recommendation_id"][:16]] = r.json()["model_version"]
    return found


def _newest_schema() -> str:
    folder = Path(mlflow.__file__).parent / "store" / "db_migrations"
    return str(ScriptDirectory(str(folder)).get_current_head())


def test_several_workers_on_a_new_store_start_without_racing_its_migrations(tmp_path):
    env = environment(tmp_path)
    store = tmp_path / "mlflow" / "mlflow.db"
    assert not store.exists()
    log = tmp_path / "server.log"
    with open(log, "w") as output, running_server(env, workers=3, output=output) as base:
        ready = httpx.get(f"{base}/ready", timeout=10).json()
        assert ready["models"]["default"]["error"] == "no models:/sluice-default@champion yet"
        answered = _workers_answering(base)
        assert len(answered) == 3 and set(answered.values()) == {None}, answered
        # the store works for every worker: a champion registered now is served by all three
        version = register_champion(synthetic_bundle(seed=1), env["MLFLOW_TRACKING_URI"],
                                    tmp_path / "artifacts")
        assert httpx.post(f"{base}/admin/reload", headers=ADMIN, timeout=120).status_code == 200
        served = _workers_answering(base)
        assert len(served) == 3 and set(served.values()) == {version}, served
    text = log.read_text()
    assert not [line for line in text.splitlines() if any(r in line for r in RACE)], text
    with sqlite3.connect(store) as db:
        (schema,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert schema == _newest_schema()
    assert {"experiments", "runs", "registered_models", "model_versions"} <= tables
    assert not any(t.startswith("_alembic_tmp") for t in tables)  # no migration left half-way


def test_a_store_that_cannot_be_opened_is_said_once_and_serving_starts(tmp_path):
    (tmp_path / "a-file").write_text("")  # the store's folder is a file: it cannot be made
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    env = {**environment(tmp_path), "MLFLOW_TRACKING_URI": uri}
    log = tmp_path / "server.log"
    with open(log, "w") as output, running_server(env, workers=2, output=output) as base:
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 503  # no champion
        answered = _workers_answering(base)  # from the tiers below a model
        assert len(answered) == 2 and set(answered.values()) == {None}, answered
    said = [line for line in log.read_text().splitlines() if line.startswith("sluice serve:")]
    assert said == [f"sluice serve: model registry {uri} could not be opened: FileExistsError: "
                    f"[Errno 17] File exists: '{tmp_path / 'a-file'}'; serving starts, and "
                    "each worker polls it"], log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_tracking_server_migrates_its_own_store():
    # nothing is opened (no port answers here): the server's store is not ours to migrate
    assert registry.prepare_store("http://127.0.0.1:9/") is None


def test_a_database_that_does_not_answer_is_given_up_on_quietly_without_its_password():
    # in a process of its own: MLflow keeps retrying it (and its tracking URI) after
    code = ("from sluice.learn import registry; print(registry.prepare_store("
            "'postgresql://sluice:s3cret@127.0.0.1:9/mlflow', timeout=1))")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("model registry postgresql://sluice:***@127.0.0.1:9/mlflow did not "
                           "answer within 1 s\n")
    assert "s3cret" not in done.stderr and "retried" not in done.stderr, done.stderr
