"""`GET /docs`: Swagger UI over this service's `/openapi.json`, its files served by the service
itself from the `swagger-ui-bundle-v2` package (no CDN: the page works on an air-gapped cluster)."""

from __future__ import annotations

import mimetypes
from typing import Awaitable, Callable

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from .errors import not_found

# Only the files the page loads; anything else under /docs/static is a 404, never a file lookup.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png")
CACHE = {"Cache-Control": "public, max-age=86400"}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/static/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      deepLinking: true
    }});
  </script>
</body>
</html>
"""


def page_handler(title: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    html = PAGE.format(title=title)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    return docs


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise not_found(f"no such docs asset: {name}")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.Response(body=(swagger_ui_path / name).read_bytes(), content_type=content_type, headers=CACHE)
