"""Every error status a route answers is declared in its OpenAPI operation, with the shape it
answers in: walked over the app's own schema, against a real server.

Two sources of "can return": what each operation answers to a fixed set of probes over real
HTTP (no key, a key of the wrong role, bodies empty, broken, not JSON, too large, an unknown
path value and query parameter), and the 4xx/5xx codes written in the route function itself
(its code and its docstring: a 503 while the event log cannot take writes, or `/ready` before
a champion, which the probes cannot all provoke)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from serving.api.errors import INPUT_ERRORS, PERSONALIZE_PREFIX
from serving.api.limits import BodyLimits
from serving.api.routes import admin, events, experiments, health, personalize, recommendations
from serving.main import app
from tests.utils.auth import ADMIN, READ

REAL_SERVER = True  # the default server_env: a fresh home, no champion (so /ready is 503)

# answered to a client that has gone away: nobody receives it, so no client reads it
UNRECEIVED = {499}
ROUTE_MODULES = (admin, events, experiments, health, personalize, recommendations)
# a status in code (`status_code=503`, `problem(413, ...`, `... else 503`, `aws_error(..., 503`)
# and in a docstring ("503 (with the reason)", "... 404 when ...")
_CODED = re.compile(r"(?:status_code=|problem\(|HTTPException\(|AuthError\(|else |, )"
                    r"([45]\d\d)\b")
_DOCUMENTED = re.compile(r"\b([45]\d\d)\b(?=\s*(?:\(|,|;|:|\.|$| or | when | if | while ))",
                         re.MULTILINE)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in schema["paths"].items()
            for method, op in ops.items()]


def _declared(op: dict[str, Any]) -> set[int]:
    return {int(code) for code in op.get("responses", {}) if code.isdigit()}


def _shape(op: dict[str, Any], status: int) -> str:
    """The component a declared error response refers to (Problems or AwsError)."""
    content = op["responses"][str(status)].get("content", {})
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1]


def _limit(path: str) -> int:
    limits = next(m for m in app.user_middleware if m.cls is BodyLimits).kwargs
    return next((size for prefix, size in limits["limits"] if path.startswith(prefix)),
                limits["default"])


def _probes(method: str, path: str) -> list[dict[str, Any]]:
    url = re.sub(r"\{[^}]+\}", "nope", path)
    probes: list[dict[str, Any]] = [
        {"url": url, "headers": {}}, {"url": url, "headers": READ},
        {"url": url, "headers": ADMIN}, {"url": f"{url}?nope=1", "headers": ADMIN},
        {"url": url, "headers": {"X-Api-Key": "not-a-key"}}]
    if method == "POST":
        json_type = {"content-type": "application/json"}
        probes = [{**p, "content": b"{}", "headers": {**p["headers"], **json_type}}
                  for p in probes]
        probes += [{"url": url, "headers": {**ADMIN, **json_type}, "content": body}
                   for body in (b"{", b"[]", b'{"a": 1, "a": 2}', b"[" * 40 + b"]" * 40,
                                b"x" * (_limit(path) + 1))]
        probes.append({"url": url, "headers": {**ADMIN, "content-type": "text/plain"},
                       "content": b"hello"})
    return probes


@pytest.fixture(scope="module")
def schema(server) -> dict[str, Any]:
    return server["http"].get("/openapi.json").json()


def test_every_status_a_probe_gets_is_declared_with_its_shape(server, schema):
    undeclared, shapes = [], []
    for method, path, op in _operations(schema):
        for probe in _probes(method, path):
            r = server["http"].request(method, probe["url"], headers=probe["headers"],
                                       content=probe.get("content"))
            if r.status_code < 400 or r.status_code in UNRECEIVED:
                continue
            if r.status_code not in _declared(op):
                undeclared.append(f"{method} {path} answered {r.status_code}: {r.text[:120]}")
                continue
            shape = _shape(op, r.status_code)
            body = r.json()
            fits = (isinstance(body.get("detail"), list) if shape == "Problems"
                    else {"__type", "message"} <= set(body) if shape == "AwsError"
                    else shape == "Readiness" and "ready" in body)
            if not fits:
                shapes.append(f"{method} {path} {r.status_code} declared {shape!r}: {body}")
    assert not undeclared, "\n".join(sorted(set(undeclared)))
    assert not shapes, "\n".join(sorted(set(shapes)))


def test_every_status_a_route_codes_or_documents_is_declared(schema):
    """The 4xx/5xx numbers in each route function's code and docstring."""
    missing = []
    routes = {(m, re.sub(r":\w+}", "}", r.path)): r for module in ROUTE_MODULES
              for r in module.router.routes if isinstance(r, APIRoute) for m in r.methods}
    for method, path, op in _operations(schema):
        endpoint = routes[method, path].endpoint
        source = _with_helpers(endpoint)
        doc = inspect.getdoc(endpoint) or ""
        coded = {int(s) for s in _CODED.findall(source) + _DOCUMENTED.findall(doc)}
        coded -= UNRECEIVED
        coded |= _raised(endpoint, source, path)
        if coded - _declared(op):
            missing.append(f"{method} {path}: {sorted(coded - _declared(op))}")
    assert not missing, "\n".join(missing)


