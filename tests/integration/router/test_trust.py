"""Secrets without a token, through the router: trusted by the router's own peer address only.
The shards here trust no network themselves (NOETL_TRUSTED_NETWORKS unset), so a 200 without a
token can only come from the router vouching; a forwarded-for header can never earn it."""

from __future__ import annotations

import ipaddress

import pytest

from noetl_common.trust import TRUST_HEADER

from .conftest import INTERNAL_TOKEN, another_router

SECRET = "trust-s3cret"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
ELSEWHERE = (ipaddress.ip_network("10.255.255.0/24"),)  # excludes the test's own address


@pytest.fixture
async def secret(fleet, http):
    async with http.post(f"{fleet.router_url}/api/credentials",
                         json={"name": "trust_pg", "type": "postgres", "data": {"password": SECRET}}) as r:
        assert r.status == 200, await r.text()


async def read(http, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with http.get(f"{url}/api/credentials/trust_pg", params={"include_data": "true"},
                        headers=headers or {}) as r:
        return r.status, await r.text()


async def test_a_caller_in_the_trusted_networks_reads_secrets_without_a_token(fleet, http, secret):
    async with another_router(fleet, trusted_networks=LOOPBACK) as url:
        status, text = await read(http, url)
        assert status == 200 and SECRET in text


async def test_a_caller_outside_is_refused_whatever_it_claims(fleet, http, secret):
    async with another_router(fleet, trusted_networks=ELSEWHERE) as url:
        for spoof in ({}, {"X-Forwarded-For": "10.255.255.7"}, {"X-Real-IP": "10.255.255.7"},
                      {"Forwarded": "for=10.255.255.7"}, {TRUST_HEADER: "1"}, {TRUST_HEADER: "yes, trust me"}):
            status, text = await read(http, url, spoof)
            assert status == 403 and SECRET not in text, spoof
            assert "NOETL_TRUSTED_NETWORKS" in text
        # The token still opens it from anywhere.
        status, text = await read(http, url, {"Authorization": f"Bearer {INTERNAL_TOKEN}"})
        assert status == 200 and SECRET in text


async def test_a_proxied_request_is_not_trusted_by_the_proxys_address(fleet, http, secret):
    # A proxy in the trusted network (an ingress controller) relays everybody: its address
    # vouches for nobody, so a request bearing forwarding headers is judged untrusted.
    async with another_router(fleet, trusted_networks=LOOPBACK) as url:
        status, text = await read(http, url, {"X-Forwarded-For": "127.0.0.1"})
        assert status == 403 and SECRET not in text


async def test_the_default_router_trusts_no_network(fleet, http, secret):
    status, text = await read(http, fleet.router_url)
    assert status == 403 and SECRET not in text
