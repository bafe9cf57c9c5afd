"""`{{ keychain.<name>.<field> }}` in step templates.

The engine renders a step on the shard, and what it renders is stored in the command row and its
`command.issued` event. Keychain values must not end up there, so the engine renders a keychain
reference back to itself (`KeychainRef`, a placeholder that prints its own template text), and the
worker that runs the command puts the values in (`referenced_names`, `substitute`) right before the
tool runs. This is where NoETL resolves them too: its server stores the entries at execution start
and its worker reads them from the keychain API when it renders the step.
"""

from __future__ import annotations

import json
import re
from typing import Any

ROOT = "keychain"
# What KeychainRef prints: `{{ keychain.name }}` or `{{ keychain.name.field[.more] }}`.
PLACEHOLDER = re.compile(r"\{\{ keychain\.(\w+)((?:\.\w+)*) \}\}")
QUOTED = re.compile(r'"\{\{ keychain\.(\w+)((?:\.\w+)*) \}\}"')
# Any template mention of an entry, e.g. inside pipeline tasks the worker renders itself.
MENTION = re.compile(r"\bkeychain\s*\.\s*(\w+)|\bkeychain\s*\[\s*['\"](\w+)['\"]\s*\]")


# `{{ token(<credential>[, <audience>]) }}`, NoETL's template function for a bearer token minted
# from a credential (a Google service account's access token, or an ID token for an audience),
# renders to this text, and the worker asks the control plane for the token right before the tool
# runs: a token, like a keychain value, never passes through the engine or the event log.
TOKEN = re.compile(r"\{\{ token\('([^'{}]+)'(?:, '([^'{}]+)')?\) \}\}")


def token_ref(credential: Any, audience: Any = None) -> str:
    """What `token(...)` renders to on the shard: its own call, with the arguments evaluated."""
    args = [str(credential).replace("'", "")] + ([str(audience).replace("'", "")] if audience else [])
    return "{{ token(" + ", ".join(f"'{a}'" for a in args) + ") }}"


def token_requests(value: Any) -> set[tuple[str, str | None]]:
    """(credential, audience) of every token placeholder in a value."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(value, str):
        if "{{ token(" in value:
            found.update((m.group(1), m.group(2)) for m in TOKEN.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            found |= token_requests(item)
    elif isinstance(value, list):
        for item in value:
            found |= token_requests(item)
    return found


def substitute_tokens(value: Any, tokens: dict[tuple[str, str | None], str]) -> Any:
    if isinstance(value, str):
        if "{{ token(" not in value:
            return value
        return TOKEN.sub(lambda m: tokens.get((m.group(1), m.group(2)), ""), value)
    if isinstance(value, dict):
        return {k: substitute_tokens(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_tokens(v, tokens) for v in value]
    return value


class KeychainRef:
    """A path below `keychain` that renders as its own template text."""

    __slots__ = ("_path",)

    def __init__(self, path: str = ROOT) -> None:
        self._path = path

    def __getattr__(self, name: str) -> "KeychainRef":
        if name.startswith("__"):
            raise AttributeError(name)
        return KeychainRef(f"{self._path}.{name}")

    def __getitem__(self, name: Any) -> "KeychainRef":
        return KeychainRef(f"{self._path}.{name}")

    def __str__(self) -> str:
        return "{{ " + self._path + " }}"

    __repr__ = __str__


def referenced_names(value: Any) -> set[str]:
    """Names of the keychain entries a value mentions (placeholders or templates)."""
    names: set[str] = set()
    if isinstance(value, str):
        if "keychain" in value and "{" in value:
            names.update(a or b for a, b in MENTION.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            names |= referenced_names(item)
    elif isinstance(value, list):
        for item in value:
            names |= referenced_names(item)
    return names


def _lookup(entries: dict[str, Any], name: str, fields: str) -> Any:
    value: Any = entries.get(name)
    for field in filter(None, fields.split(".")):
        value = value.get(field) if isinstance(value, dict) else None
    return value


def substitute(value: Any, entries: dict[str, Any]) -> Any:
    """Put keychain values in for the placeholders the engine left. A string that is exactly one
    placeholder takes the value itself (a dict stays a dict); inside text the value is printed;
    a placeholder in double quotes (`| tojson`) becomes the value's JSON; a missing entry or field
    becomes "" (an undefined template variable does the same), or null when quoted."""
    if isinstance(value, str):
        if "{{ keychain." not in value:
            return value
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            found = _lookup(entries, whole.group(1), whole.group(2))
            return "" if found is None else found
        # `"<placeholder>"` is what `{{ keychain.x.y | tojson }}` renders: the value's JSON
        # (for a plain string the same text as before, for a mapping its JSON, not a quoted one)
        value = QUOTED.sub(lambda m: json.dumps(_lookup(entries, m.group(1), m.group(2))), value)
        return PLACEHOLDER.sub(lambda m: _text(_lookup(entries, m.group(1), m.group(2))), value)
    if isinstance(value, dict):
        return {k: substitute(v, entries) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, entries) for v in value]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


REDACTED = "[REDACTED]"
# Fields of keychain values that describe a token rather than being one; never redacted.
NOT_SECRET = frozenset({"token_type", "audience", "expires_in", "scope", "type", "state", "token_uri", "auth_uri",
                        "auth_provider_x509_cert_url", "client_x509_cert_url", "project_id", "client_email",
                        "universe_domain"})
MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would redact ordinary text


def secret_strings(entries: dict[str, Any]) -> frozenset[str]:
    """The string values of keychain entries that a step's outcome must not carry."""
    found: set[str] = set()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key not in NOT_SECRET and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)

    walk(entries, "")
    return frozenset(found)


def redact(value: Any, secrets: frozenset[str]) -> Any:
    """A copy of `value` with every occurrence of a secret replaced by [REDACTED] (NoETL's
    producer-side scrub, by value): what a step returns, prints or fails with goes into events."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
