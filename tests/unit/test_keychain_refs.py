"""Keychain references: the engine renders them back to themselves, the worker fills them in."""

import json

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


def test_a_tojson_of_a_reference_becomes_the_values_json():
    # k8s_job_python_gcs: `GCP_SERVICE_ACCOUNT_JSON: "{{ keychain.gcp_sa.service_account_json | tojson }}"`
    rendered = Renderer().render({"env": "{{ keychain.gcp_sa.service_account_json | tojson }}"},
                                 {"keychain": KeychainRef()})
    sa = {"type": "service_account", "client_email": "a@b"}
    out = substitute(rendered, {"gcp_sa": {"service_account_json": sa}})
    assert json.loads(out["env"]) == sa
    assert substitute('x "{{ keychain.t.v }}"', {"t": {"v": "s3"}}) == 'x "s3"'


def test_referenced_names_finds_placeholders_and_templates():
    assert referenced_names({"h": {"Authorization": "Bearer {{ keychain.tok.access_token }}"},
                             "tasks": [{"url": "{{ keychain['other'].url }}"}], "n": 1, "t": "keychain.plain"}) \
        == {"tok", "other"}
    assert referenced_names("no refs {{ x }}") == set()


def test_secret_strings_skip_descriptive_fields_and_short_values():
    from noetl_common.keychain_refs import secret_strings

    entries = {"tok": {"access_token": "abcdefgh123", "token_type": "Bearer", "expires_in": 1799,
                       "audience": "https://svc.example"},
               "creds": {"client_id": "test-client", "pin": "1234"}, "sa": {"private_key": ["-----BEGIN KEY"]}}
    assert secret_strings(entries) == {"abcdefgh123", "test-client", "-----BEGIN KEY"}


def test_redact_replaces_exact_and_embedded_occurrences():
    from noetl_common.keychain_refs import REDACTED, redact

    secrets = frozenset({"abcdefgh123", "abcdefgh123456"})
    out = redact({"a": "abcdefgh123", "b": ["Bearer abcdefgh123456"], "c": 7, "d": None}, secrets)
    assert out == {"a": REDACTED, "b": [f"Bearer {REDACTED}"], "c": 7, "d": None}
    assert redact("plain", frozenset()) == "plain"


def test_references_inside_built_values_become_text():
    r = Renderer()
    out = r.render("{{ {'a': [keychain.t.v], 'b': keychain.u} }}", {"keychain": KeychainRef()})
    assert out == {"a": ["{{ keychain.t.v }}"], "b": "{{ keychain.u }}"}
    assert substitute(out, {"t": {"v": "S"}, "u": 3}) == {"a": ["S"], "b": 3}


def test_token_renders_to_its_own_call_for_the_worker_to_fill():
    from noetl_common.keychain_refs import substitute_tokens, token_ref, token_requests

    rendered = Renderer().render({"h": "Bearer {{ token(auth) }}", "i": "{{ token(auth, 'https://a/b') }}"},
                                 {"token": token_ref, "auth": "google_oauth"})
    assert rendered == {"h": "Bearer {{ token('google_oauth') }}", "i": "{{ token('google_oauth', 'https://a/b') }}"}
    assert token_requests(rendered) == {("google_oauth", None), ("google_oauth", "https://a/b")}
    assert substitute_tokens(rendered, {("google_oauth", None): "T"}) == {"h": "Bearer T", "i": ""}
