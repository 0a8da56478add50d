"""asyncio face of multi-endpoint sessions: ``connect_multi`` (the device) and
``MultiService`` (edge and cloud servers sharing one MultiReceiver).

A thin adapter, like ``connection.py``: the sans-I/O
:class:`~edgewire.health.multipath.MultiSession` decides everything; this module feeds the
path sessions their datagrams and ``loop.time()``, sends what they return, keeps one timer
armed and turns events into awaitables. docs/MULTIPATH.md.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from edgewire.aio.client import parse_url
from edgewire.aio.connection import _ChannelView
from edgewire.aio.udp import UdpEndpoint, open_udp, peer_address
from edgewire.errors import ConnectionClosedError, LocalProtocolError, QueueFullError
from edgewire.health.events import PathSwitched
from edgewire.health.multipath import MultipathConfig, MultiSession
from edgewire.health.multireceiver import MultiReceiver
from edgewire.transport import (
    ChannelInfo,
    ChannelKind,
    ChannelOpened,
    MessageReceived,
    QoS,
    Session,
    SessionClosed,
    SessionConfig,
    quic_configuration,
)
from edgewire.transport.quicstats import host_connection_ids

__all__ = ["MultiChannel", "MultiConnection", "MultiService", "connect_multi"]

#: Messages a channel holds for a slow reader (real-time: oldest dropped; reliable: the
#: multi-connection is closed, as in ``Connection``).
K_BACKLOG = 65536
#: Switch events kept for ``next_switch``.
K_SWITCH_BACKLOG = 256


class _Target(Protocol):
    def poll(self, *, now: float) -> None: ...
    def handle_timer(self, *, now: float) -> None: ...
    def get_timer(self) -> float | None: ...


class _Hub:
    """Drives path sessions and a multi-session (or a receiver) on the loop."""

    def __init__(self, target: _Target, on_service: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.on_service = on_service
        self.sessions: dict[int, tuple[Session, Callable[[bytes, NetworkAddress], None]]] = {}
        self._udp: dict[int, UdpEndpoint] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._scheduled = False

    def add(self, session: Session, send: Callable[[bytes, NetworkAddress], None],
            udp: UdpEndpoint | None = None) -> None:
        """Drive ``session``, which sends with ``send`` and receives on ``udp`` (whose
        ``socket_drops`` it reports to its peer)."""
        self.sessions[id(session)] = (session, send)
        if udp is not None:
            self._udp[id(session)] = udp

    def datagram(self, session: Session, data: bytes, addr: NetworkAddress) -> None:
        """Feed one datagram; the endpoint calls ``service`` once its batch is read
        (``edgewire.aio.udp``)."""
        udp = self._udp.get(id(session))
        session.receive_datagram(data, addr, now=self.loop.time(),
                                 socket_drops=None if udp is None else udp.socket_drops)

    def soon(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.service)

    def service(self) -> None:
        """Run what is due, take in events, transmit, and arm the timer for the next
        deadline. The deadline the timer was armed for runs here once due, not only from
        the timer: under a steady stream of datagrams every batch ends in a call to this,
        and a timer re-armed by each call never came to run (a receiver's
        acknowledgements waited for a pause in the stream: a second at 130 Mbit/s)."""
        self._scheduled = False
        now = self.loop.time()
        if self._timer_at is not None and self._timer_at <= now:
            self._run_due(now)
        self.target.poll(now=now)
        self.on_service()
        timer = self.target.get_timer()
        for session, send in list(self.sessions.values()):
            for data, addr in session.datagrams_to_send(now=now):
                send(data, addr)
            t = session.get_timer()
            if t is not None and (timer is None or t < timer):
                timer = t
        if timer == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = timer
        self._timer = None if timer is None else self.loop.call_at(timer, self._fire)

    def _run_due(self, now: float) -> None:
        for session, _ in list(self.sessions.values()):
            t = session.get_timer()
            if t is not None and t <= now:
                session.handle_timer(now=now)
        t = self.target.get_timer()
        if t is not None and t <= now:
            self.target.handle_timer(now=now)

    def _fire(self) -> None:
        self._timer = None
        now = self.loop.time()
        self._timer_at = None
        self._run_due(now)
        self.service()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None


class MultiChannel(_ChannelView):
    """A channel of a :class:`MultiConnection`; it follows the active path."""

    def __init__(self, conn: MultiConnection, info: ChannelInfo) -> None:
        self._conn = conn
        self.info = info
        self._inbox: deque[MessageReceived] = deque()
        self.reader_dropped = 0
        """Real-time messages dropped because the application did not read them."""

    def send_nowait(self, payload: Any, *, keyframe: bool = False,
                    timestamp: float | None = None) -> None:
        """Send now on the active path; QueueFullError when a reliable channel has
        ``max_unacked_messages`` unacknowledged."""
        conn = self._conn
        conn.multi.send(self.id, payload, now=conn.loop.time(), timestamp=timestamp,
                        keyframe=keyframe)
        conn.hub.soon()

    async def send(self, payload: Any, *, keyframe: bool = False,
                   timestamp: float | None = None) -> None:
        """Send; a reliable channel waits while too much is unacknowledged."""
        while True:
            try:
                self.send_nowait(payload, keyframe=keyframe, timestamp=timestamp)
                return
            except QueueFullError:
                await self._conn._wait()

    def unacked(self) -> int:
        """Reliable messages sent and not yet acknowledged by the peer."""
        return self._conn.multi.unacked(self.id)

    async def recv(self) -> MessageReceived:
        """Next message (ConnectionClosedError once every path is closed)."""
        while not self._inbox:
            if self._conn.closed:
                raise ConnectionClosedError("every path is closed")
            await self._conn._wait()
        return self._inbox.popleft()

    def _deliver(self, ev: MessageReceived) -> None:
        if len(self._inbox) >= K_BACKLOG:
            if self.info.qos.reliable:
                self._conn.multi.close(now=self._conn.loop.time())
                return
            self._inbox.popleft()
            self.reader_dropped += 1
        self._inbox.append(ev)


class MultiConnection:
    """A multi-endpoint session on the loop (from ``connect_multi`` or
    ``MultiService.accept``)."""

    def __init__(self, multi: MultiSession, hub: _Hub) -> None:
        self.multi = multi
        self.hub = hub
        self.loop = hub.loop
        self._channels: dict[int, MultiChannel] = {}
        self._incoming: deque[MultiChannel] = deque()
        self._switches: deque[PathSwitched] = deque(maxlen=K_SWITCH_BACKLOG)
        self._waiters: list[asyncio.Future[None]] = []
        self.on_switch: Callable[[PathSwitched], None] | None = None
        """Called with every PathSwitched event."""
        self.closed = False
        self._acked_seen = multi.messages_acked

    @property
    def active_path(self) -> str | None:
        """The path the channels use now."""
        return self.multi.active

    @property
    def paths(self) -> dict[str, dict[str, Any]]:
        """Per path: state, RTT, silence, probes (``MultiSession.path_stats``)."""
        return self.multi.path_stats(now=self.loop.time())

    async def channel(self, kind: ChannelKind | str, *, name: str | None = None,
                      qos: QoS | None = None) -> MultiChannel:
        """Open a channel on every path."""
        cid = self.multi.open_channel(kind, name=name, qos=qos, now=self.loop.time())
        ch = self._channels[cid] = MultiChannel(self, self.multi.channel_info(cid))
        self.hub.soon()
        return ch

    async def accept(self) -> MultiChannel:
        """The next channel the peer opens."""
        while not self._incoming:
            if self.closed:
                raise ConnectionClosedError("every path is closed")
            await self._wait()
        return self._incoming.popleft()

    def switch(self, path: str) -> bool:
        """Move the channels to ``path`` now (False: it already is active)."""
        moved = self.multi.switch(path, now=self.loop.time())
        self.hub.service()
        return moved

    def apply_decision(self, decision: Any) -> dict[str, Any]:
        """Apply ``{"action": "switch", "path": name}``; the outcome (``ok``, ``reason``)."""
        out = self.multi.apply_decision(decision, now=self.loop.time())
        self.hub.service()
        return out

    async def next_switch(self) -> PathSwitched:
        """Wait for the next (or an unread) PathSwitched event."""
        while not self._switches:
            if self.closed:
                raise ConnectionClosedError("every path is closed")
            await self._wait()
        return self._switches.popleft()

    async def close(self) -> None:
        """Close every path."""
        self.multi.close(now=self.loop.time())
        self.hub.service()
        await asyncio.sleep(0)

    async def _wait(self) -> None:
        fut = self.loop.create_future()
        self._waiters.append(fut)
        await fut

    def _dispatch(self) -> None:
        multi = self.multi
        # an acknowledgement makes room for a sender waiting on QueueFullError; it comes
        # as no event, and a sender woken only by events waited for the next one
        woke = multi.messages_acked != self._acked_seen
        self._acked_seen = multi.messages_acked
        while (ev := multi.next_event()) is not None:
            woke = True
            if isinstance(ev, MessageReceived):
                if (ch := self._channels.get(ev.channel_id)) is not None:
                    ch._deliver(ev)
            elif isinstance(ev, ChannelOpened):
                ch = self._channels[ev.channel_id] = MultiChannel(
                    self, multi.channel_info(ev.channel_id))
                self._incoming.append(ch)
            elif isinstance(ev, PathSwitched):
                self._switches.append(ev)
                if self.on_switch is not None:
                    self.on_switch(ev)
            elif isinstance(ev, SessionClosed):
                self.closed = True
        if woke or self.closed:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)


def _sender(transport: UdpEndpoint) -> Callable[[bytes, NetworkAddress], None]:
    """``sendto`` that drops datagrams once the socket is closed (a stopped endpoint's
    sessions still want to send until they time out)."""
    def send(data: bytes, addr: NetworkAddress) -> None:
        if not transport.closed:
            transport.sendto(data, addr)
    return send


@asynccontextmanager
async def connect_multi(
    urls: dict[str, str], *, cafile: str | None = None, server_name: str | None = None,
    config: SessionConfig | None = None, multipath: MultipathConfig | None = None,
    failover_after_s: float | None = None, initial: str | None = None,
    session_id: str | None = None, handshake_timeout: float = 10.0,
) -> AsyncIterator[MultiConnection]:
    """Connect to every endpoint in ``urls`` (path name -> ``edgewire://host:port``),
    channels on ``initial`` (default: the first) and the others warm as standbys;
    ``async with connect_multi({"edge": u1, "cloud": u2}, cafile=...) as conn``.

    Waits until every path is ready or ``handshake_timeout`` passes (the initial path must
    be ready by then; a standby that is not keeps connecting)."""
    if len(urls) < 1:
        raise LocalProtocolError("connect_multi needs at least one URL")
    mp = multipath or MultipathConfig()
    if failover_after_s is not None:
        mp = MultipathConfig(**{**{f: getattr(mp, f) for f in mp.__dataclass_fields__},
                                "failover_after_s": failover_after_s})
    loop = asyncio.get_running_loop()
    sessions: dict[str, Session] = {}
    addrs: dict[str, NetworkAddress] = {}
    for name, url in urls.items():
        host, port = parse_url(url)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise LocalProtocolError(f"cannot resolve {host!r}")
        sockaddr = infos[0][4]
        addrs[name] = peer_address(sockaddr)
        qc = quic_configuration(is_client=True, server_name=server_name or host,
                                cafile=cafile)
        sessions[name] = Session(qc, config=config)
    multi = MultiSession(sessions, session_id=session_id or uuid.uuid4().hex,
                         initial=initial or next(iter(urls)), config=mp)
    conn: MultiConnection | None = None
    hub = _Hub(multi, lambda: conn._dispatch() if conn is not None else None)
    conn = MultiConnection(multi, hub)
    transports: list[UdpEndpoint] = []
    try:
        for name, session in sessions.items():
            family = socket.AF_INET6 if ":" in addrs[name][0] else socket.AF_INET
            # ICMP errors are counted by the endpoint: the path's silence is what the
            # switcher looks at
            transport = await open_udp("::" if family == socket.AF_INET6 else "0.0.0.0", 0,
                                       functools.partial(hub.datagram, session),
                                       hub.service, family=family)
            transports.append(transport)
            hub.add(session, _sender(transport), transport)
            session.connect(addrs[name], now=loop.time())
        hub.service()
        deadline = loop.time() + handshake_timeout
        while not all(s.ready for s in sessions.values()) and loop.time() < deadline:
            if all(s.ready or s.closed for s in sessions.values()):
                break
            await asyncio.sleep(0.01)
        if not multi.ready:
            raise ConnectionClosedError("the initial path did not become ready")
        yield conn
        await asyncio.sleep(0)
    finally:
        multi.close(now=loop.time())
        hub.service()
        await asyncio.sleep(0)
        hub.stop()
        for transport in transports:
            transport.close()


class _ServerProtocol:
    """One listening endpoint of a MultiService: routes datagrams by connection id."""

    def __init__(self, service: MultiService, qc: Any, config: SessionConfig | None) -> None:
        self.service = service
        self.qc = qc
        self.config = config
        self.by_cid: dict[bytes, Session] = {}
        self.transport: UdpEndpoint | None = None

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
        except ValueError:
            return
        session = self.by_cid.get(header.destination_cid)
        if session is None:
            if header.packet_type != QuicPacketType.INITIAL or len(data) < 1200:
                return
            if len(self.by_cid) >= self.service.receiver.max_sessions:
                return
            session = Session(self.qc, config=self.config,
                              original_destination_connection_id=header.destination_cid)
            self.by_cid[header.destination_cid] = session
            assert self.transport is not None
            self.service.hub.add(session, _sender(self.transport), self.transport)
            self.service.receiver.attach(session, now=self.service.hub.loop.time())
        self.service.hub.datagram(session, data, addr)
        if session.connection_ids_changed:
            session.connection_ids_changed = False
            for cid in host_connection_ids(session.quic):
                self.by_cid.setdefault(cid, session)


class MultiService:
    """Edge, cloud, ... servers in one process sharing a MultiReceiver: a client's paths
    join one :class:`MultiConnection`, reliable channels exactly once across them."""

    def __init__(self, *, config: MultipathConfig | None = None) -> None:
        self.receiver = MultiReceiver(config=config)
        self.hub = _Hub(self.receiver, self._dispatch)
        self._conns: dict[str, MultiConnection] = {}
        self._accepted: deque[MultiConnection] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._transports: dict[str, UdpEndpoint] = {}

    async def listen(self, name: str, host: str, port: int, *, certfile: str,
                     keyfile: str | None = None, config: SessionConfig | None = None
                     ) -> tuple[str, int]:
        """Listen for endpoint ``name`` on ``host:port`` (0: any); the bound address."""
        qc = quic_configuration(is_client=False, certfile=certfile, keyfile=keyfile)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        proto = _ServerProtocol(self, qc, config)
        transport = await open_udp(host, port, proto.datagram_received, self.hub.service,
                                   family=family)
        proto.transport = transport
        self._transports[name] = transport
        sock = transport.sockname
        return str(sock[0]), int(sock[1])

    def stop_endpoint(self, name: str) -> None:
        """Close one endpoint's socket (it goes dark, as a failed edge would)."""
        transport = self._transports.pop(name)
        transport.close()

    async def accept(self) -> MultiConnection:
        """The next client multi-session."""
        while not self._accepted:
            fut = self.hub.loop.create_future()
            self._waiters.append(fut)
            await fut
        return self._accepted.popleft()

    def _dispatch(self) -> None:
        for sid, multi in self.receiver.sessions.items():
            conn = self._conns.get(sid)
            if conn is None and multi.ready:
                conn = self._conns[sid] = MultiConnection(multi, self.hub)
                self._accepted.append(conn)
                waiters, self._waiters = self._waiters, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            if conn is not None:
                conn._dispatch()

    def close(self) -> None:
        """Close every session and socket."""
        now = self.hub.loop.time()
        for multi in self.receiver.sessions.values():
            multi.close(now=now)
        self.hub.service()
        self.hub.stop()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
