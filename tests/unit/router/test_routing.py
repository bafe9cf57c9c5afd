"""Routing precedence and id extraction: every rule, and bad ids are 400s, never guesses."""

from __future__ import annotations

import json

import pytest

from noetl_router.routing import Decision, Kind, Rule, RoutingError, decide, needs_body

E = 320816801799737344  # a real-looking snowflake
F = 42


def d(method: str, path: str, *, query=None, headers=None, body=None) -> Decision:
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    return decide(method, path, query or {}, headers or {}, raw)


def test_header_wins_over_everything():
    got = d("POST", f"/api/executions/{F}/cancel", headers={"X-Execution-ID": str(E)})
    assert got == Decision(Kind.OWNER, Rule.HEADER, (E,), "execution_id")
    assert d("GET", "/api/catalog/list", headers={"X-Execution-ID": str(E)}).ids == (E,)
    assert d("POST", "/api/events", headers={"X-Execution-ID": str(E)}, body={"execution_id": F}).ids == (E,)
    assert d("GET", "/api/commands/7", headers={"X-Execution-ID": str(E)}).rule is Rule.HEADER


@pytest.mark.parametrize("path", [f"/api/executions/{E}", f"/api/executions/{E}/status",
                                  f"/api/executions/{E}/events", f"/api/executions/{E}/cancel",
                                  f"/api/vars/{E}", f"/api/vars/{E}/some_var", f"/api/executions/{E}/"])
def test_execution_id_in_path(path):
    assert d("GET", path) == Decision(Kind.OWNER, Rule.PATH, (E,), "execution_id")


def test_replay_state_uses_the_query():
    assert d("GET", "/api/replay/state", query={"execution_id": str(E)}) == \
        Decision(Kind.OWNER, Rule.QUERY, (E,), "execution_id")
    with pytest.raises(RoutingError, match="execution_id is required"):
        d("GET", "/api/replay/state")


@pytest.mark.parametrize("path", [f"/api/commands/{E}", f"/api/commands/{E}/claim"])
def test_event_id_in_path_routes_by_hash(path):
    assert d("POST", path) == Decision(Kind.OWNER, Rule.EVENT_ID, (E,), "event_id")


@pytest.mark.parametrize("path, field", [(f"/api/stages/{E}/frames/claim", "stage_id"),
                                         (f"/api/frames/{E}/heartbeat", "frame_id"),
                                         (f"/api/frames/{E}/commit", "frame_id")])
def test_frames_routes_go_to_the_shard_that_minted_the_stage_or_frame(path, field):
    assert d("POST", path) == Decision(Kind.OWNER, Rule.EVENT_ID, (E,), field)
    with pytest.raises(RoutingError, match=field):
        d("POST", path.replace(str(E), "nope"))


def test_path_beats_body():
    # /api/executions/{id} is not body-routed; a body execution_id there is ignored.
    assert d("POST", f"/api/executions/{E}/cancel", body={"execution_id": F}).ids == (E,)


@pytest.mark.parametrize("path", ["/api/events", "/api/events/batch", "/api/internal/events/project"])
def test_body_execution_id(path):
    assert d("POST", path, body={"execution_id": str(E), "name": "x"}) == \
        Decision(Kind.OWNER, Rule.BODY, (E,), "execution_id")
    assert d("POST", path, body={"execution_id": E}).ids == (E,)


def test_projector_batch_without_top_level_id_uses_each_event():
    body = {"events": [{"execution_id": str(E), "event_id": 1}, {"execution_id": E, "event_id": 2},
                       {"execution_id": F, "event_id": 3}]}
    assert d("POST", "/api/internal/events/project", body=body).ids == (E, F)
    messages = {"messages": [{"id": "7", "events": [{"execution_id": str(F), "event_id": 1}]},
                             {"id": "8", "events": [{"execution_id": E, "event_id": 2}]}]}
    assert d("POST", "/api/internal/events/project", body=messages).ids == (F, E)


def test_needs_body_only_for_body_routed_posts_without_header():
    assert needs_body("POST", "/api/events", {})
    assert needs_body("POST", "/api/events/batch/", {})
    assert not needs_body("POST", "/api/events", {"X-Execution-ID": "1"})
    assert not needs_body("GET", "/api/events", {})
    assert not needs_body("POST", "/api/catalog/register", {})


@pytest.mark.parametrize("method,path,kind", [
    ("POST", "/api/execute", Kind.PLACE),
    ("POST", "/api/execute/batch", Kind.PLACE),
    ("GET", "/api/executions", Kind.LIST_EXECUTIONS),
    ("GET", "/api/executions/", Kind.LIST_EXECUTIONS),
    ("GET", "/api/internal/outbox/pending-count", Kind.PENDING_COUNT),
    ("GET", "/sharding/preview", Kind.PREVIEW),
    ("POST", "/api/internal/outbox/claim", Kind.PER_SHARD),
    ("POST", "/api/catalog/register", Kind.ANY),
    ("POST", "/api/catalog/list", Kind.ANY),
    ("GET", "/api/credentials/pg", Kind.ANY),
    ("POST", "/api/credentials", Kind.ANY),
    ("GET", "/api/keychain/1/name", Kind.ANY),
    ("POST", "/api/worker/pool/register", Kind.ANY),
    ("GET", "/api/worker/pools", Kind.ANY),
    ("GET", "/api/runtime/shard-info", Kind.ANY),
    ("GET", "/api/shard-map", Kind.ANY),
])
def test_cluster_wide_kinds(method, path, kind):
    got = d(method, path)
    assert got.kind is kind and got.rule is Rule.CLUSTER and got.ids == ()


