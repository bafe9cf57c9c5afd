"""Stand-ins for public APIs that e2e playbooks name inside a tool, each answered on its own host
(requests reach them through the test API's proxy, proxy.py, which relays the Host header as sent),
with the real service's paths and the fields the playbooks read:

- en.wikipedia.org: the REST page summary (`/api/rest_v1/page/summary/{title}`);
- api.github.com: a repository (`/repos/{owner}/{repo}`);
- api.quantum.ibm.com: IBM Quantum Runtime's job submit, status and results (`/runtime/jobs...`),
  a job completing on its first status poll with Bell-state sampler counts;
- api.example.com: the documentation examples' API: a paged `/data` and `/users/{id}`;
- jsonplaceholder.typicode.com: the test API's jsonplaceholder resources (placeholder.py) at their real paths.

Answers are deterministic (derived from the request), so a playbook's outcome is repeatable."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from aiohttp import web

from . import placeholder

EXAMPLE_ITEMS = 250  # api.example.com /data: items over all pages
JOBS = web.AppKey("jobs", dict)
JOB_IDS = web.AppKey("job_ids", itertools.count)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


# --- en.wikipedia.org --------------------------------------------------------------------------

async def wikipedia_summary(request: web.Request) -> web.Response:
    title = request.match_info["title"].replace("_", " ")
    extract = (f"{title} is the subject of this stand-in summary. It has several sentences of plain text "
               f"so that word counts and lengths are meaningful, as in the real page summary.")
    return web.json_response({
        "type": "standard", "title": title, "displaytitle": title,
        "namespace": {"id": 0, "text": ""}, "pageid": _seed(title) % 10_000_000, "lang": "en", "dir": "ltr",
        "revision": str(_seed("rev" + title)), "tid": "stand-in", "timestamp": "2025-11-20T08:15:30Z",
        "description": f"Stand-in description of {title}",
        "content_urls": {"desktop": {"page": f"https://en.wikipedia.org/wiki/{request.match_info['title']}"}},
        "extract": extract, "extract_html": f"<p>{extract}</p>"})


# --- api.github.com ----------------------------------------------------------------------------

async def github_repo(request: web.Request) -> web.Response:
    owner, name = request.match_info["owner"], request.match_info["repo"]
    seed = _seed(f"{owner}/{name}")
    stars, forks = 1000 + seed % 200_000, 100 + seed % 40_000
    return web.json_response({
        "id": seed, "node_id": f"R_{seed}", "name": name, "full_name": f"{owner}/{name}", "private": False,
        "owner": {"login": owner, "id": _seed(owner), "type": "Organization"},
        "html_url": f"https://github.com/{owner}/{name}", "description": f"Stand-in repository {owner}/{name}",
        "fork": False, "url": f"https://api.github.com/repos/{owner}/{name}",
        "created_at": "2015-09-03T20:23:38Z", "updated_at": "2025-11-30T10:00:00Z",
        "pushed_at": "2025-11-30T09:59:00Z", "homepage": None, "size": seed % 1_000_000,
        "stargazers_count": stars, "watchers_count": stars, "language": "TypeScript",
        "forks_count": forks, "open_issues_count": seed % 10_000, "default_branch": "main",
        "forks": forks, "open_issues": seed % 10_000, "watchers": stars, "subscribers_count": seed % 5_000})


# --- api.quantum.ibm.com (IBM Quantum Runtime REST) --------------------------------------------

def _ibm_auth(request: web.Request) -> web.Response | None:
    """The runtime answers 401 without a bearer token and 400 without an API version."""
    if not request.headers.get("Authorization", "").startswith("Bearer ") or \
            not request.headers["Authorization"][7:].strip():
        return web.json_response({"errors": [{"code": 1219, "message": "Unauthorized"}]}, status=401)
    if not request.headers.get("IBM-API-Version"):
        return web.json_response({"errors": [{"code": 1240, "message": "IBM-API-Version header required"}]},
                                 status=400)
    return None


async def ibm_submit(request: web.Request) -> web.Response:
    if (refused := _ibm_auth(request)) is not None:
        return refused
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"errors": [{"code": 1400, "message": "body must be JSON"}]}, status=400)
    missing = [k for k in ("program_id", "backend", "params") if not (isinstance(body, dict) and body.get(k))]
    if missing:
        return web.json_response({"errors": [{"code": 1400, "message": f"missing {', '.join(missing)}"}]},
                                 status=400)
    job_id = f"standin{next(request.app[JOB_IDS]):06d}"
    request.app[JOBS][job_id] = {"backend": body["backend"], "program_id": body["program_id"],
                                 "shots": 1024}
    return web.json_response({"id": job_id, "backend": body["backend"]})


async def ibm_status(request: web.Request) -> web.Response:
    if (refused := _ibm_auth(request)) is not None:
        return refused
    job = request.app[JOBS].get(request.match_info["job_id"])
    if job is None:
        return web.json_response({"errors": [{"code": 1291, "message": "Job not found."}]}, status=404)
    return web.json_response({"id": request.match_info["job_id"], "backend": job["backend"],
                              "program": {"id": job["program_id"]}, "status": "Completed",
                              "created": "2026-01-01T12:00:00Z"})


async def ibm_results(request: web.Request) -> web.Response:
    if (refused := _ibm_auth(request)) is not None:
        return refused
    job = request.app[JOBS].get(request.match_info["job_id"])
    if job is None:
        return web.json_response({"errors": [{"code": 1291, "message": "Job not found."}]}, status=404)
    half = job["shots"] // 2  # a Bell pair measures 00 or 11, evenly
    return web.json_response({"results": [{"data": {"c": {"counts": {"00": half, "11": job["shots"] - half},
                                                           "num_bits": 2}},
                                           "metadata": {"shots": job["shots"]}}],
                              "metadata": {"version": 2}})


# --- api.example.com ---------------------------------------------------------------------------

async def example_data(request: web.Request) -> web.Response:
    """Page `page` of `pageSize` items with `paging.hasMore`, what http_pagination_v2 walks."""
    try:
        page = max(1, int(request.query.get("page", "1")))
        size = max(1, min(1000, int(request.query.get("pageSize", "100"))))
    except ValueError:
        return web.json_response({"detail": "page and pageSize must be integers"}, status=400)
    first = (page - 1) * size
    items = [{"id": i, "name": f"item {i}"} for i in range(first + 1, min(first + size, EXAMPLE_ITEMS) + 1)]
    return web.json_response({"items": items, "paging": {"page": page, "pageSize": size,
                                                         "hasMore": first + size < EXAMPLE_ITEMS,
                                                         "total": EXAMPLE_ITEMS}})


async def example_user(request: web.Request) -> web.Response:
    raw = request.match_info["user_id"]
    if not raw.isdigit():
        return web.json_response({"detail": f"user id must be a number, got {raw!r}"}, status=404)
    user_id = int(raw)
    return web.json_response({"id": user_id, "email": f"user{user_id}@example.com",
                              "status": "active" if user_id % 2 else "inactive",
                              "created_at": "2025-01-15T09:30:00Z"})


def _host_app(routes: list[tuple[str, str, Any]]) -> web.Application:
    sub = web.Application()
    for method, path, handler in routes:
        sub.router.add_route(method, path, handler)
    return sub


def add_routes(app: web.Application) -> None:
    """Each stand-in on its own host, so its paths never meet the test API's own."""
    ibm = _host_app([("POST", "/runtime/jobs", ibm_submit), ("GET", "/runtime/jobs/{job_id}", ibm_status),
                     ("GET", "/runtime/jobs/{job_id}/results", ibm_results)])
    ibm[JOBS], ibm[JOB_IDS] = {}, itertools.count(1)
    app.add_domain("en.wikipedia.org", _host_app([("GET", "/api/rest_v1/page/summary/{title}", wikipedia_summary)]))
    app.add_domain("api.github.com", _host_app([("GET", "/repos/{owner}/{repo}", github_repo)]))
    app.router.add_get("/github/repos/{owner}/{repo}", github_repo)  # for a workload's api_url override
    app.add_domain("api.quantum.ibm.com", ibm)
    app.add_domain("api.example.com", _host_app([("GET", "/data", example_data),
                                                  ("GET", "/users/{user_id}", example_user)]))
    jsonplaceholder = web.Application()
    placeholder.add_routes(jsonplaceholder, prefix="")
    app.add_domain("jsonplaceholder.typicode.com", jsonplaceholder)
