"""A playbook's `keychain:` resolved when its execution starts, against the test API's stand-ins
for an OAuth2 server, Google's token endpoint and GCP Secret Manager, on a real fleet: steps get
the values, commands and events carry only references, auto_renew entries are fetched again when
read, and a keychain that cannot be resolved stops the start with an answer naming the entry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import aiohttp

from noetl_devstack.processes import Supervisor
from tests.support.testapi.process import start_test_api

from .conftest import own_fleet, register, wait_terminal

# The e2e snapshot sits next to the checkout (../shared/e2e), also from a worktree further down.
E2E = next(p / "shared" / "e2e" / "fixtures" / "playbooks" for p in Path(__file__).resolve().parents
           if (p / "shared" / "e2e").is_dir())

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: keychain_all, path: tests/keychain_all}
workload:
  api: ""
  gcp_auth: kc_gcp
  client_id: test-client
keychain:
  - name: creds
    kind: static
    map: {client_id: "{{ client_id }}", client_secret: "{{ client_secret }}"}
  - name: tok
    kind: oauth2
    auto_renew: true
    endpoint: "https://auth.example.test/oauth2/token?expires_in=1"
    headers: {Content-Type: application/x-www-form-urlencoded}
    data:
      grant_type: client_credentials
      client_id: "{{ keychain.creds.client_id }}"
      client_secret: "{{ keychain.creds.client_secret }}"
  - name: openai
    kind: secrets
    provider: gcp
    auth: "{{ gcp_auth }}"
    map: {api_key: projects/p/secrets/openai/versions/1}
  - name: idtok
    kind: google_id_token
    auto_renew: true
    service_account_credential: kc_sa
    target_audience: https://svc.example.test
  - name: idtok_sm
    kind: google_id_token
    auth: "{{ gcp_auth }}"
    service_account_secret: projects/p/secrets/sa/versions/latest
    target_audience: https://svc2.example.test
  - name: plain
    kind: credential
    scope: local
    credential: kc_plain
workflow:
  - step: start
    tool:
      kind: http
      method: GET
      url: "{{ api }}/gcp-sm/v1/projects/p/secrets/check/versions/1:access"
      headers: {Authorization: "Bearer {{ keychain.tok.access_token }}"}
    next: [{step: show}]
  - step: show
    tool:
      kind: python
      input:
        api_key: "{{ keychain.openai.api_key }}"
        id_token: "{{ keychain.idtok.id_token }}"
        sm_token: "Bearer {{ keychain.idtok_sm.id_token }}"
        password: "{{ keychain.plain.password }}"
        checked: "{{ start.data.name }}"
      code: |
        # No literal of a secret here: the code is part of the command, which is logged.
        import base64, json
        def aud(jwt):
            body = jwt.split(".")[1]
            return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["aud"]
        result = {"api_key": api_key == "sk-" + "test", "id_token": aud(id_token) == "https://svc.example.test",
                  "sm_token": aud(sm_token.split(" ")[1]) == "https://svc2.example.test",
                  "password": password == "pw-" + "plain", "checked": checked}
    next: [{step: leak}]
  - step: leak
    tool:
      kind: python
      input: {api_key: "{{ keychain.openai.api_key }}"}
      code: |
        print("the key is", api_key)
        result = {"echoed": api_key, "embedded": "key=" + api_key}
    next: [{step: end}]
  - step: end
    tool: {kind: noop}
"""

SECRETS = ["sk-test", "pw-plain", "oauth-"]  # and the ID tokens minted (test-secret is the caller's own workload)


async def _seed(http: aiohttp.ClientSession, router: str, api: str) -> None:
    async with http.get(f"{api}/google/service-account") as r:
        sa = await r.json()
    async with http.put(f"{api}/gcp-sm/_seed", json={"projects/p/secrets/openai/versions/1": "sk-test",
                                                     "projects/p/secrets/sa/versions/latest": sa,
                                                     "projects/p/secrets/check/versions/1": "ok"}) as r:
        assert r.status == 200
    for name, type_, data in (("kc_gcp", "google_service_account", sa), ("kc_sa", "google_service_account", sa),
                              ("kc_plain", "generic", {"password": "pw-plain"})):
        async with http.post(f"{router}/api/credentials", json={"name": name, "type": type_, "data": data}) as r:
            assert r.status in (200, 201), await r.text()


async def test_keychain_resolved_at_start_reaches_steps_and_stays_out_of_the_log(http):
    with tempfile.TemporaryDirectory(prefix="noetl-kc-api-") as tmp:
        api_sup = Supervisor(Path(tmp))
        try:
            api = await start_test_api(api_sup)
            endpoints = {"https://auth.example.test": api, "https://test.api.amadeus.com": api,
                         "https://secretmanager.googleapis.com": f"{api}/gcp-sm"}
            async with own_fleet("noetl-keychain-", 1, workers=1,
                                 extra_env={"NOETL_KEYCHAIN_ENDPOINTS": json.dumps(endpoints)}) as fleet:
                await _seed(http, fleet.router, api)
                catalog_id = (await register(http, fleet.router, PLAYBOOK))["catalog_id"]
                await _runs_with_values_out_of_the_log(http, fleet.router, api, catalog_id)
                await _auto_renew_fetches_again_on_read(http, fleet.router, api, catalog_id)
                await _unresolvable_keychain_refuses_the_start(http, fleet.router)
                await _e2e_test_keychain_playbook(http, fleet.router)
        finally:
            api_sup.stop_all()


