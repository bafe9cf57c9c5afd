"""The CREATE SECRET statements the duckdb tool makes from credentials (pure formatting)."""

from __future__ import annotations

import pytest

from noetl_worker.tools.base import ToolError
from noetl_worker.tools.duckdb_setup import _secret, bundled_extensions


def test_an_hmac_key_with_a_local_endpoint_becomes_a_path_style_gcs_secret():
    sql, hidden = _secret("gcs_secret", "gcs", {"key_id": "K", "secret_key": "it's", "endpoint": "http://127.0.0.1:9/gcs-xml/"},
                          "gs://b")
    assert sql == ("CREATE OR REPLACE SECRET gcs_secret (TYPE gcs, KEY_ID 'K', SECRET 'it''s', "
                   "ENDPOINT '127.0.0.1:9/gcs-xml', URL_STYLE 'path', USE_SSL false, SCOPE 'gs://b')")
    assert hidden == ["it's"]


def test_a_postgres_credential_becomes_a_postgres_secret_and_gcs_keeps_its_own_endpoint():
    sql, hidden = _secret("pg_db", "postgres", {"db_host": "h", "db_port": 5432, "db_user": "u", "db_password": "p",
                                                "db_name": "d"}, None)
    assert sql == ("CREATE OR REPLACE SECRET pg_db (TYPE postgres, HOST 'h', PORT '5432', DATABASE 'd', USER 'u', "
                   "PASSWORD 'p')") and hidden == ["p"]
    assert "ENDPOINT" not in _secret("g", "gcs", {"key_id": "K", "secret": "S"}, None)[0]


@pytest.mark.parametrize("alias,data,message", [
    ("g", {"key_id": "K"}, "key_id and secret_key"),
    ("bad alias;", {"key_id": "K", "secret_key": "S"}, "letters, digits"),
])
def test_refused_auth_says_what_is_wrong(alias, data, message):
    with pytest.raises(ToolError, match=message):
        _secret(alias, "gcs", data, None)


def test_the_worker_ships_httpfs_postgres_and_ducklake():
    assert set(bundled_extensions()) == {"httpfs", "postgres", "ducklake"}
