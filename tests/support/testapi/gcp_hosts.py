"""Google APIs at their own paths, for calls that reach the test API through the proxy under the
real hostname (a playbook naming https://secretmanager.googleapis.com inside a tool): Secret
Manager's `GET /v1/projects/.../versions/...:access`, answered by the Secret Manager stand-in of
identity.py (its bearer must be a token issued here)."""

from __future__ import annotations

from aiohttp import web

from .identity import access_secret


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/{path:projects/.+}", access_secret)
