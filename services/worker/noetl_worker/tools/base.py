"""What every tool runner gets and raises."""

from __future__ import annotations

import datetime
import json
import decimal
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from .google_adc import GoogleTokens
from .step_threads import StepThreads


class ToolError(Exception):
    """The tool ran and failed (bad SQL, HTTP 500, exception in code): the step fails with this.
    `details` classify the failure for policy rules (`output.error.kind`, `.retryable`, ...)."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class CredentialSource(Protocol):
    """What tools may ask the control plane (the worker passes its ControlPlane client)."""

    async def get_credential(self, name: str) -> dict[str, Any]: ...

    async def get_keychain(self, catalog_id: int, name: str, execution_id: int) -> dict[str, Any] | None: ...

    async def mint_token(self, credential: str, audience: str | None = None) -> str: ...

    async def run_child(self, path: str, workload: dict[str, Any], parent_execution_id: int,
                        timeout: float) -> dict[str, Any]: ...

    async def get_result(self, ref: str) -> Any: ...

    async def put_result(self, execution_id: int, name: str, data: Any, step: str) -> dict[str, Any]: ...


class ToolContext:
    def __init__(self, *, credentials: CredentialSource, execution_id: int, step: str,
                 timeout_seconds: float = 300.0, script_root: Path = Path("."),
                 step_threads: StepThreads | None = None, google_tokens: GoogleTokens | None = None) -> None:
        self.script_root = script_root
        # The worker's shared pool and ADC tokens; a context made alone (tests, one-off runs) gets its own.
        self.step_threads = step_threads or StepThreads()
        self.google_tokens = google_tokens or GoogleTokens()
        self.stdout: list[str] = []  # what tools printed; reported with the outcome event
        self.credentials = credentials
        self.execution_id = execution_id
        self.step = step
        self.timeout_seconds = timeout_seconds
        # The command's render context when the shard sent one (pipelines; python code that reads
        # `context`): what a python tool sees as `context`.
        self.scope: dict[str, Any] | None = None


async def credential_data(name: str, ctx: ToolContext) -> dict[str, Any]:
    """The data of the credential `name` (fetched with its secrets from the control plane)."""
    try:
        credential = await ctx.credentials.get_credential(name)
    except Exception as exc:
        raise ToolError(f"credential {name!r} could not be resolved: {exc}") from None
    data = credential.get("data") if isinstance(credential, dict) else None
    if not isinstance(data, dict):
        raise ToolError(f"credential {name!r} has no data")
    return data


Runner = Callable[[dict[str, Any], dict[str, Any], ToolContext], Awaitable[Any]]


def split_object_uri(uri: Any, scheme: str, what: str, part: str) -> tuple[str, str]:
    """`<scheme>://bucket/<part>` as (bucket, part), or a ToolError naming what was given."""
    form = f"{what} must be named {scheme}://<bucket>/<{part}>, got {uri!r}"
    if not isinstance(uri, str) or not uri.startswith(f"{scheme}://"):
        raise ToolError(form)
    bucket, _, rest = uri[len(scheme) + 3:].partition("/")
    if not bucket or not rest:
        raise ToolError(form)
    return bucket, rest


def jsonable(value: Any) -> Any:
    """Database values as JSON: decimals, dates, UUIDs and bytes become plain types."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def split_statements(sql: str) -> list[str]:
    """Split on semicolons outside quotes, dollar-quoted bodies and comments."""
    out, buf, i, n = [], [], 0, len(sql)
    quote: str | None = None
    while i < n:
        ch = sql[i]
        if quote:
            if sql.startswith(quote, i):
                buf.append(quote)
                i += len(quote)
                quote = None
                continue
            buf.append(ch)
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
        elif ch == "$":
            end = sql.find("$", i + 1)
            tag = sql[i:end + 1] if end != -1 else ""
            if tag and all(c.isalnum() or c == "_" for c in tag[1:-1]):
                quote = tag
                buf.append(tag)
                i += len(tag)
                continue
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end
            continue
        elif ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        out.append(stmt)
    return out


def sql_text(config: dict[str, Any]) -> str:
    """The SQL of a postgres/duckdb config: `command` (or `commands`, `query`, `sql`) text or a
    list of statements. A `script:` source is read by the runner first (scripts.script_text)."""
    text = config.get("command") or config.get("commands") or config.get("query") or config.get("sql")
    if isinstance(text, list):
        text = ";\n".join(str(t) for t in text)
    if not isinstance(text, str) or not text.strip():
        raise ToolError("tool config needs `command` (or `query`) with SQL text, or a `script`")
    return text


def json_or_text(raw: bytes | None) -> Any:
    """A message or value as NoETL's tools hand it on: JSON when it parses, else the text; None when
    there is nothing (the nats tool's kv_get, the subscription tool's messages)."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
