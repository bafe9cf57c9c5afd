"""/openapi.json and /docs on a running fleet: every service's document is valid OpenAPI 3.1, and
the router's covers every routable operation each shard serves."""

from __future__ import annotations

import aiohttp
from openapi_spec_validator import OpenAPIV31SpecValidator

from noetl_router.routing import proxied


async def _json(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def _operations(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


async def test_every_service_serves_a_valid_document(api_fleet):
    async with aiohttp.ClientSession() as http:
        for spec in api_fleet.specs:
            doc = await _json(http, f"{spec.url}/openapi.json")
            OpenAPIV31SpecValidator(doc).validate()
            assert {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")} <= _operations(doc), spec.name


async def test_router_document_covers_what_the_shards_serve(api_fleet):
    async with aiohttp.ClientSession() as http:
        routed = _operations(await _json(http, f"{api_fleet.router}/openapi.json"))
        for spec in api_fleet.specs:
            if spec.module != "noetl_api_shard":
                continue
            shard_ops = _operations(await _json(http, f"{spec.url}/openapi.json"))
            missing = {op for op in shard_ops if proxied(*op)} - routed
            assert not missing, f"{spec.name} serves operations the router's document lacks: {sorted(missing)}"
        assert ("GET", "/sharding/preview") in routed
        assert ("POST", "/api/internal/outbox/claim") not in routed  # shard-local: the router refuses it


async def test_docs_page_through_the_router(api_fleet):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api_fleet.router}/docs") as r:
            page = await r.text()
            assert r.status == 200 and "SwaggerUIBundle" in page and "https://" not in page
        async with http.get(f"{api_fleet.router}/docs/static/swagger-ui-bundle.js") as r:
            assert r.status == 200 and "javascript" in r.content_type
