import pytest

from noetl_common.config import ConfigError, Env, ShardSettings, ordinal_from_hostname

BASE = {
    "NOETL_SHARD_DSN": "postgresql://x@h/s0",
    "NOETL_CLUSTER_DSN": "postgresql://x@h/c",
    "NOETL_ENCRYPTION_KEY": "k",
}


def test_defaults_single_shard():
    s = ShardSettings.from_env(BASE)
    assert (s.shard_index, s.shard_count, s.http.port, s.internal_token) == (0, 1, 8082, None)


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
