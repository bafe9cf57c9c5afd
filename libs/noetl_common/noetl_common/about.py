"""`GET /` and `GET /api/status` on every service: which service answers, its version, and a
little about its process (NoETL's servers answer these; the CLI and people probe them)."""

from __future__ import annotations

import os
import time

import msgspec
from aiohttp import web

from .errors import json_response
from .openapi import Op, package_version, route

STARTED = web.AppKey("started_monotonic", float)
SERVICE = web.AppKey("service_name", str)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Root(msgspec.Struct):
    message: str                  # NoETL's root answer
    service: str
    version: str
    status: str


class ProcessStatus(msgspec.Struct, omit_defaults=True):
    pid: int
    uptime_seconds: float
    memory_rss_mb: float | None = None  # None where /proc is not there to read


class Status(msgspec.Struct):
    status: str
    service: str
    version: str
    process: ProcessStatus


def register(app: web.Application, service: str) -> None:
    app[STARTED] = time.monotonic()
    app[SERVICE] = service
    route(app, "GET", "/", root, Op(summary="Which service this is, and that it runs", ok=Root))
    route(app, "GET", "/api/status", status, Op(summary="Service, version and this process's status", ok=Status))


async def root(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return json_response(Root(message=f"NoETL fleet {service} is running", service=service,
                              version=package_version(), status="ok"))


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * PAGE_SIZE / 1_048_576, 1)
    except (OSError, ValueError, IndexError):
        return None


async def status(request: web.Request) -> web.Response:
    process = ProcessStatus(pid=os.getpid(), uptime_seconds=round(time.monotonic() - request.app[STARTED], 1),
                            memory_rss_mb=_rss_mb())
    return json_response(Status(status="ok", service=request.app[SERVICE], version=package_version(),
                                process=process))
