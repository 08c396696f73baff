"""Who may do what: API keys bound to a role and a tenant, and AWS SigV4 for the Personalize API.

Keys come from config `auth:` (inline or `key_env`) or, replacing those, from SLUICE_API_KEYS
(JSON list of the same entries, or `role:tenant:key,...`). Only SHA-256 digests are kept; a
presented key is compared with every configured one by `hmac.compare_digest`, so neither the
answer nor its timing tells which key, if any, was close. Keys never reach a log line: a
principal is logged by its `name`.

Roles: `read` (recommendations, rank, history), `write` (events, items, users), `admin`
(trackers, reload, and everything `read` and `write` may). A tenant of `*` means every tenant.
With no keys configured at all, auth is off and serving keeps to loopback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sluice.settings import ApiKeyConfig, AwsKeyConfig, ConfigError, Settings, validation_message
from sluice.vocabulary import DEFAULT_TENANT

ANY_TENANT = "*"
GRANTS = {"read": frozenset({"read"}), "write": frozenset({"write"}),
          "admin": frozenset({"read", "write", "admin"})}
MIN_KEY_LENGTH = 16
ENV_KEYS = "SLUICE_API_KEYS"
SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_SERVICE = "personalize"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)  # what AWS itself allows


class AuthError(Exception):
    """A refused credential: `status` 401 (who are you?) or 403 (not allowed), naming the field.

    `code` is the AWS error type the Personalize API answers with.
    """

    def __init__(self, status: int, field: str, reason: str, code: str = "AccessDeniedException"):
        super().__init__(f"{field}: {reason}")
        self.status, self.field, self.reason, self.code = status, field, reason, code


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    tenant: str
    demo: bool = False

    def can(self, action: str) -> bool:
        return action in GRANTS[self.role]

    def covers(self, tenant: str) -> bool:
        return self.tenant in (ANY_TENANT, tenant)

    @property
    def default_tenant(self) -> str:
        """The tenant of a request that names none."""
        return DEFAULT_TENANT if self.tenant == ANY_TENANT else self.tenant

    def require(self, action: str, tenant: str | None = None) -> None:
        """Raise AuthError (403) unless this principal may do `action` in `tenant`."""
        if not self.can(action):
            raise AuthError(403, "authorization", f"a {self.role} key may not {action}")
        if tenant is not None and not self.covers(tenant):
            raise AuthError(403, "tenant", f"this key is not for tenant {tenant!r:.70}")


# Auth off: everything is allowed, to loopback clients only (checked by serving).
LOOPBACK_ONLY = Principal("anonymous (auth off)", "admin", ANY_TENANT)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _from_env(variable: str, where: str, environ: Mapping[str, str]) -> str:
    value = environ.get(variable)
    if not value:
        raise ConfigError(f"{where}: environment variable {variable} is not set")
    return value


def parse_env_keys(text: str) -> list[ApiKeyConfig]:
    """SLUICE_API_KEYS: a JSON list of `auth.keys` entries, or `role:tenant:key,...`."""
    text = text.strip()
    if text.startswith("["):
        try:
            return TypeAdapter(list[ApiKeyConfig]).validate_python(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV_KEYS}: not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            raise ConfigError(f"{ENV_KEYS}: {validation_message(exc)}") from None
    entries = []
    for index, entry in enumerate(filter(None, (e.strip() for e in text.split(",")))):
        role, sep, rest = entry.partition(":")
        tenant, sep2, key = rest.partition(":")
        if not (sep and sep2 and key):
            raise ConfigError(f"{ENV_KEYS}[{index}]: expected role:tenant:key")
        try:
            entries.append(ApiKeyConfig(role=role, tenant=tenant, key=key))
        except ValidationError as exc:
            raise ConfigError(f"{ENV_KEYS}[{index}]: {validation_message(exc)}") from None
    return entries


class KeyTable:
    """The configured credentials, as digests and principals; the only place keys are checked."""

    def __init__(self, keys: list[ApiKeyConfig], aws: list[AwsKeyConfig],
                 environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self._keys: list[tuple[bytes, Principal]] = []
        for index, entry in enumerate(keys):
            where = f"auth.keys[{index}]"
            key = (entry.key.get_secret_value() if entry.key is not None
                   else _from_env(entry.key_env or "", where, environ))
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(f"{where}: keys need at least {MIN_KEY_LENGTH} characters")
            digest = _digest(key)
            if any(hmac.compare_digest(digest, known) for known, _ in self._keys):
                raise ConfigError(f"{where}: the same key is configured twice")
            name = entry.name or f"{entry.role}:{entry.tenant}#{index}"
            self._keys.append((digest, Principal(name, entry.role, entry.tenant, entry.demo)))
        self._aws: dict[str, tuple[str, Principal]] = {}
        for index, pair in enumerate(aws):
            where = f"auth.aws_access_keys[{index}]"
            secret = (pair.secret_access_key.get_secret_value()
                      if pair.secret_access_key is not None
                      else _from_env(pair.secret_env or "", where, environ))
            if pair.access_key_id in self._aws:
                raise ConfigError(f"{where}: access key id configured twice")
            name = pair.name or f"aws:{pair.access_key_id}"
            self._aws[pair.access_key_id] = (secret, Principal(name, pair.role, pair.tenant,
                                                               pair.demo))

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None
                      ) -> KeyTable:
        environ = os.environ if environ is None else environ
        auth = settings.app.auth
        keys = parse_env_keys(environ[ENV_KEYS]) if ENV_KEYS in environ else auth.keys
        return cls(keys, auth.aws_access_keys, environ)

    @property
    def enabled(self) -> bool:
        return bool(self._keys or self._aws)

    @property
    def signatures(self) -> bool:
        """Whether AWS access keys are configured (then Personalize calls must be signed)."""
        return bool(self._aws)

    @property
    def demo(self) -> bool:
        return any(p.demo for _, p in self._keys) or any(p.demo for _, p in self._aws.values())

    def principals(self) -> list[Principal]:
        return [p for _, p in self._keys] + [p for _, p in self._aws.values()]

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of an API key; AuthError 401 when it is missing or unknown."""
        if not presented:
            raise AuthError(401, "authorization", "an API key is required: send "
                            "`X-Api-Key: KEY` or `Authorization: Bearer KEY`",
                            "MissingAuthenticationTokenException")
        digest = _digest(presented)
        found: Principal | None = None
        for known, principal in self._keys:  # every key, no early exit
            if hmac.compare_digest(digest, known) and found is None:
                found = principal
        if found is None:
            raise AuthError(401, "authorization", "the API key is not valid",
                            "UnrecognizedClientException")
        return found

    def verify_sigv4(self, method: str, path: str, query: str, headers: Mapping[str, str],
                     body: bytes, now: dt.datetime | None = None) -> Principal:
        """Sign the received request again with the configured secret (botocore's own signer)
        and compare; AuthError when the key is unknown, the signature differs or is stale."""
        parsed = _parse_authorization(headers.get("authorization", ""))
        access_key, date, region, service = parsed["scope"]
        entry = self._aws.get(access_key)
        secret, principal = entry if entry is not None else ("\0", None)
        expected = _sigv4_signature(method, path, query, headers, body, parsed, secret)
        matches = hmac.compare_digest(expected.encode(), parsed["signature"].encode())
        if principal is None:
            raise AuthError(403, "authorization", "the access key id is not known here",
                            "UnrecognizedClientException")
        if not matches:
            raise AuthError(403, "authorization", "the request signature does not match; "
                            "check the secret access key", "InvalidSignatureException")
        _check_fresh(headers.get("x-amz-date", ""), date, now or dt.datetime.now(dt.UTC))
        return principal


