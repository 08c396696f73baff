"""The OpenAPI schema, fuzzed against a real server: no 5xx, and every answer fits the schema.

Every operation gets a few valid (positive) and invalid (negative) cases from schemathesis,
sent with an admin key. Bounded so that the whole run stays well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.utils.auth import ADMIN
from tests.utils.factories import environment
from tests.utils.models import register_champion, synthetic_bundle

EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}


REAL_SERVER = True  # fuzzed over real HTTP, through uvicorn's own parsing


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("schemathesis")
    env = environment(home)
    # a champion, so that /ready is 200 and the model tiers are fuzzed too
    register_champion(synthetic_bundle(), env["MLFLOW_TRACKING_URI"], home / "artifacts")
    return env


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server['base']}/openapi.json")


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_covers_the_api(api_schema):
    paths = {op.path for op in _operations(api_schema)}
    assert {"/v1/events", "/v1/recommendations", "/v1/rank", "/admin/trackers",
            "/admin/reload", "/personalize/events"} <= paths
    assert set(api_schema.raw_schema["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_no_server_errors_and_answers_fit_the_schema(api_schema, mode):
    failures: list[str] = []
    for operation in _operations(api_schema):
        @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            case.call_and_validate(headers=ADMIN, timeout=10,
                                   checks=[not_a_server_error, response_schema_conformance])

        try:
            send()
        except Unsatisfiable:  # nothing to make invalid: an operation without parameters
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
