"""Reading `keychain:` sections and the timing rules (expiry, renewal) — pure logic."""

from datetime import datetime, timedelta, timezone

import pytest

from noetl_api_shard.keychain.declarations import KeychainError, expiry, parse, render_context, renewal_due

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_e2e_shapes_parse():
    decls = parse([
        {"name": "openai_token", "kind": "secrets", "provider": "gcp", "scope": "global", "auth": "{{ gcp_auth }}",
         "map": {"api_key": "{{ openai_secret_path }}"}},
        {"name": "amadeus_token", "kind": "oauth2", "scope": "global", "auto_renew": True,
         "endpoint": "https://test.api.amadeus.com/v1/security/oauth2/token", "method": "POST",
         "headers": {"Content-Type": "application/x-www-form-urlencoded"},
         "data": {"grant_type": "client_credentials"}},
        {"name": "google_oauth", "type": "google_oauth", "ref": "google_oauth"},
        {"name": "gcp_sa", "kind": "credential", "scope": "local", "credential": "gcs_service_account"},
        {"name": "id_tok", "kind": "google_id_token", "auto_renew": True, "service_account_credential": "sa",
         "target_audience": "https://svc"},
        {"name": "b", "kind": "bearer", "token": "{{ openai_key }}"},
        {"name": "s", "kind": "static", "map": {"client_id": "x"}},
    ])
    assert [d.kind for d in decls] == ["secret_manager", "oauth2", "credential", "credential", "google_id_token",
                                       "bearer", "static"]
    assert decls[0].spec == {"provider": "gcp", "auth": "{{ gcp_auth }}", "map": {"api_key": "{{ openai_secret_path }}"}}
    assert decls[1].auto_renew and decls[1].credential_type == "oauth2_client_credentials"
    assert decls[1].cache_type == "token" and decls[0].cache_type == "secret"
    assert decls[2].credential_type == "google_oauth" and decls[3].scope == "local"


@pytest.mark.parametrize("section, fragment", [
    ("nope", "keychain must be a list"),
    (["x"], "keychain[0] must be a mapping"),
    ([{"kind": "bearer", "token": "t"}], "keychain[0].name"),
    ([{"name": "a b", "kind": "bearer", "token": "t"}], "keychain[0].name"),
    ([{"name": "a", "kind": "vault"}], "keychain[0].kind"),
    ([{"name": "a", "kind": "bearer", "token": "t"}, {"name": "a", "kind": "bearer", "token": "t"}], "twice"),
    ([{"name": "a", "kind": "bearer", "token": "t", "scope": "planet"}], "keychain[0].scope"),
    ([{"name": "a", "kind": "bearer", "token": "t", "auto_renew": "yes"}], "keychain[0].auto_renew"),
    ([{"name": "a", "kind": "bearer", "token": "t", "ttl_seconds": 0}], "keychain[0].ttl_seconds"),
    ([{"name": "a", "kind": "bearer"}], "keychain[0].token is required"),
    ([{"name": "a", "kind": "oauth2"}], "keychain[0].endpoint is required"),
    ([{"name": "a", "kind": "oauth2", "endpoint": "u", "data": "x"}], "keychain[0].data must be a mapping"),
    ([{"name": "a", "kind": "secrets", "auth": "g"}], "keychain[0].map is required"),
    ([{"name": "a", "kind": "secrets", "auth": "g", "map": {"k": "p"}, "provider": "aws"}], "provider 'aws'"),
    ([{"name": "a", "kind": "google_id_token", "target_audience": "x"}], "exactly one of"),
    ([{"name": "a", "kind": "google_id_token", "target_audience": "x", "service_account_secret": "p"}],
     "keychain[0].auth is required"),
])
def test_bad_sections_name_the_field(section, fragment):
    with pytest.raises(KeychainError, match=None) as info:
        parse(section)
    assert fragment in str(info.value)


def test_expiry_prefers_entry_ttl_then_provider_then_scope_default():
    [decl] = parse([{"name": "t", "kind": "bearer", "token": "x"}])
    [ttl] = parse([{"name": "t", "kind": "bearer", "token": "x", "ttl_seconds": 60}])
    [local] = parse([{"name": "t", "kind": "bearer", "token": "x", "scope": "local"}])
    assert expiry(ttl, {"expires_in": 10}, NOW) == NOW + timedelta(seconds=60)
    assert expiry(decl, {"expires_in": 10}, NOW) == NOW + timedelta(seconds=10)
    assert expiry(decl, {"expires_in": "1799"}, NOW) == NOW + timedelta(seconds=1799)
    assert expiry(decl, {"expires_in": "soon"}, NOW) == NOW + timedelta(days=1)
    assert expiry(decl, {}, NOW) == NOW + timedelta(days=1)
    assert expiry(local, {}, NOW) == NOW + timedelta(hours=1)


def test_renewal_due_inside_the_margin_or_after_expiry():
    assert not renewal_due(None, NOW, 300)
    assert not renewal_due(NOW + timedelta(seconds=301), NOW, 300)
    assert renewal_due(NOW + timedelta(seconds=299), NOW, 300)
    assert renewal_due(NOW - timedelta(seconds=1), NOW, 300)


def test_render_context_is_noetls():
    ctx = render_context({"gcp_auth": "g"}, {"creds": {"client_id": "c"}})
    assert ctx["gcp_auth"] == "g" and ctx["workload"] == {"gcp_auth": "g"} and ctx["keychain"]["creds"]["client_id"] == "c"


def test_provider_urls_are_rewritten_by_longest_prefix():
    from noetl_api_shard.keychain.providers import Endpoints

    e = Endpoints({"https://a.example": "http://127.0.0.1:1", "https://a.example/deep": "http://127.0.0.1:2/d"})
    assert e.url("https://a.example/token") == "http://127.0.0.1:1/token"
    assert e.url("https://a.example/deep/x") == "http://127.0.0.1:2/d/x"
    assert e.url("https://other/x") == "https://other/x"
