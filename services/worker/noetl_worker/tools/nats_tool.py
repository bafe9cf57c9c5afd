"""`kind: nats`: JetStream key-value, object store and publish, with NoETL's operation names and
result shapes (`kv_get` answers `{status, bucket, key, value, revision, created}`, a missing key
`{status: not_found, value: null}`). The server comes from the `auth` credential (`nats_url`,
`url` or `server`; `user`/`password` or `token`), or from `nats_url` on the tool itself, so a
playbook's `nats_credential` names whichever NATS the deployment runs. Buckets are not created
here, as in NoETL: a missing bucket is the step's error, naming it. One connection per call."""

from __future__ import annotations

import base64
import fnmatch
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError, ObjectNotFoundError

from .base import ToolContext, ToolError, json_or_text

CONNECT_TIMEOUT = 5.0

# credential field -> connection parameter (NoETL accepts each of these spellings)
FIELDS = {"nats_url": "url", "url": "url", "server": "url", "servers": "url",
          "user": "user", "username": "user", "nats_user": "user",
          "password": "password", "nats_password": "password",
          "token": "token", "nats_token": "token"}


def redacted(url: str) -> str:
    """The URL without a password in it, for error messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


async def connection(merged: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Connection parameters: the tool's own `nats_url`/`nats_user`/... over the `auth` credential's."""
    auth = merged.get("auth") or merged.get("credential")
    data: dict[str, Any] = {}
    if isinstance(auth, dict):
        data = auth
    elif isinstance(auth, str) and auth.strip():
        try:
            credential = await ctx.credentials.get_credential(auth.strip())
        except Exception as exc:
            raise ToolError(f"nats credential {auth.strip()!r} could not be resolved: {exc}") from None
        found = credential.get("data") if isinstance(credential, dict) else None
        if not isinstance(found, dict):
            raise ToolError(f"nats credential {auth.strip()!r} has no data")
        data = found
    params: dict[str, Any] = {}
    for source in (data, {k: v for k, v in merged.items() if k.startswith("nats_")}):
        for field, param in FIELDS.items():
            if source.get(field) not in (None, ""):
                params[param] = source[field]
    if isinstance(params.get("url"), list):
        params["url"] = ",".join(str(u) for u in params["url"])
    if not params.get("url"):
        raise ToolError("nats tool needs a server: `auth` naming a credential with `nats_url` (or `url`), "
                        "or `nats_url` on the tool")
    return params