def _parse_authorization(value: str) -> dict[str, Any]:
    scheme, _, params = value.partition(" ")
    if scheme != SIGV4_ALGORITHM:
        raise AuthError(403, "authorization", f"expected {SIGV4_ALGORITHM}",
                        "IncompleteSignatureException")
    fields = {}
    for part in params.split(","):
        name, _, found = part.strip().partition("=")
        fields[name] = found
    scope = fields.get("Credential", "").split("/")
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    if (len(scope) != 5 or scope[4] != "aws4_request" or scope[3] != SIGV4_SERVICE
            or not fields.get("Signature") or "host" not in signed or "x-amz-date" not in signed):
        raise AuthError(403, "authorization", "Credential, SignedHeaders (with host and "
                        "x-amz-date) and Signature are required", "IncompleteSignatureException")
    return {"scope": scope[:4], "signed": signed, "signature": fields["Signature"]}


def _sigv4_signature(method: str, path: str, query: str, headers: Mapping[str, str],
                     body: bytes, parsed: dict[str, Any], secret: str) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    access_key, _, region, service = parsed["scope"]
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != hashlib.sha256(body).hexdigest():
        raise AuthError(403, "x-amz-content-sha256", "must be the SHA-256 of the body",
                        "InvalidSignatureException")
    signed_headers = {name: headers.get(name, "") for name in parsed["signed"]}
    host = signed_headers.get("host", "")
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=signed_headers)
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def _check_fresh(stamp: str, scope_date: str, now: dt.datetime) -> None:
    try:
        signed_at = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AuthError(403, "x-amz-date", "required: YYYYMMDDTHHMMSSZ",
                        "IncompleteSignatureException") from None
    if stamp[:8] != scope_date or abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise AuthError(403, "x-amz-date", "the signature is more than 15 minutes from now",
                        "InvalidSignatureException")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key of a request: `X-Api-Key`, else `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def client_key(settings: Settings, action: str, tenant: str = DEFAULT_TENANT,
               environ: Mapping[str, str] | None = None) -> str | None:
    """A configured key that may do `action` in `tenant`, for local tools (demo, benchmarks).

    Prefers the narrowest role; None when auth is off (or no key fits).
    """
    environ = os.environ if environ is None else environ
    auth = settings.app.auth
    keys = parse_env_keys(environ[ENV_KEYS]) if ENV_KEYS in environ else auth.keys
    fitting = [k for k in keys if action in GRANTS[k.role] and k.tenant in (ANY_TENANT, tenant)]
    fitting.sort(key=lambda k: (k.role == "admin", k.tenant == ANY_TENANT))
    for entry in fitting:
        if entry.key is not None:
            return entry.key.get_secret_value()
        if entry.key_env and environ.get(entry.key_env):
            return environ[entry.key_env]
    return None
