"""jsonplaceholder-like resources (posts, comments, users, todos, albums), the counts and field names
of jsonplaceholder.typicode.com, generated deterministically: e2e playbooks that default to that
service run against these when the workload points `api_url` here."""

from __future__ import annotations

from typing import Any

from aiohttp import web

COUNTS = {"posts": 100, "comments": 500, "users": 10, "todos": 200, "albums": 100}


def record(resource: str, i: int) -> dict[str, Any]:
    if resource == "posts":
        return {"userId": (i - 1) // 10 + 1, "id": i, "title": f"post title {i}", "body": f"body of post {i}\nline two"}
    if resource == "comments":
        return {"postId": (i - 1) // 5 + 1, "id": i, "name": f"comment {i}", "email": f"c{i}@example.com",
                "body": f"comment body {i}"}
    if resource == "users":
        return {"id": i, "name": f"User {i}", "username": f"user{i}", "email": f"user{i}@example.com",
                "address": {"street": f"{i} Main St", "city": "Springfield", "zipcode": f"{10000 + i}",
                            "geo": {"lat": f"{i}.5", "lng": f"-{i}.25"}},
                "phone": f"555-010{i}", "website": f"user{i}.example.com",
                "company": {"name": f"Company {i}", "catchPhrase": "stand-in", "bs": "tests"}}
    if resource == "todos":
        return {"userId": (i - 1) // 20 + 1, "id": i, "title": f"todo {i}", "completed": i % 3 == 0}
    return {"userId": (i - 1) // 10 + 1, "id": i, "title": f"album {i}"}


def listing(resource: str, query: dict[str, str]) -> list[dict[str, Any]]:
    """All records of `resource`, filtered by equality on any query field (`?userId=1`), like json-server."""
    rows = [record(resource, i) for i in range(1, COUNTS[resource] + 1)]
    return [r for r in rows if all(str(r.get(k)) == v for k, v in query.items() if not k.startswith("_"))]


async def collection(request: web.Request) -> web.Response:
    resource = request.match_info["resource"]
    if resource not in COUNTS:
        return web.json_response({"detail": f"no resource {resource!r}"}, status=404)
    return web.json_response(listing(resource, dict(request.query)))


async def item(request: web.Request) -> web.Response:
    resource, raw = request.match_info["resource"], request.match_info["id"]
    if resource not in COUNTS or not raw.isdigit() or not 1 <= int(raw) <= COUNTS[resource]:
        return web.json_response({}, status=404)
    return web.json_response(record(resource, int(raw)))


def add_routes(app: web.Application, prefix: str = "/jsonplaceholder") -> None:
    app.router.add_get(prefix + "/{resource}", collection)
    app.router.add_get(prefix + "/{resource}/{id}", item)
