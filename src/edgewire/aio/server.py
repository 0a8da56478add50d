"""``edgewire.serve``: accept sessions on a UDP socket and run a handler for each."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from edgewire.aio.connection import Connection, EndpointLogTarget, check_udp_socket
from edgewire.aio.udp import UdpEndpoint, open_udp
from edgewire.transport import Session, SessionConfig, quic_configuration
from edgewire.transport.quicstats import host_connection_ids

__all__ = ["Handler", "Server", "serve"]

logger = logging.getLogger("edgewire.aio")

Handler = Callable[[Connection], Awaitable[None]]
#: Where session ``n`` (1, 2, ... in the order they start) writes its endpoint log.
EndpointLogFactory = Callable[[int], EndpointLogTarget | None]
#: Connection id length of edgewire servers (aioquic's default).
K_CID_LENGTH = 8
#: Smallest UDP payload of a client Initial (RFC 9000 section 14.1).
K_MIN_INITIAL = 1200


class Server:
    """A listening edgewire endpoint. Use ``close()`` and ``await wait_closed()`` to stop.

    Datagrams come in batches (``edgewire.aio.udp``): each is fed to its session as it is
    read, and every session that got one transmits once at the batch's end.
    """

    def __init__(self, handler: Handler, make_session: Callable[[bytes], Session], *,
                 endpoint_log: EndpointLogFactory | None = None) -> None:
        self._handler = handler
        self._make_session = make_session
        self._endpoint_log = endpoint_log
        self._by_cid: dict[bytes, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: UdpEndpoint | None = None
        self._touched: list[Connection] = []
        self._closed = asyncio.get_running_loop().create_future()
        self.dropped_datagrams = 0
        """Datagrams that matched no session and could not start one."""
        self.sessions_started = 0
        """Sessions accepted so far."""

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        assert self._transport is not None
        host, port = self._transport.sockname[:2]
        return str(host), int(port)

    @property
    def udp(self) -> UdpEndpoint:
        """The listening socket's endpoint (its counters: ``udp.counters``)."""
        assert self._transport is not None
        return self._transport

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=K_CID_LENGTH)
        except ValueError:
            self.dropped_datagrams += 1
            return
        conn = self._by_cid.get(header.destination_cid)
        if conn is None:
            if header.packet_type != QuicPacketType.INITIAL or len(data) < K_MIN_INITIAL:
                self.dropped_datagrams += 1
                return
            conn = self._start(header.destination_cid)
        assert self._transport is not None
        conn._receive(data, addr, self._transport.socket_drops)
        self._track(conn)
        if conn not in self._touched:
            self._touched.append(conn)

    def _batch_end(self) -> None:
        touched, self._touched = self._touched, []
        for conn in touched:
            conn._transmit()

    def _start(self, original_dcid: bytes) -> Connection:
        assert self._transport is not None
        session = self._make_session(original_dcid)
        conn = Connection(session, self._transport.sendto, on_closed=self._forget)
        self._by_cid[original_dcid] = conn
        self.sessions_started += 1
        if self._endpoint_log is not None:
            try:
                conn._attach_log(self._endpoint_log(self.sessions_started))
            except Exception:  # a log that cannot be opened must not stop the server
                logger.exception("cannot open the endpoint log of session %d",
                                 self.sessions_started)
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    def _track(self, conn: Connection) -> None:
        if conn.closed or not conn.session.connection_ids_changed:
            return
        conn.session.connection_ids_changed = False
        for cid in host_connection_ids(conn.session.quic):
            self._by_cid.setdefault(cid, conn)

    def _forget(self, conn: Connection) -> None:
        for cid in [c for c, v in self._by_cid.items() if v is conn]:
            del self._by_cid[cid]

    async def _run(self, conn: Connection) -> None:
        try:
            await conn.wait_ready()
            await self._handler(conn)
        except Exception:
            logger.exception("session handler failed")
            conn._close_now(1, "handler failed")
            return
        if not conn.closed:
            await conn.close()

    def close(self) -> None:
        """Close every session and the socket."""
        for conn in list(self._by_cid.values()):
            if not conn.closed:
                conn._close_now(0, "server shutting down")
        for task in self._tasks:
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    def _socket_closed(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed."""
        await self._closed

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    certfile: str,
    keyfile: str | None = None,
    congestion_control: str = "edgewire",
    config: SessionConfig | None = None,
    secrets_log_file: TextIO | None = None,
    endpoint_log: str | os.PathLike[str] | EndpointLogFactory | None = None,
    sock: socket.socket | None = None,
) -> Server:
    """Listen on ``host:port`` (port 0 picks one) and run ``handler(conn)`` per session.

    ``sock``: a bound UDP socket to serve on instead (one made inside a network namespace,
    say); ``host`` and ``port`` are then not used.

    ``endpoint_log`` records every message each session sends and receives
    (docs/TRACES.md): a file path (the first session writes it, session ``n`` > 1 writes
    ``<stem>-<n><suffix>`` next to it; each is closed when its session ends), or a
    callable that gets the session number and returns a path, an ``EndpointLog`` object
    or None.
    """
    qc = quic_configuration(
        is_client=False, certfile=certfile, keyfile=keyfile,
        congestion_control=congestion_control, secrets_log_file=secrets_log_file,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def make_session(original_dcid: bytes) -> Session:
        return Session(qc, config=config, original_destination_connection_id=original_dcid)

    logs: EndpointLogFactory | None
    if endpoint_log is None or callable(endpoint_log):
        logs = endpoint_log
    else:
        logs = _numbered(Path(endpoint_log))
    server = Server(handler, make_session, endpoint_log=logs)
    if sock is not None:
        check_udp_socket(sock)
        server._transport = UdpEndpoint(sock, server.datagram_received, server._batch_end,
                                        on_closed=server._socket_closed)
    else:
        server._transport = await open_udp(host, port, server.datagram_received,
                                           server._batch_end, family=family,
                                           on_closed=server._socket_closed)
    return server


def _numbered(path: Path) -> EndpointLogFactory:
    def name(n: int) -> Path:
        return path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
    return name
