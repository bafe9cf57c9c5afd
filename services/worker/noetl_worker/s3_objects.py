"""Objects in S3 (or an S3-compatible store), read through boto3 as NoETL's worker reads them.

Keys come from the credential a step names (`aws_access_key_id`, `aws_secret_access_key`, optional
`aws_session_token`); without them boto3's own chain applies (AWS_ACCESS_KEY_ID, a profile, an
instance role). The endpoint is the credential's `endpoint_url` (or `endpoint`, the duckdb tool's
name for it) when given; otherwise boto3 reads AWS_ENDPOINT_URL from the environment itself (how a
worker is pointed at a stand-in), else AWS. The client blocks, so a read runs in a thread; its
connect/read timeouts bound the thread, which cannot be cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from .tools.base import ToolError, split_object_uri


class S3Access(msgspec.Struct, frozen=True):
    """What a client is made from: the credential's fields and the step's region."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any] | None, region: Any = None) -> S3Access:
        data = data or {}

        def text(*names: str) -> str | None:
            return next((str(data[n]) for n in names if data.get(n) not in (None, "")), None)

        return cls(access_key_id=text("aws_access_key_id"), secret_access_key=text("aws_secret_access_key"),
                   session_token=text("aws_session_token"), endpoint_url=text("endpoint_url", "endpoint"),
                   region=str(region) if region else text("region", "aws_region", "region_name"))

    def secrets(self) -> list[str]:
        return [s for s in (self.secret_access_key, self.session_token, self.access_key_id) if s]


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key), or a ToolError naming what was given."""
    return split_object_uri(uri, "s3", "an S3 object", "key")


def _client(access: S3Access, timeout: float) -> Any:
    import boto3  # imported here: only steps that touch S3 pay for it
    from botocore.config import Config

    config = Config(connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                    retries={"max_attempts": 3, "mode": "standard"})
    # a session of its own: boto3's default session is shared and not safe across threads
    session = boto3.session.Session()
    return session.client("s3", region_name=access.region, endpoint_url=access.endpoint_url,
                          aws_access_key_id=access.access_key_id,
                          aws_secret_access_key=access.secret_access_key,
                          aws_session_token=access.session_token, config=config)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:300]


async def download(uri: str, access: S3Access, *, max_bytes: int, timeout: float = 60.0) -> bytes:
    """The object's bytes; a ToolError naming the object and S3's error code when it cannot be
    read, or when it is larger than `max_bytes` (checked before its body is read)."""
    bucket, key = split_uri(uri)

    def _get() -> bytes:
        response = _client(access, timeout).get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            if int(response.get("ContentLength") or 0) > max_bytes:
                raise ToolError(f"s3://{bucket}/{key}: larger than {max_bytes} bytes")
            data = bytes(body.read(max_bytes + 1))
        finally:
            body.close()
        if len(data) > max_bytes:
            raise ToolError(f"s3://{bucket}/{key}: larger than {max_bytes} bytes")
        return data

    from botocore.exceptions import ClientError, ConnectionError, NoCredentialsError, ReadTimeoutError

    try:
        return await asyncio.to_thread(_get)
    except ToolError:
        raise
    except ClientError as exc:
        error = exc.response.get("Error") or {}
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = error.get("Code") or "unknown"
        message = _scrub(str(error.get("Message") or ""), access.secrets())
        raise ToolError(f"reading s3://{bucket}/{key}: S3 error {code} (HTTP {status})"
                        + (f": {message}" if message else ""),
                        details={"kind": "s3", "code": code, "status": status}) from None
    except NoCredentialsError:
        raise ToolError(f"reading s3://{bucket}/{key}: no AWS credentials (the source's `auth` credential "
                        "needs aws_access_key_id and aws_secret_access_key, or the worker's environment)",
                        details={"kind": "auth"}) from None
    except (ConnectionError, ReadTimeoutError) as exc:  # endpoint unreachable, connect/read timeouts
        raise ToolError(f"reading s3://{bucket}/{key}: {type(exc).__name__}: {_scrub(str(exc), access.secrets())}",
                        details={"kind": "connection", "retryable": True}) from None
    except Exception as exc:  # botocore's parameter and configuration errors
        raise ToolError(f"reading s3://{bucket}/{key}: {type(exc).__name__}: "
                        f"{_scrub(str(exc), access.secrets())}") from None
