import base64
import os

import pytest

from noetl_common.config import ConfigError
from noetl_common.crypto import DecryptionError, Encryptor, load_key

KEY = base64.b64encode(os.urandom(32)).decode()


def test_round_trip_and_no_plaintext_in_ciphertext():
    enc = Encryptor(load_key(KEY))
    token = enc.encrypt_json({"password": "hunter2-very-secret"}, b"cred:pg")
    assert "hunter2" not in token and "hunter2" not in base64.b64decode(token).decode("latin-1")
    assert enc.decrypt_json(token, b"cred:pg") == {"password": "hunter2-very-secret"}


def test_nonce_is_fresh_each_time():
    enc = Encryptor(load_key(KEY))
    assert enc.encrypt(b"same") != enc.encrypt(b"same")


def test_bound_to_associated_data_and_key():
    enc = Encryptor(load_key(KEY))
    token = enc.encrypt(b"secret", b"row-a")
    with pytest.raises(DecryptionError):
        enc.decrypt(token, b"row-b")
    with pytest.raises(DecryptionError):
        Encryptor(os.urandom(32)).decrypt(token, b"row-a")
    raw = base64.b64decode(token)
    tampered = base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()  # flipped: never the same byte
    with pytest.raises(DecryptionError):
        enc.decrypt(tampered, b"row-a")
    with pytest.raises(DecryptionError):
        enc.decrypt("not base64 !!", b"row-a")


@pytest.mark.parametrize("value", [None, "", "***", base64.b64encode(b"short").decode()])
def test_bad_keys_fail_clearly(value):
    with pytest.raises(ConfigError, match="NOETL_ENCRYPTION_KEY"):
        load_key(value)