async def _runs_with_values_out_of_the_log(http, router: str, api: str, catalog_id: str) -> None:
    async with http.post(f"{router}/api/execute", json={
            "path": "tests/keychain_all", "workload": {"api": api, "client_secret": "test-secret"}}) as r:
        body = await r.json()
        assert r.status == 200, body
    execution_id = body["execution_id"]
    status = await wait_terminal(http, router, execution_id)
    assert status["status"] == "COMPLETED", status
    async with http.get(f"{router}/api/executions/{execution_id}") as r:
        execution = await r.json()
    events = execution["events"]
    shown = next(e for e in events if e.get("node_name") == "show" and e["event_type"] == "call.done")
    result = json.dumps(shown)
    for check in ("api_key", "id_token", "sm_token", "password"):
        assert f'"{check}": true' in result, result
    assert '"checked": "projects/p/secrets/check/versions/1"' in result  # the bearer token was accepted
    leaked = next(e for e in events if e.get("node_name") == "leak" and e["event_type"] == "call.done")
    assert '"echoed": "[REDACTED]"' in json.dumps(leaked) and '"embedded": "key=[REDACTED]"' in json.dumps(leaked)
    issued = [e for e in events if e["event_type"] == "command.issued"]
    assert any("{{ keychain.tok.access_token }}" in json.dumps(e) for e in issued)
    log_text = json.dumps(events)
    minted = []
    for name, field in (("tok", "access_token"), ("idtok", "id_token"), ("idtok_sm", "id_token")):
        async with http.get(f"{router}/api/keychain/{catalog_id}/{name}") as r:
            minted.append((await r.json())["token_data"][field])
    for secret in SECRETS + minted[1:]:  # tok is renewed on that read: its new value was never used
        at = log_text.find(secret)
        assert at < 0, f"{secret!r} is in the event log: {log_text[max(0, at - 700):at + 100]}"
    async with http.get(f"{router}/api/keychain/catalog/{catalog_id}") as r:
        listing = await r.json()
    scopes = {e["keychain_name"]: e["scope_type"] for e in listing["entries"]}
    assert scopes == {"creds": "global", "tok": "global", "openai": "global", "idtok": "global",
                      "idtok_sm": "global", "plain": "local"}


async def _auto_renew_fetches_again_on_read(http, router: str, api: str, catalog_id: str) -> None:
    """`tok` came with expires_in=1, inside the renewal margin: each read fetches a new token.
    `openai` has no auto_renew and is served as stored."""
    tokens = []
    for _ in range(2):
        async with http.get(f"{router}/api/keychain/{catalog_id}/tok") as r:
            entry = await r.json()
        assert entry["status"] == "success" and entry["auto_renew"], entry
        tokens.append(entry["token_data"]["access_token"])
    assert tokens[0] != tokens[1] and all(t.startswith("oauth-") for t in tokens)
    async with http.get(f"{router}/api/keychain/{catalog_id}/tok") as r:
        renewed = await r.json()
    assert renewed["renew_config"]["data"]["client_secret"] == "test-secret"  # rendered when stored
    async with http.get(f"{api}/_requests") as r:
        assert (await r.json())["/oauth2/token"] >= 4
    # An entry stored through the API with NoETL's renew_config shape (an OAuth2 request) renews too.
    async with http.post(f"{router}/api/keychain/{catalog_id}/external", json={
            "token_data": {"access_token": "stale"}, "expires_at": "2020-01-01T00:00:00Z", "auto_renew": True,
            "renew_config": {"endpoint": "https://auth.example.test/oauth2/token", "method": "POST",
                             "data": {"grant_type": "client_credentials", "client_id": "test-client",
                                      "client_secret": "test-secret"}}}) as r:
        assert r.status == 200, await r.text()
    async with http.get(f"{router}/api/keychain/{catalog_id}/external") as r:
        entry = await r.json()
    assert entry["status"] == "success" and entry["token_data"]["access_token"].startswith("oauth-"), entry
    assert entry["ttl_seconds"] > 1000  # the provider's expires_in (1799)


async def _unresolvable_keychain_refuses_the_start(http, router: str) -> None:
    bad_secret = PLAYBOOK.replace("path: tests/keychain_all", "path: tests/keychain_bad")
    await register(http, router, bad_secret)
    async with http.post(f"{router}/api/execute", json={
            "path": "tests/keychain_bad", "workload": {"client_secret": "wrong"}}) as r:
        body = await r.json()
        assert r.status == 502, body
    assert "keychain entry 'tok'" in json.dumps(body) and "401" in json.dumps(body)
    assert "wrong" not in json.dumps(body)
    bad_decl = PLAYBOOK.replace("path: tests/keychain_all", "path: tests/keychain_bad_decl").replace(
        "kind: static", "kind: vault")
    await register(http, router, bad_decl)
    async with http.post(f"{router}/api/execute", json={"path": "tests/keychain_bad_decl"}) as r:
        body = await r.json()
        assert r.status == 422, body
    assert "keychain[0].kind" in json.dumps(body)


async def _e2e_test_keychain_playbook(http, router: str) -> None:
    """NoETL's root_scripts/test_keychain.yaml as written; its Amadeus token endpoint is the stand-in."""
    registered = await register(http, router, (E2E / "root_scripts" / "test_keychain.yaml").read_text())
    async with http.post(f"{router}/api/execute", json={
            "path": registered["path"], "workload": {"openai_key": "sk-open", "amadeus_client_id": "test-client",
                                                     "amadeus_client_secret": "test-secret"}}) as r:
        body = await r.json()
        assert r.status == 200, body
    status = await wait_terminal(http, router, body["execution_id"])
    assert status["status"] == "COMPLETED", status
    async with http.get(f"{router}/api/keychain/{registered['catalog_id']}/amadeus_token") as r:
        entry = await r.json()
    assert entry["token_data"]["access_token"].startswith("oauth-"), entry
    assert entry["credential_type"] == "oauth2_client_credentials"