def encoded(value: Any) -> bytes:
    """What NoETL writes: JSON for maps and lists, text as is, anything else as its string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()




def need(args: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if args.get(n) in (None, "")]
    if missing:
        raise ToolError(f"nats {args['operation']} needs {', '.join(f'`{m}`' for m in missing)}")
    return [args[n] for n in names]


async def kv_get(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, key = need(a, "bucket", "key")
    kv = await js.key_value(bucket)
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return {"status": "not_found", "bucket": bucket, "key": key, "value": None}
    created: Any = getattr(entry, "created", None)  # nats-py leaves it empty on a get, as NoETL shows
    return {"status": "success", "bucket": bucket, "key": key, "value": json_or_text(entry.value),
            "revision": entry.revision, "created": created.isoformat() if hasattr(created, "isoformat") else None}


async def kv_put(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, key = need(a, "bucket", "key")
    if "value" not in a:
        raise ToolError("nats kv_put needs `value`")
    revision = await (await js.key_value(bucket)).put(key, encoded(a["value"]))
    return {"status": "success", "bucket": bucket, "key": key, "revision": revision}


async def kv_delete(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, key = need(a, "bucket", "key")
    await (await js.key_value(bucket)).delete(key)
    return {"status": "success", "bucket": bucket, "key": key}


async def kv_purge(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, key = need(a, "bucket", "key")
    await (await js.key_value(bucket)).purge(key)
    return {"status": "success", "bucket": bucket, "key": key}


async def kv_keys(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = need(a, "bucket")
    kv = await js.key_value(bucket)
    try:
        keys = list(await kv.keys())
    except NotFoundError:  # nats-py's answer for a bucket with no keys
        keys = []
    if a.get("pattern"):
        keys = [k for k in keys if fnmatch.fnmatch(k, str(a["pattern"]))]
    return {"status": "success", "bucket": bucket, "keys": keys, "count": len(keys)}


async def object_put(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, name = need(a, "bucket", "name")
    if "data" not in a:
        raise ToolError("nats object_put needs `data`")
    data, encoding = a["data"], str(a.get("encoding") or "utf-8")
    if isinstance(data, bytes):
        raw = data
    elif encoding == "base64":
        raw = base64.b64decode(str(data))
    else:
        raw = (data if isinstance(data, str) else str(data)).encode(encoding)
    info = await (await js.object_store(bucket)).put(name, raw)
    return {"status": "success", "bucket": bucket, "name": name, "size": info.size, "digest": info.digest}


async def object_get(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, name = need(a, "bucket", "name")
    encoding = str(a.get("encoding") or "utf-8")
    raw = (await (await js.object_store(bucket)).get(name)).data or b""
    value = base64.b64encode(raw).decode("ascii") if encoding == "base64" else raw.decode(encoding)
    return {"status": "success", "bucket": bucket, "name": name, "data": value, "size": len(raw)}


async def object_delete(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, name = need(a, "bucket", "name")
    await (await js.object_store(bucket)).delete(name)
    return {"status": "success", "bucket": bucket, "name": name}


def _mtime(info: Any) -> str | None:
    return str(info.mtime) if getattr(info, "mtime", None) else None


async def object_info(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    bucket, name = need(a, "bucket", "name")
    info = await (await js.object_store(bucket)).get_info(name)
    return {"status": "success", "bucket": bucket, "name": name, "size": info.size, "mtime": _mtime(info),
            "digest": info.digest, "chunks": info.chunks}


async def object_list(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = need(a, "bucket")
    try:
        infos = await (await js.object_store(bucket)).list()
    except NotFoundError:  # an empty store
        infos = []
    objects = [{"name": i.name, "size": i.size, "mtime": _mtime(i), "digest": i.digest} for i in infos]
    return {"status": "success", "bucket": bucket, "objects": objects, "count": len(objects)}


async def js_publish(js: JetStreamContext, a: dict[str, Any]) -> dict[str, Any]:
    (subject,) = need(a, "subject")
    headers = a.get("headers") if isinstance(a.get("headers"), dict) else None
    ack = await js.publish(subject, encoded(a.get("data", "")), headers=headers)
    return {"status": "success", "stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}


Operation = Callable[[JetStreamContext, dict[str, Any]], Awaitable[dict[str, Any]]]
OPERATIONS: dict[str, Operation] = {
    "kv_get": kv_get, "kv_put": kv_put, "kv_delete": kv_delete, "kv_keys": kv_keys, "kv_purge": kv_purge,
    "object_get": object_get, "object_put": object_put, "object_delete": object_delete,
    "object_list": object_list, "object_info": object_info, "js_publish": js_publish}


async def _quiet(exc: Exception) -> None:
    """nats-py logs each failed attempt with a traceback; the step's error says it once."""


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    merged = {**config, **inputs}
    operation = str(merged.get("operation") or "")
    if operation not in OPERATIONS:
        raise ToolError(f"nats `operation` must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    params = await connection(merged, ctx)
    try:
        # nats-py reads max_reconnect_attempts=0 as "no limit" even for the first connect: 1
        # means each server is tried twice, then the call fails instead of retrying forever.
        nc = await nats.connect(params["url"], user=params.get("user"), password=params.get("password"),
                                token=params.get("token"), connect_timeout=CONNECT_TIMEOUT, allow_reconnect=False,
                                max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=_quiet)
    except Exception as exc:
        raise ToolError(f"nats: cannot connect to {redacted(str(params['url']))}: {type(exc).__name__}: {exc}",
                        details={"kind": "connection", "retryable": True}) from None
    try:
        return await OPERATIONS[operation](nc.jetstream(), {**merged, "operation": operation})
    except BucketNotFoundError:
        raise ToolError(f"nats {operation}: bucket {merged.get('bucket')!r} does not exist") from None
    except ObjectNotFoundError:
        raise ToolError(f"nats {operation}: no object {merged.get('name')!r} in {merged.get('bucket')!r}") from None
    finally:
        await nc.close()
