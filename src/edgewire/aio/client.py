"""``edgewire.connect``: open a client session over a UDP socket."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO
from urllib.parse import urlsplit

from aioquic.quic.connection import NetworkAddress

from edgewire.aio.connection import (
    Connection,
    EndpointLogTarget,
    check_udp_socket,
    open_endpoint_log,
)
from edgewire.aio.udp import UdpEndpoint, peer_address, request_recv_buffer
from edgewire.errors import InsecureConnectionWarning, LocalProtocolError
from edgewire.transport import Session, SessionConfig, quic_configuration

__all__ = ["DEFAULT_PORT", "connect", "parse_url"]

#: Port used when a URL names none.
DEFAULT_PORT = 4433


def parse_url(url: str) -> tuple[str, int]:
    """``edgewire://host:port`` (or ``host:port``, ``[v6]:port``) -> (host, port)."""
    if "://" not in url:
        url = "edgewire://" + url
    parts = urlsplit(url)
    if parts.scheme != "edgewire":
        raise LocalProtocolError(f"URL scheme must be edgewire://, got {parts.scheme!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"no host in URL {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise LocalProtocolError(f"bad port in URL {url!r}") from None
    return parts.hostname, port


class _ClientEndpoint:
    """Feeds the connection every datagram of a batch, then transmits once."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.udp: UdpEndpoint | None = None

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self.conn is not None:
            self.conn._receive(data, addr,
                               None if self.udp is None else self.udp.socket_drops)

    def batch_end(self) -> None:
        if self.conn is not None:
            self.conn._transmit()


@asynccontextmanager
async def connect(
    url: str,
    *,
    cafile: str | None = None,
    insecure: bool = False,
    server_name: str | None = None,
    congestion_control: str = "edgewire",
    config: SessionConfig | None = None,
    handshake_timeout: float = 10.0,
    secrets_log_file: TextIO | None = None,
    endpoint_log: EndpointLogTarget | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[Connection]:
    """Connect to an edgewire server; ``async with connect(url) as session: ...``.

    The server's certificate is verified against the system trust store or ``cafile``.
    ``insecure=True`` skips verification and warns (InsecureConnectionWarning). The QUIC
    handshake and edgewire hello must finish within ``handshake_timeout`` seconds.
    ``endpoint_log`` (a file path, or an ``EndpointLog`` such as an ``EndpointLogWriter``)
    records every message this side sends and receives, with ``loop.time()``
    (docs/TRACES.md); a file is closed when the connection ends. ``sock``: a UDP socket
    to connect from instead of a new one (one made inside a network namespace, say; of
    the server address's family); it is closed with the connection.
    """
    host, port = parse_url(url)
    if insecure:
        warnings.warn(
            f"connecting to {host}:{port} without certificate verification (insecure=True)",
            InsecureConnectionWarning,
            stacklevel=3,
        )
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise LocalProtocolError(f"cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    addr: NetworkAddress = peer_address(sockaddr)
    try:
        is_ip = bool(ipaddress.ip_address(host))
    except ValueError:
        is_ip = False
    qc = quic_configuration(
        is_client=True,
        server_name=server_name or (None if is_ip else host) or host,
        cafile=cafile,
        insecure=insecure,
        congestion_control=congestion_control,
        secrets_log_file=secrets_log_file,
    )
    session = Session(qc, config=config)
    # a log that cannot be written fails here, before anything goes on the network
    owned = (open_endpoint_log(endpoint_log)
             if isinstance(endpoint_log, str | os.PathLike) else None)
    local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
    protocol = _ClientEndpoint()
    try:
        if sock is not None:
            check_udp_socket(sock)
            if sock.family != family:
                raise LocalProtocolError(f"sock is of family {sock.family!r}, the address "
                                         f"{host!r} of {socket.AddressFamily(family)!r}")
            transport = UdpEndpoint(sock, protocol.datagram_received, protocol.batch_end)
        else:
            made = socket.socket(family, socket.SOCK_DGRAM)
            try:
                request_recv_buffer(made)
                made.bind(local)
                transport = UdpEndpoint(made, protocol.datagram_received,
                                        protocol.batch_end)
            except BaseException:
                made.close()
                raise
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    conn = Connection(session, transport.sendto)
    conn._attach_log(owned or endpoint_log, owned)
    protocol.conn = conn
    protocol.udp = transport
    try:
        session.connect(addr, now=loop.time())
        conn._transmit()
        async with asyncio.timeout(handshake_timeout):
            await conn.wait_ready()
        async with conn:
            yield conn
            # flush what the application queued before leaving the block
            await asyncio.sleep(0)
    finally:
        if not conn.closed:
            conn._close_now(0, "")
        conn._release_log()
        # give the CONNECTION_CLOSE a chance to leave the socket
        await asyncio.sleep(0)
        transport.close()
