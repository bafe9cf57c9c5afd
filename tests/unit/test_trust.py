"""Trust by network: CIDR parsing and membership (noetl_common.trust, config.parse_networks)."""

from __future__ import annotations

import pytest

from noetl_common.config import ConfigError, ShardSettings, parse_networks
from noetl_common.trust import address_in, proxied


def test_parse_networks_reads_cidrs_and_bare_addresses():
    nets = parse_networks(" 10.0.0.0/8, 192.168.1.7 ,::1/128,")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    assert parse_networks(None) == () and parse_networks("") == ()


def test_a_bad_cidr_fails_start_up_naming_the_variable():
    with pytest.raises(ConfigError, match="NOETL_TRUSTED_NETWORKS.*'10.0.0.0/33'"):
        parse_networks("10.0.0.0/8,10.0.0.0/33")


@pytest.mark.parametrize("address, inside", [
    ("10.1.2.3", True), ("11.0.0.1", False), ("::ffff:10.1.2.3", True),  # IPv4 mapped in IPv6
    ("::1", True), ("fe80::1%eth0", False), ("", False), (None, False), ("/run/sock", False),
])
def test_address_in(address, inside):
    assert address_in(address, parse_networks("10.0.0.0/8,::1/128")) is inside


def test_no_network_trusts_nobody():
    assert not address_in("127.0.0.1", ())


def test_forwarding_headers_mark_a_proxied_request():
    assert proxied({"X-Forwarded-For": "1.2.3.4"}) and proxied({"Forwarded": "for=1.2.3.4"})
    assert not proxied({"Authorization": "Bearer x"})


def test_shard_settings_read_the_trusted_networks():
    env = {"NOETL_SHARD_DSN": "postgresql://x/y", "NOETL_CLUSTER_DSN": "postgresql://x/z",
           "NOETL_ENCRYPTION_KEY": "k", "NOETL_TRUSTED_NETWORKS": "127.0.0.0/8"}
    assert [str(n) for n in ShardSettings.from_env(env).trusted_networks] == ["127.0.0.0/8"]
