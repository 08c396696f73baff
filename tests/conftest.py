from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (flows run for real against it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def server_env(tmp_path_factory, request) -> dict[str, str]:
    """The API's environment: a fresh home with the test config. A module that needs more
    (a tracker, a champion, a trained pipeline) overrides this fixture and prepares it."""
    from tests.utils.factories import environment

    return environment(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))


@pytest.fixture(scope="module")
def server(request, server_env) -> Iterator[dict[str, Any]]:
    """The API for one test module: {"base": URL, "http": an httpx client on it, "home": ...}.

    In process (starlette's TestClient over serving.main.app) unless the module sets
    `REAL_SERVER = True`: then a real uvicorn on loopback with `SERVER_WORKERS` workers and
    its log in <home>/server.log ("log"), for what needs a process (boto3 clients, several
    workers, the server's own output).
    """
    home = Path(server_env["SLUICE_HOME"])
    if getattr(request.module, "REAL_SERVER", False):
        from tests.utils.server import running_server

        log = home / "server.log"
        workers = getattr(request.module, "SERVER_WORKERS", 1)
        with (open(log, "wb") as output,
              running_server(server_env, workers=workers, output=output) as base,
              httpx.Client(base_url=base, timeout=30) as http):
            yield {"base": base, "http": http, "home": home, "log": log}
        return
    from fastapi.testclient import TestClient

    from serving.main import app

    with pytest.MonkeyPatch.context() as patch:
        for name, value in server_env.items():
            patch.setenv(name, value)
        with TestClient(app) as http:
            yield {"base": str(http.base_url), "http": http, "home": home}


@pytest.fixture(scope="session")
def s3():
    """A real S3 API (moto's server mode) on loopback for the session; a bucket per test
    through `s3.new_bucket()`. See tests/utils/s3.py."""
    from tests.utils.s3 import running_s3

    with running_s3() as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch) -> dict[str, str]:
    """This process pointed at the S3 server the way users point Sluice at S3 or MinIO."""
    from tests.utils.s3 import forget_s3fs_clients

    env = s3.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_s3fs_clients()
    yield env
    forget_s3fs_clients()