def test_execute_with_parent_still_places_anywhere():
    assert d("POST", "/api/execute", body={"path": "p", "parent_execution_id": str(E)}).kind is Kind.PLACE


@pytest.mark.parametrize("kwargs,fragment", [
    ({"method": "GET", "path": "/api/executions/abc"}, "execution id in path"),
    ({"method": "GET", "path": "/api/executions/12x/status"}, "'12x'"),
    ({"method": "GET", "path": "/api/vars/1.5"}, "execution id in path"),
    ({"method": "GET", "path": "/api/executions/99999999999999999999"}, "64-bit"),
    ({"method": "POST", "path": "/api/commands/evt-1/claim"}, "event id in path"),
    ({"method": "GET", "path": "/api/replay/state", "query": {"execution_id": "nope"}}, "query parameter execution_id"),
    ({"method": "GET", "path": "/api/catalog/list", "headers": {"X-Execution-ID": "abc"}}, "X-Execution-ID header"),
    ({"method": "GET", "path": "/api/catalog/list", "headers": {"X-Execution-ID": ""}}, "X-Execution-ID header"),
    ({"method": "POST", "path": "/api/events", "body": {"execution_id": "x1"}}, "execution_id in the body"),
    ({"method": "POST", "path": "/api/events", "body": {"execution_id": True}}, "boolean"),
    ({"method": "POST", "path": "/api/events", "body": {"name": "x"}}, "execution_id is required"),
    ({"method": "POST", "path": "/api/events", "body": b"{not json"}, "malformed JSON"),
    ({"method": "POST", "path": "/api/events", "body": b""}, "body is empty"),
    ({"method": "POST", "path": "/api/events", "body": [1, 2]}, "JSON object"),
    ({"method": "POST", "path": "/api/internal/events/project", "body": {"events": [{"event_id": 1}]}},
     r"events\[0\].execution_id is required"),
    ({"method": "POST", "path": "/api/internal/events/project",
      "body": {"messages": [{"id": "1", "events": [{"execution_id": 1}]}, {"id": "2", "events": [{}]}]}},
     r"messages\[1\].events\[0\].execution_id is required"),
    ({"method": "POST", "path": "/api/internal/events/project", "body": {"messages": [{"id": "1"}]}},
     r"messages\[0\].events must be a non-empty list"),
])
def test_unparsable_ids_are_errors_naming_them(kwargs, fragment):
    with pytest.raises(RoutingError, match=fragment):
        d(kwargs.pop("method"), kwargs.pop("path"), **kwargs)


# --- NoETL routes added for issue 12 --------------------------------------------------------

def test_cleanup_fans_out_instead_of_parsing_an_execution_id():
    assert d("POST", "/api/executions/cleanup").kind is Kind.CLEANUP
    assert d("POST", "/api/executions/cleanup/").kind is Kind.CLEANUP
    with pytest.raises(RoutingError, match="'cleanup'"):
        d("GET", "/api/executions/cleanup")  # only POST is the cleanup; a GET is an id lookup


@pytest.mark.parametrize("suffix", ["status", "stream"])
def test_batch_request_id_routes_by_hash(suffix):
    got = d("GET", f"/api/events/batch/{E}/{suffix}")
    assert (got.kind, got.rule, got.ids, got.field) == (Kind.OWNER, Rule.EVENT_ID, (E,), "request_id")
    assert d("POST", "/api/events/batch", body={"execution_id": F}).ids == (F,)  # the POST stays body-routed


@pytest.mark.parametrize("base", ["/api/result", "/api/temp"])
@pytest.mark.parametrize("method,tail", [("PUT", ""), ("DELETE", ""), ("GET", "/list"), ("GET", "/step_a"),
                                         ("DELETE", "/step/step_a")])
def test_result_store_routes_by_the_execution_in_the_path(base, method, tail):
    got = d(method, f"{base}/{E}{tail}")
    assert (got.kind, got.rule, got.ids) == (Kind.OWNER, Rule.PATH, (E,))


def test_result_resolve_routes_by_the_refs_execution():
    got = d("GET", "/api/result/resolve", query={"ref": f"noetl://execution/{E}/result/a/b/{F}"})
    assert (got.kind, got.rule, got.ids) == (Kind.OWNER, Rule.QUERY, (E,))
    assert d("GET", "/api/temp/resolve", query={"ref": f"noetl://execution/{F}/result/x/1"}).ids == (F,)


def test_result_stats_fans_out():
    assert d("GET", "/api/result/stats").kind is Kind.RESULT_STATS


@pytest.mark.parametrize("kwargs,fragment", [
    ({"path": "/api/result/resolve"}, "query parameter ref is required"),
    ({"path": "/api/result/resolve", "query": {"ref": "s3://bucket/x"}}, "query parameter ref"),
    ({"path": "/api/result/resolve", "query": {"ref": "noetl://execution/x1/result/a/1"}}, "execution id"),
    ({"path": "/api/result/resolve", "query": {"ref": "noetl://execution/1/result//1"}}, "empty result name"),
    ({"path": "/api/result/abc/list"}, "execution id in path"),
    ({"path": "/api/events/batch/r-1/status"}, "request id in path"),
])
def test_bad_result_and_request_ids_are_errors(kwargs, fragment):
    with pytest.raises(RoutingError, match=fragment):
        d("GET", kwargs.pop("path"), **kwargs)
