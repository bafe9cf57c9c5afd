"""An HTTPS proxy in front of the test API, for playbooks that name a public service inside a tool
(`https://httpbin.org/post`, `https://api.open-meteo.com/v1/forecast`) rather than in the workload:
the fleet's workers get `HTTPS_PROXY` pointing here, `CONNECT host:443` for a stand-in host is
answered by terminating TLS with the test API's certificate (whose names include that host, trusted
through SSL_CERT_FILE) and relaying the request, as sent, to the test API. Any other host is refused
(403): nothing leaves the machine."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

MAX_HEAD = 16 * 1024


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def connect_target(head: bytes) -> tuple[str, int] | None:
    """`CONNECT host:port HTTP/1.1` -> (host, port); None for anything else."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(line) != 3 or line[0].upper() != "CONNECT":
        return None
    host, _, port = line[1].rpartition(":")
    return (host.lower(), int(port)) if host and port.isdigit() else None


def handler(hosts: frozenset[str], context: ssl.SSLContext, upstream_port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        target = connect_target(head)
        if target is None or target[0] not in hosts:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await writer.start_tls(context)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except (ConnectionError, ssl.SSLError, OSError):
            writer.close()
            return
        await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
    return handle


async def serve(host: str, port: int, hosts: frozenset[str], cert: str, key: str,
                upstream_port: int) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return await asyncio.start_server(handler(hosts, context, upstream_port), host, port, limit=MAX_HEAD)
