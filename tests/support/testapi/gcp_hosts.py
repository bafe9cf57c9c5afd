"""Google APIs at their own paths, for calls that reach the test API through the proxy under the
real hostname (a playbook naming https://secretmanager.googleapis.com inside a tool):

- Secret Manager's `GET /v1/projects/.../versions/...:access`, answered by the Secret Manager
  stand-in of identity.py (any host; its bearer must be a token issued here);
- on cloudresourcemanager.googleapis.com, Resource Manager v1's `GET /v1/projects/{projectId}`;
- on container.googleapis.com, GKE's `GET /v1/projects/{p}/locations/{l}/clusters`.

The last two want an access token from the test API's Google token endpoint (what a service
account's Application Default Credentials get there) and answer 401 UNAUTHENTICATED otherwise, as
Google does. Every well-formed project ID is an ACTIVE project the caller may see, with a project
number derived from the ID, so answers are repeatable; a malformed one gets Google's 403 (it does
not say whether a project exists). No location holds a cluster: the list is `{}`, the way Google's
JSON leaves out an empty repeated field."""

from __future__ import annotations

import hashlib
import re

from aiohttp import web

from .identity import IDENTITY, access_secret

CRM_HOST, GKE_HOST = "cloudresourcemanager.googleapis.com", "container.googleapis.com"
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# a region (us-central1), a zone (us-central1-a), or `-` for all of them
LOCATION = re.compile(r"^(-|[a-z]+-[a-z]+[0-9]+(-[a-z])?)$")


def _error(status: int, state: str, message: str) -> web.Response:
    """Google's JSON error shape (google.rpc.Status)."""
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'} if status == 401 else None
    return web.json_response({"error": {"code": status, "message": message, "status": state}}, status=status,
                             headers=headers)


def _denied(request: web.Request) -> web.Response | None:
    """None when the bearer is an access token the test API's Google token endpoint issued."""
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    if token.startswith("gcp-") and token in request.config_dict[IDENTITY].issued:
        return None
    return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                                          "access token, login cookie or other valid authentication credential.")


def _project_error(project_id: str) -> web.Response | None:
    if PROJECT_ID.match(project_id) and "--" not in project_id:
        return None
    return _error(403, "PERMISSION_DENIED", f"The caller does not have permission (project {project_id!r})")


async def get_project(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    project_id = request.match_info["project_id"]
    if (bad := _project_error(project_id)) is not None:
        return bad
    digest = hashlib.sha256(project_id.encode()).digest()
    number = 100_000_000_000 + int.from_bytes(digest[:5], "big") % 900_000_000_000  # 12 digits, as Google's
    return web.json_response({"projectNumber": str(number), "projectId": project_id, "lifecycleState": "ACTIVE",
                              "name": project_id, "createTime": "2024-01-15T09:30:00.000Z"})


async def list_clusters(request: web.Request) -> web.Response:
    if (denied := _denied(request)) is not None:
        return denied
    project_id, location = request.match_info["project_id"], request.match_info["location"]
    if (bad := _project_error(project_id)) is not None:
        return bad
    if not LOCATION.match(location):
        return _error(400, "INVALID_ARGUMENT", f'Location "{location}" does not exist.')
    return web.json_response({})


def _host_app(method: str, path: str, handler) -> web.Application:
    sub = web.Application()
    sub.router.add_route(method, path, handler)
    return sub


def add_routes(app: web.Application) -> None:
    # aiohttp tries domain sub-apps before the app's own routes, so these hosts' /v1/projects/...
    # never reach the Secret Manager route below
    app.add_domain(CRM_HOST, _host_app("GET", "/v1/projects/{project_id}", get_project))
    app.add_domain(GKE_HOST, _host_app("GET", "/v1/projects/{project_id}/locations/{location}/clusters",
                                       list_clusters))
    app.router.add_get("/v1/{path:projects/.+}", access_secret)
