"""Who may do what: API keys by role and tenant, SigV4 on the Personalize API, auth off."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from types import SimpleNamespace

import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sluice import auth
from sluice.auth import AuthError, KeyTable, parse_env_keys
from sluice.settings import ApiKeyConfig, AwsKeyConfig, ConfigError, get_settings, load_app_config
from tests.utils.auth import (
    ADMIN,
    ADMIN_KEY,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET,
    READ,
    TENANTS,
    WRITE,
    boto_client,
)
from tests.utils.auth import headers as key_headers
from tests.utils.auth import key as key_of
from tests.utils.factories import environment, interaction, write_config
from tests.utils.server import running_server
from tests.utils.waits import log_lines

DATASET = "arn:aws:personalize:us-east-1:000000000000:dataset/{}/ITEMS"
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/{}"


REAL_SERVER = True  # boto3 signs real HTTP requests, and the server's own log is read


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    return {**environment(tmp_path_factory.mktemp("auth")), "SLUICE_LOG_LEVEL": "DEBUG"}


def logged(home) -> list[dict]:
    # complete lines only: the server may be writing an answer back at this moment
    return [orjson.loads(line) for line in log_lines(home)]


def call(server, method: str, path: str, headers=None, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{server['base']}{path}", headers=headers, timeout=10, **kwargs)


PROTECTED = [
    ("POST", "/v1/events", {"json": interaction("u", "i")}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "u"}}),
    ("GET", "/v1/recommendations", {"params": {"user_id": "u"}}),
    ("POST", "/v1/rank", {"json": {"user_id": "u", "items": ["a"]}}),
    ("GET", "/admin/trackers", {}),
    ("POST", "/admin/trackers", {"json": {"tenant": "nobody"}}),
    ("POST", "/admin/reload", {}),
]


# --- the key table -------------------------------------------------------------------------
def table(*entries: tuple[str, str, str], environ=None) -> KeyTable:
    return KeyTable([ApiKeyConfig(role=r, tenant=t, key=k) for r, t, k in entries], [],
                    environ or {})


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    keys = table(("read", "a", "k" * 16), ("write", "a", "w" * 16), ("admin", "*", "z" * 16))
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest",
                        lambda a, b: compared.append(1) or real(a, b))
    assert keys.authenticate("k" * 16).role == "read"  # the first key matches ...
    assert len(compared) == 3  # ... and every key is still compared
    compared.clear()
    with pytest.raises(AuthError) as err:
        keys.authenticate("nope" * 4)
    assert len(compared) == 3 and err.value.status == 401


def test_key_table_refuses_short_duplicate_and_unset_keys():
    with pytest.raises(ConfigError, match=r"auth.keys\[0\]: keys need at least 16"):
        table(("read", "a", "short"))
    with pytest.raises(ConfigError, match=r"auth.keys\[1\]: the same key"):
        table(("read", "a", "k" * 16), ("write", "b", "k" * 16))
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        KeyTable([ApiKeyConfig(role="read", key_env="MY_KEY")], [], {})
    from_env = KeyTable([ApiKeyConfig(role="read", tenant="t", key_env="MY_KEY")], [],
                        {"MY_KEY": "x" * 20})
    assert from_env.authenticate("x" * 20).tenant == "t"


def test_env_keys_replace_the_configured_ones(tmp_path):
    settings = get_settings(config=write_config(tmp_path / "c.yaml"))
    compact = KeyTable.from_settings(
        settings, {"SLUICE_API_KEYS": "read:shop:" + "r" * 16 + ", write:*:" + "w:" * 8})
    assert {(p.role, p.tenant) for p in compact.principals()} == {
        ("read", "shop"), ("write", "*"), ("admin", "*")}  # the AWS pair stays
    assert compact.authenticate("w:" * 8).role == "write"  # a key may hold ':'
    with pytest.raises(AuthError):
        compact.authenticate(ADMIN_KEY)  # the config's keys are gone
    as_json = KeyTable.from_settings(settings, {"SLUICE_API_KEYS": json.dumps(
        [{"role": "admin", "tenant": "x", "key": "j" * 16}])})
    assert as_json.authenticate("j" * 16).tenant == "x"
    for bad, where in [("reader:shop:" + "k" * 16, "SLUICE_API_KEYS[0]"),
                       ("read:shop", "SLUICE_API_KEYS[0]"),
                       ('[{"role": "read"}]', "SLUICE_API_KEYS"),
                       ("[not json", "SLUICE_API_KEYS")]:
        with pytest.raises(ConfigError, match=where.replace("[", r"\[")):
            parse_env_keys(bad)


def test_config_errors_name_the_field_but_never_the_key(tmp_path):
    secret = "super-secret-key-value-123"
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"auth": {"keys": [{"key": secret, "role": "root"}],
                                         "aws_access_keys": [{"access_key_id": "a",
                                                              "secret_access_key": secret,
                                                              "secret_env": "X"}]}}))
    with pytest.raises(ConfigError) as err:
        load_app_config(path)
    assert "auth.keys.0.role" in str(err.value)
    assert "auth.aws_access_keys.0" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value.__cause__)


def test_principal_roles_and_tenants():
    reader = auth.Principal("r", "read", "shop")
    assert reader.can("read") and not reader.can("write") and not reader.can("admin")
    assert auth.Principal("a", "admin", "*").can("write")
    with pytest.raises(AuthError) as err:
        reader.require("read", "other")
    assert (err.value.status, err.value.field) == (403, "tenant")
    assert reader.default_tenant == "shop" and auth.Principal("a", "admin", "*").default_tenant \
        == "default"


# --- SigV4, signed by botocore and checked again ----------------------------------------------
def signed(body: bytes, secret: str = "s3cret", at: dt.datetime | None = None,
           host: str = "127.0.0.1:9") -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"http://{host}/personalize/events", data=body,
                         headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", secret), "personalize", "us-east-1")
    request.context["timestamp"] = (at or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    request.headers["host"] = host
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    scope = signer.credential_scope(request)
    names = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, "
                                        f"SignedHeaders={names}, Signature={signature}")
    return {k.lower(): v for k, v in request.headers.items()}


def aws_table() -> KeyTable:
    return KeyTable([], [AwsKeyConfig(access_key_id="AKIDEXAMPLE", secret_access_key="s3cret",
                                      role="write", tenant="shop")], {})


def verify(headers: dict[str, str], body: bytes, now=None):
    return aws_table().verify_sigv4("POST", "/personalize/events", "", headers, body, now)


def test_sigv4_signed_with_the_right_secret_is_accepted():
    body = b'{"trackingId": "t"}'
    principal = verify(signed(body), body)
    assert (principal.role, principal.tenant) == ("write", "shop")


@pytest.mark.parametrize("change, code", [
    ("secret", "InvalidSignatureException"),
    ("body", "InvalidSignatureException"),
    ("header", "InvalidSignatureException"),
    ("stale", "InvalidSignatureException"),
    ("key id", "UnrecognizedClientException"),
    ("unsigned host", "IncompleteSignatureException"),
    ("content hash", "InvalidSignatureException"),
])
def test_sigv4_refuses_what_was_not_signed_by_a_known_secret(change, code):
    body = b'{"trackingId": "t"}'
    headers = signed(body, secret="wrong" if change == "secret" else "s3cret",
                     at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20) if change == "stale"
                     else None)
    if change == "body":
        body = b'{"trackingId": "u"}'
    if change == "header":
        headers["host"] = "evil.example:9"
    if change == "key id":
        headers["authorization"] = headers["authorization"].replace("AKIDEXAMPLE", "AKIDOTHER")
    if change == "unsigned host":
        headers["authorization"] = headers["authorization"].replace("host;", "")
    if change == "content hash":
        headers["x-amz-content-sha256"] = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(AuthError) as err:
        verify(headers, body)
    assert err.value.code == code and err.value.status == 403


# --- on a real server ------------------------------------------------------------------------
def test_health_readiness_metrics_and_docs_stay_open(server):
    for path in ("/health", "/ready", "/metrics", "/docs", "/openapi.json"):
        assert call(server, "GET", path).status_code in (200, 503), path


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED)
def test_every_api_route_needs_a_valid_key(server, method, path, kwargs):
    missing = call(server, method, path, **kwargs)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["detail"][0]["field"] == "authorization"
    wrong = call(server, method, path, {"X-Api-Key": "not-a-key-of-this-server"}, **kwargs)
    assert wrong.status_code == 401
    assert call(server, method, path, ADMIN, **kwargs).status_code < 400


def test_bearer_and_x_api_key_are_both_accepted(server):
    body = {"json": {"user_id": "u"}}
    bearer = {"Authorization": f"Bearer {key_of('read')}"}
    assert call(server, "POST", "/v1/recommendations", bearer, **body).status_code == 200
    assert call(server, "POST", "/v1/recommendations", READ, **body).status_code == 200


def test_roles_read_write_and_admin(server):
    event = {"json": interaction("roles", "i1")}
    ask = {"json": {"user_id": "roles"}}
    refused = call(server, "POST", "/v1/events", READ, **event)
    assert refused.status_code == 403
    assert "may not write" in refused.json()["detail"][0]["reason"]
    assert call(server, "POST", "/v1/events", WRITE, **event).status_code == 200
    assert call(server, "POST", "/v1/recommendations", WRITE, **ask).status_code == 403
    assert call(server, "POST", "/v1/recommendations", READ, **ask).status_code == 200
    for method, path, kwargs in PROTECTED[4:]:
        for headers in (READ, WRITE):
            assert call(server, method, path, headers, **kwargs).status_code == 403, path


def test_a_key_writes_only_into_its_own_tenant(server):
    shop_writer = key_headers("write", "shop")
    untagged = interaction("iso-writer", "s1")
    assert call(server, "POST", "/v1/events", shop_writer, json=untagged).status_code == 200
    stored = {e["id"]: e for e in logged(server["home"])}
    assert stored[untagged["id"]]["tenant"] == "shop"  # no tenant given: the key's tenant
    allowed = {**interaction("iso-writer", "s3"), "tenant": "shop"}
    foreign = {**interaction("iso-writer", "s2"), "tenant": "other"}
    r = call(server, "POST", "/v1/events", shop_writer, json=[allowed, foreign])
    assert r.status_code == 403
    assert r.json()["detail"] == [{"index": 1, "field": "tenant",
                                   "reason": "this key may not write to tenant 'other'"}]
    stored = {e["id"] for e in logged(server["home"])}
    assert allowed["id"] not in stored and foreign["id"] not in stored  # nothing of the call


def test_a_key_reads_neither_recommendations_nor_history_of_another_tenant(server):
    for tenant, items in (("other", ["secret-1", "secret-2"]), ("shop", ["shop-1"])):
        events = [interaction("alice", item, tenant=tenant) for item in items]
        r = call(server, "POST", "/v1/events", key_headers("write", tenant), json=events)
        assert r.status_code == 200
    shop_reader = key_headers("read", "shop")
    history = {"user_id": "alice", "template": "recently_viewed", "fill_with_random": False}
    own = call(server, "POST", "/v1/recommendations", shop_reader, json=history).json()
    assert [s["item_id"] for s in own["items"]] == ["shop-1"]  # the key's tenant by default
    for method, path, kwargs in [
        ("POST", "/v1/recommendations", {"json": {**history, "tenant": "other"}}),
        ("GET", "/v1/recommendations", {"params": {"user_id": "alice", "tenant": "other"}}),
        ("POST", "/v1/rank", {"json": {"user_id": "alice", "tenant": "other",
                                       "items": ["secret-1"]}}),
    ]:
        r = call(server, method, path, shop_reader, **kwargs)
        assert r.status_code == 403, path
        assert r.json()["detail"][0]["field"] == "tenant"
        assert "secret" not in r.text
    # the other tenant's own reader does see its history
    theirs = call(server, "POST", "/v1/recommendations", key_headers("read", "other"),
                  json=history).json()
    assert sorted(s["item_id"] for s in theirs["items"]) == ["secret-1", "secret-2"]


def boto(server, service: str, secret: str = AWS_SECRET, key_id: str = AWS_ACCESS_KEY_ID):
    return boto_client(server["base"], service, key_id=key_id, secret=secret)


def test_boto3_with_a_wrong_secret_or_unknown_key_is_refused(server):
    for n, (client, code) in enumerate([
            (boto(server, "personalize-events", secret="wrong"), "InvalidSignatureException"),
            (boto(server, "personalize-events", key_id="AKIDUNKNOWN"),
             "UnrecognizedClientException")]):
        with pytest.raises(ClientError) as err:
            client.put_events(trackingId="demo-tracking-id", sessionId="s", eventList=[
                {"eventId": f"sig-{n}", "eventType": "click", "itemId": "x",
                 "sentAt": time.time()}])
        assert err.value.response["Error"]["Code"] == code
    with pytest.raises(ClientError) as err:
        boto(server, "personalize-runtime", secret="wrong").get_recommendations(
            campaignArn=CAMPAIGN.format("default"), userId="u")
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    boto(server, "personalize-events").put_events(trackingId="demo-tracking-id", sessionId="s",
                                                  eventList=[{"eventId": "sig-ok",
                                                              "eventType": "click",
                                                              "itemId": "x",
                                                              "sentAt": time.time()}])
    stored = {e["id"] for e in logged(server["home"])}
    assert "sig-ok" in stored and not {"sig-0", "sig-1"} & stored


def test_personalize_calls_without_a_signature_need_a_key_of_the_tenant(server):
    body = {"trackingId": "demo-tracking-id", "sessionId": "s",
            "eventList": [{"eventType": "click", "itemId": "x", "sentAt": time.time()}]}
    bare = call(server, "POST", "/personalize/events", json=body)
    assert bare.status_code == 403
    assert bare.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    foreign = call(server, "POST", "/personalize/events", key_headers("write", "shop"), json=body)
    assert foreign.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert call(server, "POST", "/personalize/events", WRITE, json=body).status_code == 200
    items = {"datasetArn": DATASET.format("shop"), "items": [{"itemId": "k1"}]}
    call(server, "POST", "/admin/trackers", ADMIN, json={"tenant": "shop"})
    assert call(server, "POST", "/personalize/items", WRITE, json=items).status_code == 403
    assert call(server, "POST", "/personalize/items", key_headers("write", "shop"),
                json=items).status_code == 200
    ask = {"campaignArn": CAMPAIGN.format("shop"), "userId": "u"}
    assert call(server, "POST", "/personalize/recommendations", READ,
                json=ask).status_code == 403
    assert call(server, "POST", "/personalize/recommendations", key_headers("read", "shop"),
                json=ask).status_code == 200


def test_admin_creates_trackers_and_reloads_models(server):
    created = call(server, "POST", "/admin/trackers", ADMIN, json={"tenant": "tenant9"})
    assert created.status_code == 201
    tracking_id = created.json()["tracking_id"]
    listed = call(server, "GET", "/admin/trackers", ADMIN).json()
    assert {"tracking_id": tracking_id, "tenant": "tenant9"} in listed
    again = call(server, "POST", "/admin/trackers", ADMIN, json={"tenant": "tenant9"})
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "tenant"
    bad = call(server, "POST", "/admin/trackers", ADMIN, json={"tenant": "../etc"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "tenant"
    boto(server, "personalize-events").put_events(trackingId=tracking_id, sessionId="s9",
                                                  eventList=[{"eventId": "t9-1",
                                                              "eventType": "click",
                                                              "itemId": "x",
                                                              "sentAt": time.time()}])
    assert {e["id"]: e for e in logged(server["home"])}["t9-1"]["tenant"] == "tenant9"
    reloaded = call(server, "POST", "/admin/reload", ADMIN)
    assert reloaded.status_code == 200
    assert reloaded.json()["ready"] is False
    assert "no models:/sluice-default@champion" in reloaded.json()["models"]["default"]["error"]


def test_keys_never_reach_the_server_log(server):
    wrong = "wrong-key-that-must-not-be-logged"
    for headers in (READ, WRITE, ADMIN, {"X-Api-Key": wrong}, {"Authorization": f"Bearer {wrong}"}):
        call(server, "POST", "/v1/recommendations", headers, json={"user_id": "log"})
        call(server, "POST", "/v1/events", headers, json=interaction("log", "i"))
    text = server["log"].read_text()
    assert "auth is on" in text and "test-admin" in text  # logged by name ...
    secrets = [ADMIN_KEY, wrong] + [key_of(role, tenant) for tenant in TENANTS
                                    for role in ("read", "write")]
    assert not [s for s in secrets if s in text]  # ... never by key


# --- auth off, demo keys, binding ------------------------------------------------------------
def test_with_no_keys_only_loopback_clients_are_served(tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from serving.main import app

    env = environment(tmp_path, auth={"keys": [], "aws_access_keys": []})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with TestClient(app, client=("127.0.0.1", 5000)) as local:
        assert local.post("/v1/recommendations", json={"user_id": "u"}).status_code == 200
        assert local.post("/v1/events", json=interaction("u", "i")).status_code == 200
        remote = TestClient(app, client=("10.1.2.3", 5000))
        refused = remote.post("/v1/recommendations", json={"user_id": "u"})
        assert refused.status_code == 403
        assert "auth is off" in refused.json()["detail"][0]["reason"]
    assert "auth is off: no API keys configured" in capsys.readouterr().err  # and says so


def test_public_bindings_need_real_keys(tmp_path, monkeypatch):
    from serving.main import UnsafeBinding, check_binding

    off = SimpleNamespace(keys=KeyTable([], [], {}))
    with pytest.raises(UnsafeBinding, match="auth is off"):
        check_binding(off, "0.0.0.0")
    check_binding(off, "127.0.0.1")
    shipped = get_settings()  # config/sluice.yaml with its demo keys
    demo = SimpleNamespace(keys=KeyTable.from_settings(shipped, {}))
    with pytest.raises(UnsafeBinding, match="demo keys"):
        check_binding(demo, "0.0.0.0")
    real = SimpleNamespace(keys=KeyTable.from_settings(shipped, {"SLUICE_API_KEYS":
                                                                 "admin:*:" + "r" * 32}))
    check_binding(real, "0.0.0.0")
    from cli.main import main

    monkeypatch.setenv("SLUICE_HOST", "0.0.0.0")
    monkeypatch.setenv("SLUICE_API_KEYS", "")
    with pytest.raises(SystemExit, match="auth is off"):
        main(["serve"])


def test_the_shipped_config_carries_demo_keys_that_the_demo_sends(monkeypatch):
    from cli.demo import key_headers as demo_key_headers

    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    monkeypatch.delenv("SLUICE_API_KEYS", raising=False)
    shipped = get_settings().app.auth
    assert shipped.keys and all(k.demo and (k.name or "").startswith("demo") for k in shipped.keys)
    assert demo_key_headers("read") == {"X-Api-Key": "demo-read-key-not-secret"}
    assert demo_key_headers("write") == {"X-Api-Key": "demo-write-key-not-secret"}


def test_boto3_sends_an_api_key_where_no_access_keys_are_configured(tmp_path):
    env = environment(tmp_path, auth={"aws_access_keys": []})
    with running_server(env) as base:
        httpx.post(f"{base}/admin/trackers", headers=ADMIN, json={"tenant": "shop"})
        runtime = boto_client(base, "personalize-runtime", key_id="anything", secret="anything")
        with pytest.raises(ClientError) as err:
            runtime.get_recommendations(campaignArn=CAMPAIGN.format("shop"), userId="u")
        assert err.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
        runtime.meta.events.register(  # as the README shows
            "before-sign.*", lambda request, **_: request.headers.add_header(
                "X-Api-Key", key_of("read", "shop")))
        assert runtime.get_recommendations(campaignArn=CAMPAIGN.format("shop"),
                                           userId="u")["recommendationId"]
