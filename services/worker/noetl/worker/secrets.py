"""`fetch_credential_by_key(key)` as NoETL's worker offers it to a python step's code: the
credential's record from the control plane this worker runs against (NOETL_SERVER_URL, with the
worker's NOETL_INTERNAL_API_TOKEN, which opens decrypted credentials), shaped as NoETL's is:
`{key, type, service, secret_name, scope, data}` with the data's fields also at the top level.
A credential that is missing or cannot be read gives `{}`, as NoETL's does (the playbook decides).

The call blocks: a python step runs on a thread of its own, never on the worker's event loop."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

TIMEOUT_SECONDS = 5.0
# The control plane is reached directly, as the worker's own client reaches it: HTTPS_PROXY set
# for a step's outbound calls must not carry the credential request.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def record(key: str, body: dict[str, Any]) -> dict[str, Any]:
    """The control plane's credential answer -> NoETL's record (its payload may be nested once more
    under `data`, as credentials written by NoETL's CLI are)."""
    data = body.get("data")
    payload = data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), dict) else data
    payload = payload if isinstance(payload, dict) else {}
    kind = str(body.get("type") or body.get("credential_type") or "").lower()
    service = str(body.get("service") or body.get("provider") or "").lower()
    if not service:
        service = next((s for s in ("postgres", "gcs", "s3", "azure") if s in kind), "")
    out: dict[str, Any] = {"key": key, "type": kind, "service": service,
                           "secret_name": body.get("secret_name") or body.get("name") or key,
                           "scope": body.get("scope") or None, "data": payload}
    for field, value in payload.items():
        out.setdefault(field, value)
    return out


def fetch_credential_by_key(key: str) -> dict[str, Any]:
    server = os.environ.get("NOETL_SERVER_URL", "").rstrip("/")
    if not key or not server:
        return {}
    token = os.environ.get("NOETL_INTERNAL_API_TOKEN")
    request = urllib.request.Request(f"{server}/api/credentials/{quote(key, safe='')}?include_data=true",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as answer:
            body = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return record(key, body) if isinstance(body, dict) else {}
