"""Typed settings read from environment variables.

A missing or malformed variable fails start-up with a message naming it, never later at
first use.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import re
from typing import Mapping

import msgspec


class ConfigError(Exception):
    """Start-up configuration is missing or malformed; the message names the variable."""


class Env:
    """Typed accessors over an environment mapping (passed in, so tests need no monkeypatching)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return value if value not in (None, "") else None

    def str(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return default
        return value

    def optional(self, name: builtins.str) -> builtins.str | None:
        return self.raw(name)

    def int(self, name: builtins.str, default: builtins.int | None = None, *, minimum: builtins.int | None = None,
            maximum: builtins.int | None = None) -> builtins.int:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return default
        try:
            result = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if minimum is not None and result < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {result}")
        if maximum is not None and result > maximum:
            raise ConfigError(f"{name} must be <= {maximum}, got {result}")
        return result

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be a boolean (true/false), got {value!r}")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Callers in these networks may read secrets and run SQL without a token (noetl_common.trust).
TRUSTED_NETWORKS_VAR = "NOETL_TRUSTED_NETWORKS"
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"  # what `make run` trusts: its own machine


def parse_networks(raw: str | None, name: str = TRUSTED_NETWORKS_VAR) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); empty trusts no network."""
    networks: list[IPNetwork] = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not a CIDR (e.g. 10.0.0.0/8) or an address") from None
    return tuple(networks)


def trusted_networks(env: Env) -> tuple[IPNetwork, ...]:
    return parse_networks(env.optional(TRUSTED_NETWORKS_VAR))



_ORDINAL = re.compile(r"-(\d+)$")


def ordinal_from_hostname(hostname: str | None) -> int | None:
    """StatefulSet pods are named <name>-<ordinal>; that ordinal is the shard / replica index."""
    if not hostname:
        return None
    match = _ORDINAL.search(hostname)
    return int(match.group(1)) if match else None


class HttpSettings(msgspec.Struct, frozen=True):
    host: str
    port: int
    max_body_bytes: int
    request_timeout_seconds: float = 60.0
    max_in_flight: int = 512

    @classmethod
    def from_env(cls, env: Env, default_port: int) -> "HttpSettings":
        return cls(
            host=env.str("NOETL_HTTP_HOST", "0.0.0.0"),
            port=env.int("NOETL_HTTP_PORT", default_port, minimum=0, maximum=65535),
            # NoETL's server takes event batches up to 64 MiB (a worker's large result in one
            # call.done); the shard then keeps such a result in its result store, by reference.
            max_body_bytes=env.int("NOETL_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024),
            request_timeout_seconds=env.float("NOETL_REQUEST_TIMEOUT_SECONDS", 60.0),
            max_in_flight=env.int("NOETL_MAX_IN_FLIGHT", 512, minimum=1),
        )


class ShardSettings(msgspec.Struct, frozen=True):
    """Settings of one api-shard process."""

    shard_index: int
    shard_count: int
    shard_dsn: str
    cluster_dsn: str
    encryption_key: str
    internal_token: str | None
    http: HttpSettings
    node_id: int
    pool_min: int
    pool_max: int
    log_level: str
    pool_acquire_timeout: float = 5.0  # then 503 pool_saturated
    claim_lease_seconds: float = 120.0
    reaper_interval_seconds: float = 5.0
    unclaimed_after_seconds: float = 30.0
    public_url: str | None = None  # base URL workers should call (the router), put in notifications
    # NoETL's command-subject sharding of the `system` pool (noetl_common.pools.command_subject).
    shard_subject_route: bool = False
    command_shard_count: int = 1
    # Scaling: epochs start this long after they are committed, and every shard mints only ids
    # stamped within it of its last map confirmation; the map is reloaded at least this often.
    epoch_grace_ms: int = 10_000
    map_refresh_seconds: float = 2.0
    advertise_url: str | None = None  # where the router, publisher and projector reach this shard
    # NoETL's NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES: a worker's result larger than this is put in the
    # result store and the event logs a reference to it.
    event_result_max_bytes: int = 100 * 1024
    # Bodies over event_result_max_bytes in flight at once, in bytes (noetl_api_shard.large_writes).
    large_write_bytes: int = 32 * 1024 * 1024
    trusted_networks: tuple[IPNetwork, ...] = ()  # NOETL_TRUSTED_NETWORKS (noetl_common.trust)
    # Keychain: provider URL prefix -> replacement (a stand-in or proxy answers instead), and how
    # long before expiry an auto_renew entry is fetched again when read (NoETL's worker: 300 s).
    keychain_endpoints: dict[str, str] = {}
    keychain_renew_before_seconds: float = 300.0
    # NATS, for announcing a command right after its commit (the outbox relay stays the guarantee).
    nats_url: str | None = None
    # History: per-execution tables are partitioned in slices of execution ids this long, created
    # this many slices ahead; retention (0: keep forever) removes whole slices whose executions all
    # finished longer ago than their path's days; with archive_dir they are written there first.
    partition_slice_hours: float = 168.0
    partition_ahead: int = 2
    retention_days: float = 0.0
    retention_path_days: dict[str, float] = {}
    retention_interval_seconds: float = 3600.0
    archive_dir: str | None = None
    # The longest a changeable cluster row (a path's latest catalog entry, a credential) is served
    # from the shard's cache (store.cluster_cache); changes reach it sooner by notification. 0: off.
    cluster_cache_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ShardSettings":
        env = Env(environ)
        count = env.int("NOETL_SHARD_COUNT", 1, minimum=1, maximum=1024)
        index_raw = env.optional("NOETL_SHARD_INDEX")
        if index_raw is not None:
            index = env.int("NOETL_SHARD_INDEX", minimum=0)
        else:
            ordinal = ordinal_from_hostname(env.optional("HOSTNAME"))
            if ordinal is None and count > 1:
                raise ConfigError(
                    "NOETL_SHARD_INDEX is required when NOETL_SHARD_COUNT > 1 "
                    "(or run as a StatefulSet pod whose HOSTNAME ends in -<ordinal>)")
            index = ordinal or 0
        if index >= count:
            raise ConfigError(f"NOETL_SHARD_INDEX {index} must be < NOETL_SHARD_COUNT {count}")
        grace_ms, refresh = epoch_timing(env)
        # NOETL_SERVER_URL is the shard's own URL locally; in Kubernetes it names the router, so
        # the pod's own address goes in NOETL_SHARD_ADVERTISE_URL ({i} becomes the index).
        advertise = env.optional("NOETL_SHARD_ADVERTISE_URL") or env.optional("NOETL_SERVER_URL")
        if advertise and not advertise.startswith(("http://", "https://")):
            raise ConfigError(f"NOETL_SHARD_ADVERTISE_URL must start with http:// or https://, got {advertise!r}")
        return cls(
            shard_index=index,
            shard_count=count,
            shard_dsn=env.str("NOETL_SHARD_DSN"),
            cluster_dsn=env.str("NOETL_CLUSTER_DSN"),
            encryption_key=env.str("NOETL_ENCRYPTION_KEY"),
            internal_token=env.optional("NOETL_INTERNAL_API_TOKEN"),
            http=HttpSettings.from_env(env, default_port=8082),
            node_id=env.int("NOETL_SNOWFLAKE_NODE_ID", index, minimum=0, maximum=1023),
            pool_min=env.int("NOETL_DB_POOL_MIN", 2, minimum=0),
            pool_max=env.int("NOETL_DB_POOL_MAX", 10, minimum=1),
            log_level=env.str("NOETL_LOG_LEVEL", "INFO").upper(),
            pool_acquire_timeout=env.float("NOETL_DB_POOL_ACQUIRE_TIMEOUT_SECONDS", 5.0),
            claim_lease_seconds=env.float("NOETL_COMMAND_CLAIM_LEASE_SECONDS", 120.0),
            reaper_interval_seconds=env.float("NOETL_COMMAND_REAPER_INTERVAL_SECONDS", 5.0),
            unclaimed_after_seconds=env.float("NOETL_COMMAND_REPUBLISH_AFTER_SECONDS", 30.0),
            public_url=env.optional("NOETL_SERVER_URL"),
            shard_subject_route=env.bool("NOETL_SHARD_SUBJECT_ROUTE", False),
            command_shard_count=env.int("NOETL_COMMAND_SHARD_COUNT", 1, minimum=1, maximum=1024),
            epoch_grace_ms=grace_ms,
            map_refresh_seconds=refresh,
            advertise_url=advertise.replace("{i}", str(index)) if advertise else None,
            event_result_max_bytes=env.int("NOETL_EVENT_RESULT_CONTEXT_MAX_BYTES", 100 * 1024, minimum=1024),
            large_write_bytes=env.int("NOETL_LARGE_WRITE_BYTES", 32 * 1024 * 1024, minimum=1024),
            trusted_networks=trusted_networks(env),
            keychain_endpoints=url_rewrites(env, "NOETL_KEYCHAIN_ENDPOINTS"),
            keychain_renew_before_seconds=env.float("NOETL_KEYCHAIN_RENEW_BEFORE_SECONDS", 300.0),
            nats_url=env.optional("NOETL_NATS_URL"),
            partition_slice_hours=positive(env, "NOETL_PARTITION_SLICE_HOURS", 168.0),
            partition_ahead=env.int("NOETL_PARTITION_AHEAD", 2, minimum=1, maximum=1000),
            retention_days=positive(env, "NOETL_RETENTION_DAYS", 0.0, zero=True),
            retention_path_days=path_days(env, "NOETL_RETENTION_PATH_DAYS"),
            retention_interval_seconds=positive(env, "NOETL_RETENTION_INTERVAL_SECONDS", 3600.0),
            archive_dir=env.optional("NOETL_ARCHIVE_DIR"),
            cluster_cache_seconds=positive(env, "NOETL_CLUSTER_CACHE_SECONDS", 10.0, zero=True),
        )


def positive(env: Env, name: str, default: float, *, zero: bool = False) -> float:
    value = env.float(name, default)
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return value


def path_days(env: Env, name: str) -> dict[str, float]:
    """`path=days,path=days` (catalog path -> retention days)."""
    raw = env.optional(name)
    out: dict[str, float] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        path, sep, days = part.rpartition("=")
        try:
            value = float(days)
        except ValueError:
            value = -1.0
        if not sep or not path.strip() or value <= 0:
            raise ConfigError(f"{name} must be path=days[,path=days...] with days > 0, got {part.strip()!r}")
        out[path.strip()] = value
    return out


def url_rewrites(env: Env, name: str) -> dict[str, str]:
    """A JSON object of URL prefix -> replacement prefix, both http(s) URLs."""
    raw = env.optional(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object of URL prefix -> replacement") from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.startswith(("http://", "https://"))
            and v.startswith(("http://", "https://")) for k, v in value.items()):
        raise ConfigError(f"{name} must map http(s) URL prefixes to http(s) URL prefixes")
    return value


MAX_SHARD_COUNT = 1024


def epoch_timing(env: Env) -> tuple[int, float]:
    """(grace ms, map refresh seconds). The refresh must be well under the grace: a shard whose
    map is older than the grace cannot mint, so a refresh that slow would stall every write."""
    grace_ms = env.int("NOETL_SHARD_EPOCH_GRACE_MS", 10_000, minimum=100, maximum=3_600_000)
    refresh = env.float("NOETL_SHARD_MAP_REFRESH_SECONDS", 2.0)
    if refresh <= 0:
        raise ConfigError(f"NOETL_SHARD_MAP_REFRESH_SECONDS must be > 0, got {refresh}")
    if refresh * 1000 >= grace_ms / 2:
        raise ConfigError(f"NOETL_SHARD_MAP_REFRESH_SECONDS ({refresh}) must be under half of "
                          f"NOETL_SHARD_EPOCH_GRACE_MS ({grace_ms} ms)")
    return grace_ms, refresh


def shard_urls_from_env(env: Env) -> tuple[str, ...]:
    """The bootstrap shard URLs (index = position). NOETL_SHARD_URLS (comma-separated) wins over
    NOETL_SHARD_URL_PATTERN, which gives shards 0..NOETL_SHARD_COUNT-1 (just shard 0 without a
    count). Only a first shard is needed: the rest come from the shard map (`noetl_common.discovery`)."""
    listed = env.optional("NOETL_SHARD_URLS")
    if listed is not None:
        urls = [u.strip() for u in listed.split(",")]
        if not all(urls):
            raise ConfigError("NOETL_SHARD_URLS has an empty entry; list one base URL per shard, comma-separated")
    else:
        pattern = shard_url_pattern(env)
        if pattern is None:
            raise ConfigError("NOETL_SHARD_URLS (comma-separated) or NOETL_SHARD_URL_PATTERN with {i} is required")
        count = env.int("NOETL_SHARD_COUNT", 1, minimum=1, maximum=MAX_SHARD_COUNT)
        urls = [pattern.replace("{i}", str(i)) for i in range(count)]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"shard URL {url!r} must start with http:// or https://")
    if len(urls) > MAX_SHARD_COUNT:
        raise ConfigError(f"at most {MAX_SHARD_COUNT} shard URLs are supported, got {len(urls)}")
    return tuple(u.rstrip("/") for u in urls)


def shard_url_pattern(env: Env) -> str | None:
    """NOETL_SHARD_URL_PATTERN (with {i}): the URL of any shard index, e.g. a StatefulSet's pods."""
    pattern = env.optional("NOETL_SHARD_URL_PATTERN")
    if pattern is not None and "{i}" not in pattern:
        raise ConfigError("NOETL_SHARD_URL_PATTERN must contain {i}, e.g. http://api-shard-{i}.api-shard:8082")
    if pattern is not None and not pattern.startswith(("http://", "https://")):
        raise ConfigError(f"NOETL_SHARD_URL_PATTERN {pattern!r} must start with http:// or https://")
    return pattern.rstrip("/") if pattern else None


def replica_slice(env: Env, prefix: str) -> tuple[int, int]:
    """(replica, replicas) of a service split across shards: replica r of R serves shards s with
    s % R == r; r is <PREFIX>_INDEX, else the StatefulSet ordinal from HOSTNAME."""
    replicas = env.int(f"{prefix}_REPLICAS", 1, minimum=1, maximum=MAX_SHARD_COUNT)
    ordinal = ordinal_from_hostname(env.optional("HOSTNAME")) if replicas > 1 else 0
    replica = env.int(f"{prefix}_INDEX", ordinal or 0, minimum=0, maximum=replicas - 1)
    return replica, replicas


def owned_shard_urls(env: Env, prefix: str) -> tuple[int, dict[int, str]]:
    """(replica, shard index -> base URL) for the bootstrap shards this replica of a per-shard
    service serves (more join from the shard map)."""
    replica, replicas = replica_slice(env, prefix)
    return replica, {s: url for s, url in enumerate(shard_urls_from_env(env)) if s % replicas == replica}
