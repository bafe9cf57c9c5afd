"""The OpenAPI document: valid 3.1, built from the handlers' own Structs, and covering every route
each app serves. A route registered without a description fails `test_every_shard_route_is_described`
(and its router counterpart); describe it with `noetl_common.openapi.route(..., Op(...))`."""

import base64
import os
import re
from typing import ClassVar

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import OpenAPIV31SpecValidator

from noetl_api_shard.app import create_app as create_shard_app
from noetl_common import openapi
from noetl_common.config import ShardSettings
from noetl_common.http import build_app
from noetl_common.ids import ID_PATTERN, parse_id
from noetl_common.wire.credentials import CredentialCreate
from noetl_common.wire.execution import BatchRequest, EventIn, ExecuteRequest, ExecuteResponse
from noetl_router.api_document import ANSWERED_HERE, TITLE
from noetl_router.app import create_app as create_router_app
from noetl_router.config import RouterSettings
from noetl_router.routing import proxied

SHARD_ENV = {"NOETL_SHARD_DSN": "postgresql://x@h/s0", "NOETL_CLUSTER_DSN": "postgresql://x@h/c",
             "NOETL_SHARD_COUNT": "2", "NOETL_SHARD_INDEX": "0", "NOETL_INTERNAL_API_TOKEN": "t",
             "NOETL_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
CATCH_ALL = ("*", "/{tail}")


@pytest.fixture(scope="module")
def shard_app() -> web.Application:
    return create_shard_app(ShardSettings.from_env(SHARD_ENV))  # no database is opened before start-up


@pytest.fixture(scope="module")
def shard_doc(shard_app) -> dict:
    return openapi.document(shard_app, title="shard", version="1")


@pytest.fixture(scope="module")
def router_app() -> web.Application:
    return create_router_app(RouterSettings.from_env({"NOETL_SHARD_URLS": "http://a:1,http://b:1"}))


@pytest.fixture(scope="module")
def router_doc(router_app, shard_doc) -> dict:
    # What api_document.source serves, with the shard's document built here instead of fetched.
    own = openapi.document(router_app, title=TITLE, version="1", extra=ANSWERED_HERE)
    return openapi.merge(own, shard_doc, keep=proxied)


def _operations(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_documents_are_valid_openapi_31(shard_doc, router_doc):
    for doc in (shard_doc, router_doc):
        assert doc["openapi"].startswith("3.1")
        OpenAPIV31SpecValidator(doc).validate()  # raises naming the first problem


def test_every_shard_route_is_described(shard_app, shard_doc):
    assert openapi.undocumented(shard_app) == []
    assert _operations(shard_doc) == set(openapi.served_routes(shard_app))


def test_every_router_route_is_described_and_every_proxied_route_is_there(router_app, shard_app, router_doc):
    # The catch-all is the one route of the router that no single operation describes: what it
    # serves is every routable shard route plus what it answers itself, checked next.
    assert [r for r in openapi.undocumented(router_app) if r != CATCH_ALL] == []
    assert CATCH_ALL in set(openapi.served_routes(router_app))
    served = _operations(router_doc)
    own = {r for r in openapi.served_routes(router_app) if r != CATCH_ALL}
    assert own <= served
    proxied_routes = {r for r in openapi.served_routes(shard_app) if proxied(*r)}
    assert proxied_routes and proxied_routes <= served
    assert {(m, p) for m, p, _ in ANSWERED_HERE} <= served
    # Shard-local internals carry no id to route by: the router refuses them, so it does not list them.
    assert ("POST", "/api/internal/outbox/claim") not in served
    assert ("POST", "/api/internal/outbox/claim") in _operations(openapi.document(shard_app, title="s", version="1"))


def test_router_describes_its_own_answers_not_the_shards(router_doc):
    listing = router_doc["paths"]["/api/executions"]["get"]
    assert "page" in {p["name"] for p in listing["parameters"]}  # the router's page/offset, not the shard's
    pending = router_doc["paths"]["/api/internal/outbox/pending-count"]["get"]
    ref = pending["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/FleetPending")


def test_an_undescribed_route_is_reported():
    app = build_app(service="t", max_body_bytes=1024)

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/api/new", handler)
    assert openapi.undocumented(app) == [("POST", "/api/new")]
    assert "/api/new" not in openapi.document(app, title="t", version="1")["paths"]


def test_schemas_are_the_handlers_structs(shard_doc):
    _, components = msgspec.json.schema_components([ExecuteRequest, ExecuteResponse, BatchRequest],
                                                   ref_template=openapi.REF_TEMPLATE)
    for name, schema in components.items():
        # msgspec's schema, plus what the Struct declares beyond its fields (a class-level extra)
        struct = {"ExecuteRequest": ExecuteRequest, "EventIn": EventIn, "BatchRequest": BatchRequest}.get(name)
        extra = getattr(struct, openapi.SCHEMA_EXTRA, {})
        assert shard_doc["components"]["schemas"][name] == {**schema, **extra}
    execute = shard_doc["paths"]["/api/execute"]["post"]
    assert execute["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExecuteRequest"}
    assert execute["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExecuteResponse"}


def test_errors_and_internal_security(shard_doc):
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    assert set(shard_doc["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "status"}
    for path, ops in shard_doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == error_ref, (method, path)
            if path.startswith("/api/internal/"):
                assert op["security"] == [{openapi.BEARER_SCHEME: []}], (method, path)
                assert op["responses"]["403"]["content"]["application/json"]["schema"] == error_ref
            elif path in ("/healthz", "/health", "/readyz", "/api/health", "/api/health/ready", "/metrics",
                          "/openapi.json", "/docs", "/docs/static/{name}"):
                assert "security" not in op and "401" not in op["responses"], (method, path)
            else:  # the API token, when the service has one
                assert op["security"] == [{openapi.API_BEARER_SCHEME: []}, {}], (method, path)
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == error_ref
    assert shard_doc["components"]["securitySchemes"][openapi.BEARER_SCHEME] == {
        "type": "http", "scheme": "bearer",
        "description": "NOETL_INTERNAL_API_TOKEN: service-to-service routes under /api/internal/"}



def test_guard_answers_are_documented_where_they_apply(shard_doc, router_doc):
    """401 (API token), 429 (admission), 503 (database / shard), 504 (deadline): the statuses the
    shell's middlewares answer, on the routes those middlewares apply to."""
    for doc in (shard_doc, router_doc):
        paths = doc["paths"]
        execute = paths["/api/execute"]["post"]["responses"]
        assert {"401", "429", "503", "504"} <= set(execute), execute.keys()
        assert execute["429"]["headers"]["Retry-After"]["schema"] == {"type": "string"}
        assert "Retry-After" in execute["503"]["headers"]
        internal = paths["/api/internal/shard/status"]["get"]["responses"]
        assert {"403", "503", "504"} <= set(internal) and "429" not in internal and "401" not in internal
        health = paths["/healthz"]["get"]["responses"]
        assert not {"401", "429", "503"} & set(health) and "504" in health
        stream = paths["/api/events/batch/{request_id}/stream"]["get"]["responses"]
        assert "504" not in stream and "429" not in stream  # streams are exempt from deadline and bound


def test_other_services_describe_every_route():
    from noetl_outbox_publisher import config as publisher_config
    from noetl_outbox_publisher.app import create_app as publisher_app
    from noetl_projector import config as projector_config
    from noetl_projector.app import create_app as projector_app
    from noetl_worker import config as worker_config
    from noetl_worker.app import create_app as worker_app
    env = {**SHARD_ENV, "NOETL_SHARD_URLS": "http://a:1,http://b:1", "NOETL_NATS_URL": "nats://x:4222",
           "NOETL_SERVER_URL": "http://r:1", "NOETL_ROUTER_URL": "http://r:1"}
    for make, settings in ((publisher_app, publisher_config), (projector_app, projector_config),
                           (worker_app, worker_config)):
        app = make(settings.from_env(env))
        assert openapi.undocumented(app) == [], make.__module__
        OpenAPIV31SpecValidator(openapi.document(app, title="t", version="1")).validate()


def test_schema_names_are_unambiguous(shard_doc, router_doc):
    # msgspec names a component by its module path when two Structs share a name; the document
    # then reads badly and a router/shard merge could pair the wrong shapes. Rename one instead.
    for doc in (shard_doc, router_doc):
        assert [n for n in doc["components"]["schemas"] if "." in n] == []


def test_path_parameters_are_declared(shard_doc):
    ui = shard_doc["paths"]["/api/catalog/{path}/ui_schema"]["get"]
    assert {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}} in ui["parameters"]
    status = shard_doc["paths"]["/api/executions/{execution_id}/status"]["get"]
    assert status["parameters"][0]["schema"]["pattern"] == ID_PATTERN


@pytest.mark.parametrize("text,ok", [
    ("0", True), ("42", True), ("000000000000000001", True), (str(2**63 - 1), True), ("1" + "0" * 18, True),
    (str(2**63), False), ("9" * 19, False), ("1" * 20, False), ("", False), ("-1", False), (" 1", False),
    ("¹", False), ("1e3", False)])
def test_the_id_pattern_is_what_parse_id_takes_in_range(text, ok):
    assert bool(re.fullmatch(ID_PATTERN, text)) is ok
    if ok:
        assert 0 <= parse_id(text) < 2**63


def test_either_or_fields_are_stated_by_the_struct(shard_doc):
    schemas = shard_doc["components"]["schemas"]
    execute = schemas["ExecuteRequest"]
    assert [b["required"] for b in execute["anyOf"]] == [["path"], ["catalog_id"]]
    assert [b["required"] for b in schemas["EventIn"]["anyOf"]] == [["event_type"], ["name"]]
    assert schemas["EventPost"]["anyOf"] == schemas["EventIn"]["anyOf"]  # inherited with the class
    assert "execution_id" in schemas["EventPost"]["required"]
    assert schemas["KeychainSet"]["then"]["required"] == ["execution_id"]
    assert "anyOf" in schemas["ResourceRequest"]


class _Base(msgspec.Struct):
    __json_schema_extra__: ClassVar[dict] = {"minProperties": 1}
    a: int | None = None


class _Outer(msgspec.Struct):
    items: list[_Base]


def test_a_schema_extra_reaches_nested_structs():
    doc = openapi.build([("POST", "/x", openapi.Op(summary="x", body=_Outer))], title="t", version="1")
    assert doc["components"]["schemas"]["_Base"]["minProperties"] == 1
    assert "minProperties" not in doc["components"]["schemas"]["_Outer"]


@pytest.mark.parametrize("body", [
    {"name": " ", "data": {}}, {"name": "n"}, {"data": {}}])
def test_constraints_stated_are_enforced_on_decode(body):
    # The Struct both states (document) and enforces (decode) a constraint: no hand check to drift.
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(body), type=CredentialCreate)


async def test_openapi_json_and_docs_page_are_served_locally():
    async with TestClient(TestServer(build_app(service="t", max_body_bytes=1024))) as client:
        r = await client.get("/openapi.json")
        doc = await r.json()
        assert r.status == 200 and doc["info"]["title"] == "NoETL fleet t"
        OpenAPIV31SpecValidator(doc).validate()
        r = await client.get("/docs")
        page = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert "/openapi.json" in page and "http://" not in page and "https://" not in page  # no CDN
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
            assert f"/docs/static/{asset}" in page
            r = await client.get(f"/docs/static/{asset}")
            assert r.status == 200 and len(await r.read()) > 1000, asset
        r = await client.get("/docs/static/..%2fopenapi.py")
        assert r.status == 404 and (await r.json())["code"] == "not_found"