def _with_helpers(endpoint: Any) -> str:
    """The function's source, and that of the functions of its module it calls (one level:
    the route modules' `_body`, `_store`, `_allowed` answer for their routes)."""
    source = inspect.getsource(endpoint)
    module = vars(inspect.getmodule(endpoint))
    helpers = {name for name in re.findall(r"(\w+)\(", source)
               if inspect.isfunction(module.get(name))
               and module[name].__module__ == endpoint.__module__}
    return "\n".join([source, *(inspect.getsource(module[name]) for name in sorted(helpers))])


def _raised(endpoint: Any, source: str, path: str) -> set[int]:
    """The statuses serving/api/errors maps the InputErrors the function raises to."""
    found = set()
    for name in re.findall(r"raise (\w+)\(", source):
        kind = vars(inspect.getmodule(endpoint)).get(name)
        for family, native, _, aws in INPUT_ERRORS:
            if isinstance(kind, type) and issubclass(kind, family):
                found.add(aws if path.startswith(PERSONALIZE_PREFIX) else native)
                break
    return found


def test_ready_declares_503_with_the_readiness_shape(server, schema):
    """A fresh home has no champion: /ready answers 503 with `ready: false` and the reason
    per tenant, the shape its declaration names."""
    r = server["http"].get("/ready")
    assert r.status_code == 503 and r.json()["ready"] is False
    op = schema["paths"]["/ready"]["get"]
    assert {200, 503} <= _declared(op)
    assert _shape(op, 503) == _shape(op, 200) == "Readiness"
    assert isinstance(httpx.Response(503, json=r.json()).json()["models"], dict)


def test_every_documented_request_example_fits_its_schema_and_is_accepted(server, schema):
    """The examples documentation tools show (ReDoc draws /v1/events' samples from them)
    are requests the server takes as they are."""
    import json

    from jsonschema import Draft202012Validator

    tried = []
    for method, path, op in _operations(schema):
        for kind, media in op.get("requestBody", {}).get("content", {}).items():
            values = [e["value"] for e in media.get("examples", {}).values()]
            values += [media["example"]] if "example" in media else []
            for value in values:
                if kind == "application/json":
                    Draft202012Validator({**media["schema"], "components": schema["components"]}
                                         ).validate(value)
                body = json.dumps(value) if kind == "application/json" else value
                answer = server["http"].request(method, path, content=body,
                                                headers={**ADMIN, "content-type": kind})
                assert answer.status_code == 200, (path, kind, value, answer.text)
                tried.append((path, kind))
    assert tried.count(("/v1/events", "application/json")) == 2
    assert ("/v1/events", "application/x-ndjson") in tried
