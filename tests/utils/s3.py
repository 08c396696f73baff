"""A real S3 API on loopback (moto's server mode), and the environment that points at it.

The variables are the ones users set for AWS S3 or MinIO: boto3's own credentials and
`AWS_ENDPOINT_URL`, which s3fs (the raw log, the landing folder) and MLflow's S3 artifact store
both read through botocore. The profile files are pointed away so that a developer's ~/.aws
never takes part.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cli.processes import free_port


@dataclass(frozen=True)
class S3:
    endpoint: str

    def env(self, endpoint_variable: str = "AWS_ENDPOINT_URL") -> dict[str, str]:
        return {endpoint_variable: self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
                "AWS_CONFIG_FILE": "/nonexistent/config"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"sluice-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def forget_s3fs_clients() -> None:
    """fsspec caches one S3FileSystem per set of arguments: an endpoint read from the
    environment earlier must not outlive the server it pointed at."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def running_s3() -> Iterator[S3]:
    """moto's S3 server in a thread of this process, on a free loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    forget_s3fs_clients()
    try:
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        forget_s3fs_clients()
        server.stop()
