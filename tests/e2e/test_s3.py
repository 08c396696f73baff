"""End to end on a real S3 API (moto's server on loopback): one bucket holds the raw log, the
landing folder and MLflow's artifacts, configured as users configure AWS S3 or MinIO
(SLUICE_RAW_URL, SLUICE_LANDING_URL, SLUICE_MLFLOW_ARTIFACTS, boto3's credentials and
AWS_ENDPOINT_URL). The real `pipeline` flow ingests and trains; two serving processes with
homes of their own follow the bucket, and an event sent to one changes the other's answers.
"""

from __future__ import annotations

from contextlib import ExitStack

import duckdb
import httpx
import pytest

from sluice.intake.synthetic import SyntheticSpec, generate
from sluice.learn import registry
from sluice.settings import Settings
from sluice.warehouse.ingest import Ingestor
from tests.utils.auth import READ, WRITE
from tests.utils.factories import environment, interaction
from tests.utils.s3 import forget_s3fs_clients
from tests.utils.server import running_server
from tests.utils.waits import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(s3, tmp_path_factory, prefect_harness):
    home = tmp_path_factory.mktemp("s3-e2e")
    bucket = s3.new_bucket()
    env = {**environment(home), **s3.env(), "SLUICE_RAW_URL": f"s3://{bucket}/raw",
           "SLUICE_LANDING_URL": f"s3://{bucket}/landing",
           "SLUICE_MLFLOW_ARTIFACTS": f"s3://{bucket}/mlflow"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        forget_s3fs_clients()
        # bulk files dropped into the bucket by another tool (here boto3)
        info = generate(tmp_path_factory.mktemp("export"),
                        SyntheticSpec(users=400, items=150, events=12_000, files=2, seed=11))
        for path in info.paths:
            s3.client().upload_file(str(path), bucket, f"landing/{path.name}")
        from flows.pipeline import pipeline

        outcome = pipeline(report=False)
        yield {"home": home, "env": env, "info": info, "outcome": outcome, "bucket": bucket}
    forget_s3fs_clients()


@pytest.fixture(scope="module")
def servers(trained, tmp_path_factory):
    """Two serving processes, each with its own SLUICE_HOME: they share only the bucket and
    the MLflow store, as replicas on two machines would."""
    other = tmp_path_factory.mktemp("s3-replica")
    with ExitStack() as stack:
        bases = [stack.enter_context(running_server(env, output=stack.enter_context(
                     open(env["SLUICE_HOME"] + "/server.log", "wb"))))
                 for env in (trained["env"], {**trained["env"], "SLUICE_HOME": str(other)})]
        yield bases


def _ask(base: str, user: str) -> list[str]:
    answer = httpx.post(f"{base}/v1/recommendations", headers=READ, timeout=10,
                        json={"user_id": user, "num_results": 10})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_personalized_count"] == 10
    return [slot["item_id"] for slot in answer.json()["items"]]


def _count(home, sql: str, params: list | None = None) -> int:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchone()[0]


def test_pipeline_loads_the_bucket_and_keeps_artifacts_there(s3, trained):
    outcome, bucket, home = trained["outcome"], trained["bucket"], trained["home"]
    assert outcome.ingest.rows_loaded == trained["info"].events
    (result,) = outcome.train
    assert result.promoted is True
    assert _count(home, f"select count(*) from raw.manifest where path like "
                        f"'s3://{bucket}/landing/%'") == 2
    client = registry.client(trained["env"]["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("sluice-default", "champion")
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith(f"s3://{bucket}/mlflow/sluice-default/")
    assert any(k.endswith("/MLmodel") for k in s3.keys(bucket, "mlflow/"))
    assert not (home / "mlflow" / "artifacts").exists()


def test_two_replicas_follow_the_bucket_and_ingest_takes_it_once(s3, trained, servers):
    first, second = servers
    version = trained["outcome"].train[0].version
    for base in servers:  # each loaded the champion's artifacts from the bucket
        ready = httpx.get(f"{base}/ready", timeout=10).json()
        assert ready["models"]["default"]["version"] == version
    user = trained["info"].known_user
    top = _ask(second, user)[0]
    before = set(s3.keys(trained["bucket"], "raw/"))

    events = [interaction(user, top, "purchase"), interaction("s3-new-user", top)]
    sent = httpx.post(f"{first}/v1/events", json=events, headers=WRITE, timeout=10)
    assert sent.status_code == 200, sent.text
    # the request's events were committed together: one new object holds both
    new = sorted(set(s3.keys(trained["bucket"], "raw/")) - before)
    holders = [k for k in new if events[0]["id"].encode() in _body(s3, trained, k)]
    assert len(holders) == 1 and events[1]["id"].encode() in _body(s3, trained, holders[0])

    # the other process never received the event: it folds it in from the bucket
    wait_until(lambda: _ask(second, user),
               f"the second replica to stop recommending {top}, bought through the first",
               until=lambda ids: top not in ids)

    ids = [e["id"] for e in events]
    _ingest_once(trained, ids)


def _body(s3, trained, key: str) -> bytes:
    return s3.client().get_object(Bucket=trained["bucket"], Key=key)["Body"].read()


def _ingest_once(trained, ids: list[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in trained["env"].items():
            mp.setenv(key, value)
        forget_s3fs_clients()
        settings = Settings()
        ingest = Ingestor(settings.warehouse_path, settings.raw_location,
                          settings.landing_location)
        loaded = ingest.run()
        # the two events, plus the answers both replicas logged back as recommendation events
        assert loaded.rows_loaded >= 2 and loaded.summary()["changed_files"] == []
        assert _count(trained["home"], "select count(*) from raw.events where event_id in "
                      "(?, ?)", ids) == 2
        # a second run takes nothing twice (the replicas may still log an answer or two)
        again = ingest.run()
        assert again.duplicates_skipped == 0 and again.summary()["changed_files"] == []
        assert not {f.path for f in again.files if f.status == "loaded"} & {
            f.path for f in loaded.files if f.status == "loaded"}
