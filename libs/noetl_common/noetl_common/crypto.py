"""AES-256-GCM envelope for secrets at rest (credentials, keychain values).

Stored form: base64( 1 version byte | 12-byte nonce | ciphertext+tag ). The associated data binds a
ciphertext to its row (e.g. the credential name), so a blob copied to another row fails to open.
"""

from __future__ import annotations

import base64
import binascii
import os

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import ConfigError

_VERSION = 1
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """The ciphertext is corrupt, bound to another record, or was made with another key."""


def load_key(value: str | None, name: str = "NOETL_ENCRYPTION_KEY") -> bytes:
    if not value:
        raise ConfigError(f"{name} is required: base64 of 32 random bytes (e.g. `openssl rand -base64 32`)")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} is not valid base64") from None
    if len(key) != 32:
        raise ConfigError(f"{name} must decode to 32 bytes for AES-256, got {len(key)}")
    return key


class Encryptor:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, aad)
        return base64.b64encode(bytes([_VERSION]) + nonce + sealed).decode("ascii")

    def decrypt(self, token: str, aad: bytes = b"") -> bytes:
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("ciphertext is not valid base64") from None
        if len(raw) < 1 + _NONCE_BYTES + 16 or raw[0] != _VERSION:
            raise DecryptionError("ciphertext has an unknown format")
        try:
            return self._aead.decrypt(raw[1:1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication (wrong key or record)") from None

    def encrypt_json(self, value: object, aad: bytes = b"") -> str:
        return self.encrypt(msgspec.json.encode(value), aad)

    def decrypt_json(self, token: str, aad: bytes = b"") -> object:
        return msgspec.json.decode(self.decrypt(token, aad))
