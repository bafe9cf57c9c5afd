"""Router settings from the environment."""

from __future__ import annotations

import pytest

from noetl_common.config import ConfigError
from noetl_router.config import RouterSettings
from noetl_router.preview import preview
from noetl_common.errors import ApiError


def test_urls_list_and_defaults():
    s = RouterSettings.from_env({"NOETL_SHARD_URLS": "http://a:8082/, http://b:8082"})
    assert s.shard_urls == ("http://a:8082", "http://b:8082")
    assert s.http.port == 8080 and s.internal_token is None


def test_pattern_and_count():
    s = RouterSettings.from_env({"NOETL_SHARD_URL_PATTERN": "http://api-shard-{i}.api-shard:8082",
                                 "NOETL_SHARD_COUNT": "3", "NOETL_HTTP_PORT": "9000",
                                 "NOETL_INTERNAL_API_TOKEN": "t"})
    assert s.shard_urls[2] == "http://api-shard-2.api-shard:8082" and s.http.port == 9000
    assert s.internal_token == "t"


def test_a_pattern_alone_bootstraps_from_shard_0():
    # The rest of the fleet comes from the shard map; the pattern gives their URLs.
    s = RouterSettings.from_env({"NOETL_SHARD_URL_PATTERN": "http://api-shard-{i}.api-shard:8082"})
    assert s.shard_urls == ("http://api-shard-0.api-shard:8082",)
    assert s.shard_url_pattern == "http://api-shard-{i}.api-shard:8082"


@pytest.mark.parametrize("env,fragment", [
    ({}, "NOETL_SHARD_URLS"),
    ({"NOETL_SHARD_URLS": "http://a,"}, "empty entry"),
    ({"NOETL_SHARD_URLS": "a:8082"}, "http://"),
    ({"NOETL_SHARD_URL_PATTERN": "http://x"}, "{i}"),
    ({"NOETL_SHARD_URL_PATTERN": "x-{i}"}, "http://"),
    ({"NOETL_SHARD_URLS": "http://a", "NOETL_ROUTER_PROBE_INTERVAL_SECONDS": "0"}, "> 0"),
])
def test_bad_config_names_the_variable(env, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        RouterSettings.from_env(env)


@pytest.mark.parametrize("eid,n,expected", [(320816801799737344, 16, 14), (1, 4, 1), (42, 4, 3), (325, 8, 4),
                                            (2**63 - 1, 4, 0), (1, 1024, 405), (-1, 16, 9)])
def test_preview_matches_pinned_vectors(eid, n, expected):
    got = preview({"execution_id": str(eid), "shard_count": str(n)})
    assert got.shard_index == expected and got.source == "noetl-gateway" and got.seed == 0


@pytest.mark.parametrize("query,fragment", [
    ({"execution_id": "abc", "shard_count": "2"}, 'execution_id "abc" is not a valid i64'),
    ({"execution_id": "1", "shard_count": "0"}, "shard_count must be >= 1"),
    ({"execution_id": "1", "shard_count": "2000"}, "exceeds practical maximum 1024"),
    ({"execution_id": "1"}, "shard_count is required")])
def test_preview_errors(query, fragment):
    with pytest.raises(ApiError) as err:
        preview(query)
    assert err.value.status == 400 and fragment in err.value.message
