"""Stand-ins for the two collaborator services quantum_cudaq names (placeholders under example.com
in its workload, `problem_catalog_url` and `http_endpoint`): a problem catalog answering a problem's
metadata by id, and the results collector that accepts the published summary. The playbook reads
only `id`, `qubits`, `default_depth` and `kernel_source` of a problem, and the status of the POST."""

from __future__ import annotations

import hashlib

from aiohttp import web


async def problem(request: web.Request) -> web.Response:
    problem_id = request.match_info["problem_id"]
    # "maxcut-8-node" -> 8 qubits; anything else a size derived from the id
    digits = [int(p) for p in problem_id.split("-") if p.isdigit()]
    qubits = digits[0] if digits else 2 + int(hashlib.md5(problem_id.encode()).hexdigest(), 16) % 6
    return web.json_response({"id": problem_id, "kind": "maxcut", "qubits": qubits, "default_depth": 2,
                              "edges": [[i, (i + 1) % qubits] for i in range(qubits)]})


async def collect(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"detail": "body must be JSON"}, status=400)
    if not isinstance(body, dict) or not body.get("problem_id"):
        return web.json_response({"detail": "problem_id is required"}, status=422)
    return web.json_response({"status": "accepted", "problem_id": body["problem_id"]}, status=202)


def add_routes(app: web.Application, prefix: str = "/quantum") -> None:
    app.router.add_get(prefix + "/problems/{problem_id}", problem)
    app.router.add_post(f"{prefix}/results", collect)
