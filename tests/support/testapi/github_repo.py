"""GitHub's `GET /repos/{owner}/{repo}` (the fields the internet_postgres_gcs tutorials read), under
`/github`: a workload's `api_url` of https://api.github.com/repos/<owner>/<repo> points here."""

from __future__ import annotations

from aiohttp import web


async def repository(request: web.Request) -> web.Response:
    owner, repo = request.match_info["owner"], request.match_info["repo"]
    full = f"{owner}/{repo}"
    return web.json_response({
        "id": sum(map(ord, full)) * 1000, "name": repo, "full_name": full, "private": False,
        "owner": {"login": owner, "type": "Organization"}, "html_url": f"https://github.com/{full}",
        "description": f"{repo} (stand-in)", "language": "Python", "stargazers_count": 42, "forks_count": 7,
        "updated_at": "2026-01-01T00:00:00Z", "default_branch": "main"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/github/repos/{owner}/{repo}", repository)
