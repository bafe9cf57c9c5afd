"""Keychain references: the engine renders them back to themselves, the worker fills them in."""

from noetl_common.dsl.templates import Renderer
from noetl_common.keychain_refs import KeychainRef, referenced_names, substitute


def test_engine_render_keeps_references_and_renders_the_rest():
    r = Renderer()
    ctx = {"keychain": KeychainRef(), "user": "ann"}
    out = r.render({"auth": "Bearer {{ keychain.tok.access_token }}", "id": "{{ keychain.creds.client_id }}",
                    "sa": "{{ keychain['gcp_sa'] }}", "who": "{{ user }}"}, ctx)
    assert out == {"auth": "Bearer {{ keychain.tok.access_token }}", "id": "{{ keychain.creds.client_id }}",
                   "sa": "{{ keychain.gcp_sa }}", "who": "ann"}


def test_substitute_fills_values_keeping_native_types():
    entries = {"tok": {"access_token": "S3"}, "sa": {"type": "service_account"}, "creds": {}}
    out = substitute({"a": "Bearer {{ keychain.tok.access_token }}", "b": ["{{ keychain.sa }}"],
                      "c": "{{ keychain.creds.client_id }}", "d": "x={{ keychain.missing.f }}", "e": 5}, entries)
    assert out == {"a": "Bearer S3", "b": [{"type": "service_account"}], "c": "", "d": "x=", "e": 5}


def test_referenced_names_finds_placeholders_and_templates():
    assert referenced_names({"h": {"Authorization": "Bearer {{ keychain.tok.access_token }}"},
                             "tasks": [{"url": "{{ keychain['other'].url }}"}], "n": 1, "t": "keychain.plain"}) \
        == {"tok", "other"}
    assert referenced_names("no refs {{ x }}") == set()
