"""Who may read decrypted secrets and run SQL without a token: NoETL's own worker and UI send
none, so a caller is trusted when any of these holds (anyone else gets 403):

- it carries the internal token (`Authorization: Bearer <token>`), as the fleet's workers do;
- it is a direct peer inside NOETL_TRUSTED_NETWORKS (CIDRs) and no proxy stands in between:
  a request carrying X-Forwarded-For, Forwarded or X-Real-IP came through a proxy, whose own
  address says nothing about the original client, so it is never trusted by address;
- it came through the router, which judged its own peer by the rule above and vouched for it
  with TRUST_HEADER set to the internal token (the router drops any client-supplied one first),
  so a client can neither forge the marker nor gain trust by writing a forwarded-for header.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from typing import Mapping, Sequence

from aiohttp import web

from .auth import bearer_matches
from .config import TRUSTED_NETWORKS_VAR, IPNetwork
from .errors import ApiError

TRUST_HEADER = "X-NoETL-Trusted-Client"
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def address_in(address: str | None, networks: Sequence[IPNetwork]) -> bool:
    if not address or not networks:
        return False
    return _address_in(address, tuple(networks))


# Asked on every request the router relays, for the few addresses its peers have: parsed once.
@functools.lru_cache(maxsize=4096)
def _address_in(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return False  # a unix socket peer or anything else that is not an IP address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


def proxied(headers: Mapping[str, str]) -> bool:
    return any(h in headers for h in PROXY_HEADERS)


def direct_peer_trusted(request: web.Request, networks: Sequence[IPNetwork]) -> bool:
    """The TCP peer is in `networks` and is the client itself (no proxy's forwarding header)."""
    return not proxied(request.headers) and address_in(request.remote, networks)


def vouched(request: web.Request, internal_token: str | None) -> bool:
    """The internal token, in Authorization or in the router's TRUST_HEADER."""
    if not internal_token:
        return False
    if bearer_matches(request.headers.get("Authorization"), internal_token):
        return True
    marker = request.headers.get(TRUST_HEADER)
    return marker is not None and hmac.compare_digest(marker.encode(), internal_token.encode())


def require_trusted(request: web.Request, internal_token: str | None, networks: Sequence[IPNetwork],
                    what: str) -> None:
    if vouched(request, internal_token) or direct_peer_trusted(request, networks):
        return
    if not internal_token and not networks:
        raise ApiError(503, f"{what} disabled: neither NOETL_INTERNAL_API_TOKEN nor {TRUSTED_NETWORKS_VAR} "
                            "is configured", "internal_auth_unconfigured")
    raise ApiError(403, f"{what} requires the internal token ('Authorization: Bearer <token>') or a caller "
                        f"in {TRUSTED_NETWORKS_VAR}", "forbidden")
