"""Any document either parses or is refused with PlaybookError (the catalog's 422): no shape of
input may raise anything else, which the catalog would answer with a 500."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noetl_common.dsl import PlaybookError, parse_playbook

# Keys the parser reads, so generated documents reach deep into it instead of stopping at the top.
KEYS = ["step", "tool", "kind", "next", "arcs", "spec", "mode", "when", "then", "else", "set", "args", "input",
        "loop", "in", "iterator", "max_in_flight", "cursor", "claim", "frame", "max_rows", "row_concurrency",
        "policy", "rules", "do", "code", "command", "script", "uri", "source", "url", "name", "retry",
        "max_attempts", "workflow", "workbook", "workload", "metadata", "executor", "entry_step", "case", "end",
        "start", "data", "with", "path", "type"]
KINDS = ["python", "http", "postgres", "duckdb", "noop", "workbook", "playbook", "container", "bogus"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True),
                    st.sampled_from(KEYS + KINDS + ["{{ x }}", "{{", "", "end", "start"]), st.text(max_size=5))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=4), st.integers(0, 3), st.none(), st.booleans())
nodes = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


@st.composite
def near_playbooks(draw) -> dict:
    """Mostly-right playbooks with junk in random places: the paths a real mistake takes."""
    def step(i: int) -> dict:
        out = {"step": draw(st.one_of(st.sampled_from(["start", "end", "a", "b"]), nodes)) if i else "start"}
        if draw(st.booleans()):
            out["tool"] = draw(st.one_of(
                st.fixed_dictionaries({"kind": st.sampled_from(KINDS)},
                                      optional={k: nodes for k in ("code", "url", "command", "spec", "input", "args",
                                                                   "script", "retry", "name")}),
                st.lists(st.fixed_dictionaries({"kind": st.sampled_from(KINDS)}, optional={"spec": nodes}), max_size=3),
                nodes))
        for key in ("next", "loop", "set", "input", "when", "case"):
            if draw(st.integers(0, 3)) == 0:
                out[key] = draw(nodes)
        return out
    doc = {"workflow": [step(i) for i in range(draw(st.integers(0, 4)))]}
    for key in ("workbook", "workload", "metadata", "executor"):
        if draw(st.booleans()):
            doc[key] = draw(nodes)
    return doc


def parses_or_refuses(doc) -> None:
    try:
        parse_playbook(doc)
    except PlaybookError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_playbooks())
def test_near_playbooks_parse_or_are_refused(doc):
    parses_or_refuses(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, nodes, max_size=6))
def test_arbitrary_mappings_parse_or_are_refused(doc):
    parses_or_refuses(doc)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60), nodes.map(lambda n: yaml.safe_dump(n))))
def test_arbitrary_text_parses_or_is_refused(text):
    parses_or_refuses(text)
