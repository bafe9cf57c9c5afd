import pytest

from noetl_common.config import ConfigError, Env, ShardSettings, ordinal_from_hostname, replica_slice

BASE = {
    "NOETL_SHARD_DSN": "postgresql://x@h/s0",
    "NOETL_CLUSTER_DSN": "postgresql://x@h/c",
    "NOETL_ENCRYPTION_KEY": "k",
}


def test_defaults_single_shard():
    s = ShardSettings.from_env(BASE)
    assert (s.shard_index, s.shard_count, s.http.port, s.internal_token) == (0, 1, 8082, None)


def test_scaling_timing_and_advertised_url():
    s = ShardSettings.from_env(BASE)
    assert (s.epoch_grace_ms, s.map_refresh_seconds, s.advertise_url) == (10_000, 2.0, None)
    s = ShardSettings.from_env({**BASE, "NOETL_SHARD_EPOCH_GRACE_MS": "3000", "NOETL_SHARD_MAP_REFRESH_SECONDS": "1",
                                "NOETL_SERVER_URL": "http://router:8080", "NOETL_SHARD_COUNT": "3",
                                "NOETL_SHARD_INDEX": "2", "NOETL_SHARD_ADVERTISE_URL": "http://api-shard-{i}.api-shard:8082"})
    assert (s.epoch_grace_ms, s.map_refresh_seconds, s.advertise_url) == (3000, 1.0, "http://api-shard-2.api-shard:8082")
def test_event_result_limit_is_noetls_and_configurable():
    assert ShardSettings.from_env(BASE).event_result_max_bytes == 100 * 1024
    s = ShardSettings.from_env({**BASE, "NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES": "4096"})
    assert s.event_result_max_bytes == 4096


def test_statefulset_ordinal_is_the_shard_index():
    s = ShardSettings.from_env({**BASE, "NOETL_SHARD_COUNT": "4", "HOSTNAME": "api-shard-3"})
    assert s.shard_index == 3 and s.node_id == 3


@pytest.mark.parametrize(("extra", "names"), [
    ({"NOETL_SHARD_DSN": ""}, "NOETL_SHARD_DSN"),
    ({"NOETL_SHARD_COUNT": "two"}, "NOETL_SHARD_COUNT"),
    ({"NOETL_SHARD_COUNT": "0"}, "NOETL_SHARD_COUNT"),
    ({"NOETL_SHARD_COUNT": "3"}, "NOETL_SHARD_INDEX"),
    ({"NOETL_SHARD_COUNT": "2", "NOETL_SHARD_INDEX": "2"}, "NOETL_SHARD_INDEX"),
    ({"NOETL_HTTP_PORT": "70000"}, "NOETL_HTTP_PORT"),
    ({"NOETL_SNOWFLAKE_NODE_ID": "4096"}, "NOETL_SNOWFLAKE_NODE_ID"),
    ({"NOETL_SHARD_EPOCH_GRACE_MS": "4000"}, "NOETL_SHARD_MAP_REFRESH_SECONDS"),  # default refresh 2 s >= grace/2
    ({"NOETL_SHARD_MAP_REFRESH_SECONDS": "0"}, "NOETL_SHARD_MAP_REFRESH_SECONDS"),
    ({"NOETL_SHARD_EPOCH_GRACE_MS": "soon"}, "NOETL_SHARD_EPOCH_GRACE_MS"),
    ({"NOETL_SHARD_ADVERTISE_URL": "shard-0:8082"}, "NOETL_SHARD_ADVERTISE_URL"),
    ({"NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES": "10"}, "NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES"),
])
def test_bad_or_missing_variables_are_named(extra, names):
    with pytest.raises(ConfigError, match=names):
        ShardSettings.from_env({**BASE, **extra})


def test_env_bool():
    env = Env({"A": "yes", "B": "off", "C": "maybe"})
    assert env.bool("A", False) is True and env.bool("B", True) is False and env.bool("Z", True) is True
    with pytest.raises(ConfigError, match="C"):
        env.bool("C", False)


@pytest.mark.parametrize(("host", "ordinal"), [("api-shard-12", 12), ("projector-0", 0), ("laptop", None), (None, None)])
def test_ordinal_from_hostname(host, ordinal):
    assert ordinal_from_hostname(host) == ordinal


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1)),
    ({"NOETL_PROJECTOR_REPLICAS": "3", "HOSTNAME": "projector-2"}, (2, 3)),
    ({"NOETL_PROJECTOR_REPLICAS": "3", "NOETL_PROJECTOR_INDEX": "1", "HOSTNAME": "projector-2"}, (1, 3)),
    ({"NOETL_PROJECTOR_REPLICAS": "2", "HOSTNAME": "laptop"}, (0, 2)),
])
def test_replica_slice_from_index_or_ordinal(env, expected):
    assert replica_slice(Env(env), "NOETL_PROJECTOR") == expected


def test_replica_index_beyond_replicas_is_named():
    with pytest.raises(ConfigError, match="NOETL_PROJECTOR_INDEX"):
        replica_slice(Env({"NOETL_PROJECTOR_REPLICAS": "2", "NOETL_PROJECTOR_INDEX": "2"}), "NOETL_PROJECTOR")


def test_projector_serves_only_its_slice_of_shards():
    from noetl_projector.config import from_env

    settings = from_env({"NOETL_SHARD_URL_PATTERN": "http://api-shard-{i}.api-shard:8082", "NOETL_SHARD_COUNT": "5",
                         "NOETL_PROJECTOR_REPLICAS": "2", "HOSTNAME": "projector-1",
                         "NOETL_INTERNAL_API_TOKEN": "t", "NOETL_NATS_URL": "nats://n:4222"})
    assert settings.shard_urls == {1: "http://api-shard-1.api-shard:8082", 3: "http://api-shard-3.api-shard:8082"}
    with pytest.raises(ConfigError, match="NOETL_INTERNAL_API_TOKEN"):
        from_env({"NOETL_SHARD_URLS": "http://a:1", "NOETL_NATS_URL": "nats://n:4222"})


def test_keychain_provider_rewrites_and_renewal_margin():
    s = ShardSettings.from_env(BASE)
    assert (s.keychain_endpoints, s.keychain_renew_before_seconds) == ({}, 300.0)
    s = ShardSettings.from_env({**BASE, "NOETL_KEYCHAIN_ENDPOINTS": '{"https://oauth2.googleapis.com": "http://127.0.0.1:9/g"}',
                                "NOETL_KEYCHAIN_RENEW_BEFORE_SECONDS": "60"})
    assert (s.keychain_endpoints, s.keychain_renew_before_seconds) == (
        {"https://oauth2.googleapis.com": "http://127.0.0.1:9/g"}, 60.0)


@pytest.mark.parametrize("raw", ["not json", "[1]", '{"https://a": 1}', '{"ftp://a": "http://b"}'])
def test_bad_keychain_rewrites_are_named(raw):
    with pytest.raises(ConfigError, match="NOETL_KEYCHAIN_ENDPOINTS"):
        ShardSettings.from_env({**BASE, "NOETL_KEYCHAIN_ENDPOINTS": raw})
