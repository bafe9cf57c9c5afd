"""Keychain values for one command, read from the control plane right before its tool runs.

The shard renders `{{ keychain.<name>.<field> }}` back to itself (noetl_common.keychain_refs), so
commands and their events carry only references; the values are read here, per command, from
`GET /api/keychain/{catalog_id}/{name}` (which renews an auto_renew entry about to expire) and
never leave this process except as what the tool sends."""

from __future__ import annotations

from typing import Any

from noetl_common.keychain_refs import (ROOT, referenced_names, secret_strings, substitute, substitute_tokens,
                                       token_requests)

from .tools.base import CredentialSource


class KeychainUnavailable(Exception):
    """The command names keychain entries but they cannot be read."""


async def fill(context: dict[str, Any], catalog_id: Any, execution_id: int,
               source: CredentialSource) -> tuple[dict[str, Any], frozenset[str]]:
    """The command context with its keychain references replaced by their values (pipeline tasks,
    which the worker renders itself, also find the entries under `keychain` in their scope), and
    the secret strings the outcome must not carry. An entry that is not there renders empty, as in
    NoETL."""
    # The scope of a pipeline (render_context) is data, not templates: not scanned.
    scanned = {k: v for k, v in context.items() if k != "render_context"}
    context, minted = await _tokens(context, token_requests(scanned), source)
    names = referenced_names(scanned)
    if not names:
        return context, minted
    try:
        catalog = int(catalog_id)
    except (TypeError, ValueError):
        raise KeychainUnavailable(f"the command names keychain entries ({', '.join(sorted(names))}) "
                                  "but carries no catalog_id to read them with") from None
    entries: dict[str, Any] = {}
    for name in sorted(names):
        try:
            entries[name] = await source.get_keychain(catalog, name, execution_id) or {}
        except Exception as exc:
            raise KeychainUnavailable(f"keychain entry {name!r} could not be read: {exc}") from None
    filled: dict[str, Any] = substitute(context, entries)
    scope = filled.get("render_context")
    if isinstance(scope, dict):
        filled["render_context"] = {**scope, ROOT: entries}
    return filled, secret_strings(entries) | minted


async def _tokens(context: dict[str, Any], wanted: set[tuple[str, str | None]],
                  source: CredentialSource) -> tuple[dict[str, Any], frozenset[str]]:
    """`token(<credential>[, audience])` placeholders replaced by tokens the control plane mints."""
    if not wanted:
        return context, frozenset()
    tokens: dict[tuple[str, str | None], str] = {}
    for credential, audience in sorted(wanted, key=str):
        try:
            tokens[(credential, audience)] = await source.mint_token(credential, audience)
        except Exception as exc:
            raise KeychainUnavailable(f"token({credential!r}) could not be minted: {exc}") from None
    return substitute_tokens(context, tokens), frozenset(tokens.values())
