"""`script: {source: {type: s3}}` read through boto3 (s3_objects.py) against moto's S3 served for
real (tests/support/s3_standin.py), the worker pointed at it by AWS_ENDPOINT_URL as in the
conformance runs. With moto's IAM checks on, a read succeeds only when the credential's key id,
secret and session token are the ones moto issued, so the credential's fields are seen to be used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from noetl_worker import s3_objects
from noetl_worker.executor import default_runners, execute
from noetl_worker.tools import scripts
from noetl_worker.tools.base import ToolContext, ToolError

from tests.support.s3_standin import S3StandIn

SQL = b"SELECT 41 + 1 AS answer"
ALLOW_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


class Credentials:
    """The control plane's credential answers (name -> data), as the worker's client returns them."""

    def __init__(self, **named: dict[str, Any]) -> None:
        self.named = named

    async def get_credential(self, name: str) -> dict[str, Any]:
        if name not in self.named:
            raise LookupError(f"credential {name} not found (404)")
        return {"name": name, "data": self.named[name]}


def ctx(**named: dict[str, Any]) -> ToolContext:
    return ToolContext(credentials=Credentials(**named), execution_id=1, step="s",  # type: ignore[arg-type]
                       timeout_seconds=10, script_root=Path("."))


def s3_script(uri: str, auth: str | None = "aws", **source: Any) -> dict[str, Any]:
    return {"uri": uri, "source": {"type": "s3", "region": "us-east-1", **({"auth": auth} if auth else {}), **source}}


@pytest.fixture(scope="module")
def standin() -> Iterator[S3StandIn]:
    server = S3StandIn()
    server.put_objects({"s3://noetl-sql-scripts/migrations/answer.sql": SQL,
                        "s3://noetl-sql-scripts/big.sql": b"-- " + b"x" * 64})
    yield server
    server.stop()


@pytest.fixture
def s3(standin, monkeypatch) -> S3StandIn:
    monkeypatch.setenv("AWS_ENDPOINT_URL", standin.url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # only the credential's keys may sign
    return standin


@pytest.fixture
async def issued(s3) -> dict[str, dict[str, str]]:
    """Keys moto issued (an IAM user's, and a role session's with its token), then its IAM checks on."""
    iam = s3.client("iam")
    iam.create_user(UserName="script-reader")
    iam.put_user_policy(UserName="script-reader", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="script-reader")["AccessKey"]
    user = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName="script-role", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName="script-role", PolicyName="all", PolicyDocument=ALLOW_ALL)
    temp = s3.client("sts", **user).assume_role(RoleArn=role["Arn"], RoleSessionName="step")["Credentials"]
    session = {"aws_access_key_id": temp["AccessKeyId"], "aws_secret_access_key": temp["SecretAccessKey"],
               "aws_session_token": temp["SessionToken"]}
    await s3.enforce_auth(True)
    try:
        yield {"user": user, "session": session}
    finally:
        await s3.enforce_auth(False)
        iam.delete_role_policy(RoleName="script-role", PolicyName="all")
        iam.delete_role(RoleName="script-role")
        iam.delete_user_policy(UserName="script-reader", PolicyName="all")
        iam.delete_access_key(UserName="script-reader", AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName="script-reader")


async def test_an_s3_script_is_read_with_the_credential_the_source_names(s3):
    text = await scripts.script_text("postgres", s3_script("s3://noetl-sql-scripts/migrations/answer.sql"),
                                     ctx(aws={"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "x"}))
    assert text == SQL.decode()


async def test_a_duckdb_step_runs_sql_read_from_s3(s3):
    step = {"tool": {"kind": "duckdb", "script": s3_script("s3://noetl-sql-scripts/migrations/answer.sql")}}
    out = await execute(step, None, default_runners(),
                        ctx(aws={"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "x"}))
    assert out.ok, out.error
    assert out.result["rows"] == [{"answer": 42}]


@pytest.mark.parametrize(("uri", "code"), [("s3://noetl-sql-scripts/migrations/absent.sql", "NoSuchKey"),
                                           ("s3://no-such-bucket/migrations/answer.sql", "NoSuchBucket")])
async def test_a_missing_object_or_bucket_fails_the_step_naming_it_and_the_s3_code(s3, uri, code):
    step = {"tool": {"kind": "postgres", "auth": "pg", "script": s3_script(uri)}}
    out = await execute(step, None, default_runners(),
                        ctx(aws={"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "x"}))
    assert not out.ok
    assert f"postgres script: reading {uri}: S3 error {code} (HTTP 404)" in out.error


async def test_the_credentials_key_id_secret_and_session_token_sign_the_read(issued):
    uri = "s3://noetl-sql-scripts/migrations/answer.sql"
    user, session = issued["user"], issued["session"]
    assert await scripts.script_text("python", s3_script(uri), ctx(aws=user)) == SQL.decode()
    assert await scripts.script_text("python", s3_script(uri), ctx(aws=session)) == SQL.decode()
    refused = {
        "SignatureDoesNotMatch": {**user, "aws_secret_access_key": "not-the-secret-" + "k" * 20},
        "InvalidAccessKeyId": {k: v for k, v in session.items() if k != "aws_session_token"},
        "InvalidToken": {**session, "aws_session_token": "forged-token-" + "t" * 40},
    }
    for code, keys in refused.items():
        with pytest.raises(ToolError) as err:
            await scripts.script_text("python", s3_script(uri), ctx(aws=keys))
        message = str(err.value)
        assert f"S3 error {code}" in message and uri in message
        assert err.value.details["code"] == code
        for secret in (keys["aws_secret_access_key"], keys.get("aws_session_token"),
                       user["aws_secret_access_key"], session["aws_secret_access_key"], session["aws_session_token"]):
            assert not secret or secret not in message


async def test_a_credential_endpoint_url_wins_over_the_environment(s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    keys = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "x"}
    minio = {"uri": "s3://noetl-sql-scripts/migrations/answer.sql",
             "source": {"type": "minio", "auth": "store"}}
    assert await scripts.script_text("duckdb", minio, ctx(store={**keys, "endpoint_url": s3.url})) == SQL.decode()
    with pytest.raises(ToolError, match="reading s3://noetl-sql-scripts/migrations/answer.sql: "
                                        "EndpointConnectionError") as err:
        await scripts.script_text("duckdb", minio, ctx(store=keys))
    assert err.value.details == {"kind": "connection", "retryable": True}


async def test_an_object_larger_than_the_bound_is_refused_before_its_body_is_read(s3):
    access = s3_objects.S3Access.of({"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "x"})
    assert await s3_objects.download("s3://noetl-sql-scripts/big.sql", access, max_bytes=67) == b"-- " + b"x" * 64
    with pytest.raises(ToolError, match=r"s3://noetl-sql-scripts/big.sql: larger than 66 bytes"):
        await s3_objects.download("s3://noetl-sql-scripts/big.sql", access, max_bytes=66)


async def test_an_unknown_credential_fails_naming_it(s3):
    with pytest.raises(ToolError, match="credential 'aws' could not be resolved"):
        await scripts.script_text("postgres", s3_script("s3://noetl-sql-scripts/migrations/answer.sql"), ctx())


@pytest.mark.parametrize("bad", ["s3://only-bucket", "gs://b/x.sql", "s3:///x.sql"])
def test_an_s3_uri_needs_a_bucket_and_a_key(bad):
    with pytest.raises(ToolError, match="s3://<bucket>/<key>"):
        s3_objects.split_uri(bad)


async def test_an_error_text_that_carries_a_key_has_it_masked(s3):
    # botocore's connection errors quote the endpoint URL; one with a key pasted into it stays masked
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    access = s3_objects.S3Access.of({"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": secret,
                                     "endpoint_url": f"http://127.0.0.1:9/{secret}"})
    with pytest.raises(ToolError) as err:
        await s3_objects.download("s3://noetl-sql-scripts/big.sql", access, max_bytes=100, timeout=2)
    assert "EndpointConnectionError" in str(err.value) and "http://127.0.0.1:9/***" in str(err.value)
    assert secret not in str(err.value)
