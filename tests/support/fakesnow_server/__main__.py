"""python -m tests.support.fakesnow_server: serve fakesnow on NOETL_HTTP_HOST:NOETL_HTTP_PORT, with
/healthz for the supervisor's readiness check."""

from __future__ import annotations

import os

import fakesnow.server
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def main() -> None:
    app = fakesnow.server.app
    app.add_route("/healthz", healthz, methods=["GET"])
    uvicorn.run(app, host=os.environ.get("NOETL_HTTP_HOST", "127.0.0.1"),
                port=int(os.environ.get("NOETL_HTTP_PORT", "8765")), log_level="warning")


if __name__ == "__main__":
    main()
