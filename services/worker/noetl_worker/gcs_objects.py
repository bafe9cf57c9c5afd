"""Objects in Google Cloud Storage, through google-cloud-storage (as NoETL's worker reads and writes
them): the service account GOOGLE_APPLICATION_CREDENTIALS names, or an anonymous client when
STORAGE_EMULATOR_HOST names an emulator (the client's own convention); with neither, a step that
needs GCS fails saying so. The client is blocking, so calls run in a thread."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .tools.base import ToolError, split_object_uri


def split_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/name` as (bucket, name), or a ToolError naming what was given."""
    return split_object_uri(uri, "gs", "a GCS object", "name")


def _client(project: str | None) -> Any:
    if not (os.environ.get("STORAGE_EMULATOR_HOST") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")):
        # without either the client would look for a metadata server; fail naming what is missing
        raise ToolError("no gcs backend configured: the worker needs GOOGLE_APPLICATION_CREDENTIALS "
                        "(or STORAGE_EMULATOR_HOST for an emulator)")
    from google.cloud import storage  # imported here: only steps that touch GCS pay for it

    return storage.Client(project=project) if project else storage.Client()


async def download(uri: str, project: str | None = None) -> bytes:
    bucket, name = split_uri(uri)

    def _get() -> bytes:
        return bytes(_client(project).bucket(bucket).blob(name).download_as_bytes())

    try:
        return await asyncio.to_thread(_get)
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"reading {uri}: {type(exc).__name__}: {str(exc)[:300]}") from None


async def upload(uri: str, data: bytes, content_type: str, project: str | None = None) -> None:
    bucket, name = split_uri(uri)

    def _put() -> None:
        _client(project).bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)

    try:
        await asyncio.to_thread(_put)
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(f"writing {uri}: {type(exc).__name__}: {str(exc)[:300]}") from None
