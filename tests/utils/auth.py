"""The API keys of the test config (see factories.environment) and headers carrying them.

Every test server runs with auth on: read and write keys for a few tenants, an admin key for
all of them, and the AWS key pair the boto3 tests sign with (so SigV4 is verified for real).
"""

from __future__ import annotations

from typing import Any

TENANTS = ("default", "shop", "other")
ADMIN_KEY = "test-admin-every-tenant-0123456789"
AWS_ACCESS_KEY_ID, AWS_SECRET = "test", "test"


def key(role: str, tenant: str = "default") -> str:
    return f"test-{role}-{tenant}-0123456789"


def headers(role: str, tenant: str = "default") -> dict[str, str]:
    return {"X-Api-Key": key(role, tenant)}


READ = headers("read")
WRITE = headers("write")
ADMIN = {"X-Api-Key": ADMIN_KEY}


def auth_config() -> dict[str, Any]:
    keys = [{"name": f"test-{role}-{tenant}", "role": role, "tenant": tenant,
             "key": key(role, tenant)} for tenant in TENANTS for role in ("read", "write")]
    keys.append({"name": "test-admin", "role": "admin", "tenant": "*", "key": ADMIN_KEY})
    return {"keys": keys, "aws_access_keys": [
        {"name": "aws-test", "access_key_id": AWS_ACCESS_KEY_ID,
         "secret_access_key": AWS_SECRET, "role": "admin", "tenant": "*"}]}


def boto_client(base: str, service: str, key_id: str = AWS_ACCESS_KEY_ID,
                secret: str = AWS_SECRET) -> Any:
    """A real boto3 client (`personalize-events` or `personalize-runtime`) for a test server,
    signing with the test key pair (or the one given), without retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, endpoint_url=f"{base}/personalize", region_name="us-east-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}))


def runtime_with_catalog(base: str, dataset: str, campaign: str,
                         catalog: dict[str, dict[str, Any]]) -> Any:
    """The personalize-runtime client, once the server has folded in `catalog` (item id ->
    fields) sent by PutItems to `dataset` and answers `campaign` with all of it."""
    import json

    from tests.utils.waits import wait_until

    boto_client(base, "personalize-events").put_items(datasetArn=dataset, items=[
        {"itemId": item, "properties": json.dumps(fields)} for item, fields in catalog.items()])
    client = boto_client(base, "personalize-runtime")
    wait_until(lambda: {item["itemId"] for item in client.get_recommendations(
        campaignArn=campaign, userId="u1", numResults=10)["itemList"]},
        "the catalog in serving", until=lambda served: served >= set(catalog))
    return client


def logged_context(home: Any, answer: dict[str, Any]) -> dict[str, str]:
    """The `context` a GetRecommendations answer was logged with, waited for in the raw log."""
    import json

    from tests.utils.waits import log_lines, wait_until

    marker = b'"id":' + json.dumps(answer["recommendationId"]).encode()
    line = wait_until(lambda: next((line for line in log_lines(home) if marker in line), None),
                      "the answer in the raw log")
    return {k[len("context."):]: v for k, v in json.loads(line)["fields"].items()
            if k.startswith("context.")}


def aws_refusal(call: Any) -> tuple[int, str, str]:
    """(HTTP status, AWS error code, message) of a boto3 call that must be refused."""
    import pytest
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"],
            response["Error"]["Message"])
