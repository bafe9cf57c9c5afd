"""What a DuckDB connection of the duckdb and ducklake tools gets before the step's SQL runs.

Extensions: playbooks say `INSTALL httpfs; LOAD httpfs;` (postgres, ducklake), which downloads
from DuckDB's extension site. The worker ships those extensions as PyPI wheels
(`duckdb-extension-<name>`, built for exactly the pinned duckdb version) and installs them from
the wheel's file once, so a playbook's own `INSTALL` finds them installed and never downloads.

Secrets: an `auth` map `{alias: {source: credential, tool|type: postgres|hmac|gcs|s3, key: <name>,
scope}}` becomes `CREATE OR REPLACE SECRET alias (...)` from the named credential's data, as
NoETL's duckdb tool does: postgres (db_host..db_name) for `ATTACH '' AS x (TYPE postgres, SECRET
alias)`; hmac/gcs (key_id, secret_key) for `gs://` paths; s3 (access_key_id, secret_access_key,
region). A credential's `endpoint` (a URL, `http://host:port/path` for a local stand-in) replaces
the provider's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .base import ToolContext, ToolError, credential_data

BUNDLED = ("httpfs", "postgres", "ducklake")  # pip packages duckdb-extension-<name>
SECRET_KINDS = {"postgres": "postgres", "postgresql": "postgres", "hmac": "gcs", "gcs": "gcs", "s3": "s3"}


def bundled_extensions() -> dict[str, Path]:
    """Extension name -> the `.duckdb_extension` file its installed wheel ships."""
    found: dict[str, Path] = {}
    for name in BUNDLED:
        spec = importlib.util.find_spec(f"duckdb_extension_{name}")
        if spec is None or not spec.submodule_search_locations:
            continue
        for path in Path(list(spec.submodule_search_locations)[0]).glob("extensions/v*/*.duckdb_extension"):
            found[path.name.split(".")[0]] = path
    return found


def install_bundled(con: Any) -> None:
    """INSTALL each shipped extension that DuckDB's extension directory does not have yet."""
    installed: set[str] = set()
    for name, aliases in con.execute("SELECT extension_name, aliases FROM duckdb_extensions() WHERE installed").fetchall():
        installed |= {name, *(aliases or [])}  # postgres is installed as postgres_scanner
    for name, path in bundled_extensions().items():
        if name not in installed:
            con.execute(f"INSTALL '{quote(str(path))}'")


def quote(value: Any) -> str:
    return str(value).replace("'", "''")


async def secret_statements(auth: Any, ctx: ToolContext) -> tuple[list[str], list[str]]:
    """(CREATE SECRET statements, the secret values in them, to keep out of error messages)."""
    if not auth:
        return [], []
    if not isinstance(auth, dict):
        raise ToolError("duckdb `auth` must be a map of {alias: {source: credential, tool: <kind>, key: <name>}}")
    statements: list[str] = []
    hidden: list[str] = []
    for alias, entry in auth.items():
        if not isinstance(entry, dict):
            raise ToolError(f"duckdb auth `{alias}` must be a map with `key` (a credential name) and `tool`")
        kind = str(entry.get("tool") or entry.get("type") or entry.get("kind") or "").lower()
        if kind not in SECRET_KINDS:
            raise ToolError(f"duckdb auth `{alias}`: tool {kind!r} is not one of {', '.join(sorted(SECRET_KINDS))}")
        name = str(entry.get("key") or entry.get("credential") or "").strip()
        if not name:
            raise ToolError(f"duckdb auth `{alias}` needs `key` naming a credential")
        data = await credential_data(name, ctx)
        statement, secret = _secret(str(alias), SECRET_KINDS[kind], data, entry.get("scope"))
        statements.append(statement)
        hidden += [s for s in secret if s]
    return statements, hidden


def _ident(alias: str) -> str:
    if not alias.replace("_", "").isalnum():
        raise ToolError(f"duckdb auth alias {alias!r} must be letters, digits and '_'")
    return alias


def _secret(alias: str, kind: str, data: dict[str, Any], scope: Any) -> tuple[str, list[str]]:
    parts = [f"TYPE {kind}"]
    if kind == "postgres":
        password = data.get("db_password") or data.get("password")
        fields = {"HOST": data.get("db_host") or data.get("host"), "PORT": data.get("db_port") or data.get("port"),
                  "DATABASE": data.get("db_name") or data.get("database") or data.get("dbname"),
                  "USER": data.get("db_user") or data.get("user"), "PASSWORD": password}
        parts += [f"{k} '{quote(v)}'" for k, v in fields.items() if v not in (None, "")]
        hidden = [str(password)] if password else []
    else:
        key_id = data.get("key_id") or data.get("access_key_id")
        secret = data.get("secret_key") or data.get("secret") or data.get("secret_access_key")
        if not (key_id and secret):
            raise ToolError(f"duckdb auth `{alias}`: the credential needs key_id and secret_key")
        parts += [f"KEY_ID '{quote(key_id)}'", f"SECRET '{quote(secret)}'"]
        if kind == "s3" and data.get("region"):
            parts.append(f"REGION '{quote(data['region'])}'")
        parts += _endpoint(data.get("endpoint"))
        hidden = [str(secret)]
    if scope:
        parts.append(f"SCOPE '{quote(scope)}'")
    return f"CREATE OR REPLACE SECRET {_ident(alias)} ({', '.join(parts)})", hidden


def _endpoint(endpoint: Any) -> list[str]:
    """`http(s)://host:port/path` -> DuckDB's ENDPOINT (host:port/path), USE_SSL and path-style URLs."""
    if not endpoint:
        return []
    text = str(endpoint)
    parts = urlsplit(text if "://" in text else f"https://{text}")
    target = f"{parts.netloc}{parts.path.rstrip('/')}"
    return [f"ENDPOINT '{quote(target)}'", "URL_STYLE 'path'", f"USE_SSL {'false' if parts.scheme == 'http' else 'true'}"]
