"""The worker's side of keychain references: which entries a command needs, how they are put in,
and what the outcome must not carry."""

import pytest

from noetl_worker.keychain import KeychainUnavailable, fill


class Entries:
    """A keychain as the control plane would answer it (None: no such entry)."""

    def __init__(self, entries):
        self.entries = entries
        self.asked = []

    async def get_keychain(self, catalog_id, name, execution_id):
        self.asked.append((catalog_id, name, execution_id))
        return self.entries.get(name)


async def test_placeholders_are_filled_and_pipelines_see_the_keychain():
    source = Entries({"tok": {"access_token": "abcdefgh"}, "sa": {"type": "service_account", "key": "k" * 10}})
    context = {"tool_config": {"headers": {"Authorization": "Bearer {{ keychain.tok.access_token }}"}},
               "input": {"sa": "{{ keychain.sa }}", "n": 1},
               "pipeline": [{"url": "{{ keychain['gone'].url }}"}],
               "render_context": {"x": 1, "note": "{{ keychain.not_scanned }}"}}
    filled, secrets = await fill(context, "42", 7, source)
    assert filled["tool_config"]["headers"]["Authorization"] == "Bearer abcdefgh"
    assert filled["input"] == {"sa": {"type": "service_account", "key": "k" * 10}, "n": 1}
    assert filled["render_context"]["keychain"]["gone"] == {}  # missing: renders empty, as NoETL
    assert sorted(name for _, name, _ in source.asked) == ["gone", "sa", "tok"]
    assert all(c == 42 and e == 7 for c, _, e in source.asked)
    assert secrets == {"abcdefgh", "k" * 10}


async def test_a_command_without_references_asks_nothing():
    source = Entries({})
    context = {"tool_config": {"url": "http://x"}, "render_context": {"keychain_note": "{{ keychain.a }}"}}
    assert await fill(context, None, 7, source) == (context, frozenset())
    assert source.asked == []


async def test_references_without_a_catalog_id_fail_the_step_clearly():
    with pytest.raises(KeychainUnavailable, match="no catalog_id"):
        await fill({"input": {"k": "{{ keychain.tok.v }}"}}, "", 7, Entries({}))


class Minter(Entries):
    """Also mints tokens from credentials, as the control plane's /api/credentials/{name}/token."""

    def __init__(self, entries, fail=False):
        super().__init__(entries)
        self.minted, self.fail = [], fail

    async def mint_token(self, credential, audience=None):
        if self.fail:
            raise RuntimeError("provider said no")
        self.minted.append((credential, audience))
        return f"tok-{credential}-{audience or 'access'}"


async def test_token_placeholders_become_minted_tokens_kept_out_of_the_outcome():
    from noetl_common.keychain_refs import token_ref

    source = Minter({})
    context = {"tool_config": {"headers": {"Authorization": f"Bearer {token_ref('google_oauth')}"},
                               "aud": token_ref("sa", "https://svc/x")}}
    filled, secrets = await fill(context, None, 7, source)
    assert filled["tool_config"] == {"headers": {"Authorization": "Bearer tok-google_oauth-access"},
                                     "aud": "tok-sa-https://svc/x"}
    assert sorted(source.minted, key=str) == [("google_oauth", None), ("sa", "https://svc/x")]
    assert secrets == {"tok-google_oauth-access", "tok-sa-https://svc/x"} and source.asked == []
    with pytest.raises(KeychainUnavailable, match="token\\('google_oauth'\\) could not be minted"):
        await fill(context, None, 7, Minter({}, fail=True))
