"""The S3 stand-in: moto's S3 in server mode (ThreadedMotoServer, a thread of this process on a free
loopback port). boto3 reaches it through its endpoint URL (AWS_ENDPOINT_URL for a worker), as it
would reach AWS; moto accepts any keys unless `enforce_auth` turns its IAM checks on."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

# moto's documented test keys: any keys sign in while its IAM checks are off (the default)
TEST_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


class S3StandIn:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # imported here: only runs that need S3 pay for it

        # werkzeug logs every request at INFO on stderr, which would bury the runner's own lines
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def client(self, service: str = "s3", **keys: str) -> Any:
        import boto3

        session = boto3.session.Session()  # its own: boto3's default session is not thread-safe
        return session.client(service, endpoint_url=self.url, region_name=REGION, **(keys or TEST_KEYS))

    def put_objects(self, objects: dict[str, bytes]) -> None:
        """`s3://bucket/key` -> content; each bucket is created first if it is not there yet."""
        s3 = self.client()
        have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for uri, body in objects.items():
            if not uri.startswith("s3://") or "/" not in uri[len("s3://"):]:
                raise ValueError(f"an S3 object must be named s3://<bucket>/<key>, got {uri!r}")
            bucket, _, key = uri[len("s3://"):].partition("/")
            if bucket not in have:
                s3.create_bucket(Bucket=bucket)
                have.add(bucket)
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    async def enforce_auth(self, on: bool) -> None:
        """moto's IAM checks on (every request must be signed by a key moto issued, with its session
        token for role credentials) or off again. The switch is process-wide in moto."""
        async with aiohttp.ClientSession() as session, \
                session.post(f"{self.url}/moto-api/reset-auth", data=b"0" if on else b"inf") as r:
            r.raise_for_status()
