"""Where the CLI finds the fleet and its token: flags, then the environment, then (locally) what
`make run` recorded under the data directory (`run.json`, `secrets.json`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import msgspec

from noetl_common.wire.localrun import RunInfo

from .errors import OpsError

TOKEN_ENV = "NOETL_INTERNAL_API_TOKEN"
API_ENV = "NOETL_API_URL"
PROJECTOR_ENV = "NOETL_PROJECTOR_URL"
DATA_DIR_ENV = "NOETL_DATA_DIR"


def data_dir(flag: Path | None, env: Mapping[str, str]) -> Path:
    return (flag or Path(env.get(DATA_DIR_ENV) or Path.cwd() / ".data")).resolve()


def run_info(data: Path, strict: bool = True) -> RunInfo | None:
    """What a running `make run` recorded; None when none is recorded. A file left by a `make run`
    that died is an error when `strict` (its URLs would point at nothing), else ignored."""
    path = data / "run.json"
    if not path.exists():
        return None
    try:
        info = msgspec.json.decode(path.read_bytes(), type=RunInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OpsError(f"{path} is unreadable ({exc}); restart `make run`") from None
    if not _alive(info.pid):
        if not strict:
            return None
        raise OpsError(f"{path} was written by `make run` pid {info.pid}, which is no longer running; "
                       "start `make run` again (or pass --api)")
    return info


def token(flag_file: Path | None, env: Mapping[str, str], data: Path | None) -> str:
    if flag_file is not None:
        try:
            value = flag_file.read_text().strip()
        except OSError as exc:
            raise OpsError(f"--token-file {flag_file}: {exc.strerror}") from None
        if not value:
            raise OpsError(f"--token-file {flag_file} is empty")
        return value
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV]
    secrets = data / "secrets.json" if data is not None else None
    if secrets is not None and secrets.exists():
        try:
            value = json.loads(secrets.read_text()).get(TOKEN_ENV)
        except (OSError, ValueError) as exc:
            raise OpsError(f"{secrets} is unreadable: {exc}") from None
        if value:
            return value
    where = f" (locally `make run` writes it to {secrets})" if secrets is not None else ""
    raise OpsError(f"no internal API token: set {TOKEN_ENV} or pass --token-file{where}")


def api_url(flag: str | None, env: Mapping[str, str], run: RunInfo | None, k8s: bool) -> str:
    url = flag or env.get(API_ENV) or (run.router if run and not k8s else None)
    if not url:
        hint = ("e.g. `kubectl -n noetl port-forward svc/router 8080` and --api http://127.0.0.1:8080"
                if k8s else "or start `make run`, which records it in .data/run.json")
        raise OpsError(f"no router URL: pass --api or set {API_ENV} ({hint})")
    if not url.startswith(("http://", "https://")):
        raise OpsError(f"router URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def projectors(flags: list[str] | None, env: Mapping[str, str]) -> list[str] | None:
    """Explicit projector URLs, or None to let the platform find them."""
    if flags:
        return flags
    raw = env.get(PROJECTOR_ENV)
    return [u.strip() for u in raw.split(",") if u.strip()] if raw else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def environ() -> dict[str, str]:
    return dict(os.environ)
