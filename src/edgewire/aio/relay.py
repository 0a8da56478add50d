"""A real-socket UDP relay that puts any UDP program on an emulated link, in real time.

Datagrams from clients arrive at a listen socket, cross the *uplink*
:class:`~edgewire.netsim.link.Link` and leave towards the upstream server from one socket per
client address (as a NAT would, so that replies can be routed back); replies cross the
*downlink* Link and leave from the listen socket to the client. The links are the very
objects the virtual-time simulator drives, fed here with ``now = loop.time()`` measured from
the relay's start, so a scenario's ``[[events]]`` change the link at their ``at_s``.

One uplink and one downlink are shared by every client: the relay models a single
bottleneck (one access link), so clients compete for its rate and queue as they would
behind a real one.

Real time is not virtual time: a packet can only leave when the event loop wakes up, a
little after the instant the link computed. That lateness is measured and reported
(``stats()["late_ms"]``); it does not feed back into the link model.

No root privileges are needed: only ordinary UDP sockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from edgewire.aio.udp import request_recv_buffer
from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.link import Delivery, Link
from edgewire.netsim.run import link_rng
from edgewire.netsim.scenario import LinkEvent, Scenario
from edgewire.netsim.stats import LinkStats, Samples

__all__ = [
    "K_IDLE_TIMEOUT_S",
    "K_MAX_CLIENTS",
    "K_MAX_LINK_PACKETS",
    "Relay",
    "start_relay",
]

logger = logging.getLogger("edgewire.aio.relay")

#: Client addresses relayed at once (each holds one upstream socket).
K_MAX_CLIENTS = 256
#: A client silent in both directions for this long is forgotten and its socket closed.
K_IDLE_TIMEOUT_S = 60.0  # seconds
#: Packets one link direction may hold (bottleneck queue plus propagating); the link's own
#: queue limit applies first, this bounds a long delay times a high input rate.
K_MAX_LINK_PACKETS = 65_536
#: Datagrams a new client may have waiting for its upstream socket to open.
K_MAX_PENDING = 64
#: Lateness samples kept exactly (a uniform reservoir beyond).
K_LATENESS_SAMPLES = 1 << 16
#: Longest pause between two sweeps for idle clients.
K_MAX_SWEEP_S = 5.0  # seconds

#: A socket address as asyncio reports it: (host, port) or (host, port, flowinfo, scope_id).
Address = tuple[Any, ...]


def _format_address(addr: Address) -> str:
    host, port = str(addr[0]), int(addr[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Client:
    """One client address: its upstream socket and when it was last heard of."""

    __slots__ = ("addr", "closed", "last_active", "pending", "socket")

    def __init__(self, addr: Address, now: float) -> None:
        self.addr = addr
        self.last_active = now
        self.socket: _UpstreamSocket | None = None
        # uplink deliveries that came out before the upstream socket was open
        self.pending: deque[bytes] = deque()
        self.closed = False


class _Socket(asyncio.DatagramProtocol):
    """A relay socket: its transport, whether the kernel pushes back, when it closed."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram endpoint's transport (asyncio's own class does not inherit the ABC)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def pause_writing(self) -> None:
        # asyncio buffers what the kernel refused beyond this point; the relay drops instead
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _ListenSocket(_Socket):
    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._relay._socket_error(exc, "listen")


class _UpstreamSocket(_Socket):
    def __init__(self, relay: Relay, client: _Client) -> None:
        super().__init__(relay)
        self._client = client

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_upstream(self._client, data)

    def error_received(self, exc: Exception) -> None:
        self._relay._socket_error(exc, "upstream")


class Relay:
    """A running relay; create it with :func:`start_relay`, stop it with :meth:`close` and
    ``await wait_closed()`` (or use it as an async context manager). :meth:`stats` may be
    called at any time, also after closing.

    All clients share one uplink and one downlink: the relay emulates one bottleneck, not a
    link per client. Run one relay per client for independent links."""

    def __init__(self, *, upstream: Address, upstream_family: int, uplink: Link,
                 downlink: Link, events: Sequence[LinkEvent], t0: float,
                 max_clients: int, idle_timeout_s: float, max_link_packets: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._upstream = upstream
        self._upstream_family = upstream_family
        self._uplink = uplink
        self._downlink = downlink
        self._t0 = t0
        self._last = 0.0
        self._end: float | None = None
        self._max_clients = max_clients
        self._idle_timeout = idle_timeout_s
        self._max_link_packets = max_link_packets
        self._clients: dict[tuple[Any, Any], _Client] = {}
        self._listen: _ListenSocket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing_sockets: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._late = Samples(K_LATENESS_SAMPLES)
        self._late_max = 0.0
        self._counts = dict.fromkeys(
            ("from_clients", "to_upstream", "from_upstream", "to_clients"), 0)
        self._dropped = dict.fromkeys(
            ("oversize", "link_overflow", "no_client", "pending_overflow", "send_buffer"), 0)
        self._errors = dict.fromkeys(("refused", "other"), 0)
        self._clients_total = 0
        self._clients_expired = 0
        self._clients_refused = 0
        self._events_applied = 0
        self._event_handles = [
            self._loop.call_at(t0 + ev.at_s, self._apply_event, ev) for ev in events]
        self._sweep = self._loop.call_later(self._sweep_period(), self._on_sweep)

    # ------------------------------------------------------------------ public API

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the relay listens on (the real port when 0 was asked for)."""
        assert self._listen is not None
        assert self._listen.transport is not None
        sockname = self._listen.transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._end is not None

    def now(self) -> float:
        """Seconds since the relay started, on the links' clock (scenario events and
        link statistics are timed on it)."""
        return self._end if self._end is not None else self._now()

    def link_stats(self, direction: str) -> LinkStats:
        """The live statistics of the "uplink" (clients to upstream) or "downlink" link:
        for timelines (``take_recent_queue_delay``, ``capacity_bits_until``) while the
        relay runs; :meth:`stats` gives the JSON-ready summary."""
        if direction == "uplink":
            return self._uplink.stats
        if direction == "downlink":
            return self._downlink.stats
        raise LocalProtocolError(f'direction must be "uplink" or "downlink", got {direction!r}')

    def close(self) -> None:
        """Stop relaying: close every socket and drop what the links still hold."""
        if self._end is not None:
            return
        self._end = self._now()
        for handle in (self._timer, self._sweep, *self._event_handles):
            if handle is not None:
                handle.cancel()
        self._timer = None
        self._event_handles.clear()
        for task in self._tasks:
            task.cancel()
        for client in list(self._clients.values()):
            self._forget(client)
        if self._listen is not None and self._listen.transport is not None:
            self._listen.transport.close()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and every socket is closed."""
        if self._listen is not None:
            await self._listen.closed
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._closing_sockets:
            await asyncio.gather(*self._closing_sockets)

    def stats(self) -> dict[str, Any]:
        """JSON-ready figures: per-direction link summaries, clients, datagram counters,
        drops, socket errors and the lateness of deliveries in real time."""
        now = self._end if self._end is not None else self._now()
        late = self._late.percentiles_ms((50, 99))
        return {
            "elapsed_s": round(now, 3),
            "links": {"uplink": self._uplink.stats.summary(end=now),
                      "downlink": self._downlink.stats.summary(end=now)},
            "clients": len(self._clients),
            "clients_total": self._clients_total,
            "clients_expired": self._clients_expired,
            "clients_refused": self._clients_refused,
            "max_clients": self._max_clients,
            "datagrams": dict(self._counts),
            "dropped": dict(self._dropped),
            "socket_errors": dict(self._errors),
            "events_applied": self._events_applied,
            "late_ms": {**late, "max": round(self._late_max * 1000.0, 3),
                        "samples": self._late.total},
        }

    async def __aenter__(self) -> Relay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------------ clock and timer

    def _now(self) -> float:
        # link time must never go backwards, whatever order callbacks run in
        t = self._loop.time() - self._t0
        if t > self._last:
            self._last = t
        return self._last

    def _arm(self) -> None:
        """One loop timer for the earliest deadline of both links."""
        deadlines = [t for t in (self._uplink.get_timer(), self._downlink.get_timer())
                     if t is not None]
        at = min(deadlines) if deadlines else None
        if at == self._timer_at and (self._timer is not None or at is None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and self._end is None:
            self._timer = self._loop.call_at(self._t0 + at, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        now = self._now()
        if at is not None and now < at:
            # (t0 + at) - t0 may round below ``at``; never let the link see an early wakeup
            # as "not yet", or the same timer would be armed again and again
            self._last = now = at
        self._service(now)

    def _service(self, now: float) -> None:
        """Transmit what both links deliver by ``now`` and re-arm the timer."""
        for link, out in ((self._uplink, self._to_upstream), (self._downlink, self._to_client)):
            deliveries = link.receive(now=now)
            if not deliveries:
                continue
            real = self._loop.time() - self._t0
            for d in deliveries:
                late = max(0.0, real - d.time)
                self._late.add(late)
                self._late_max = max(self._late_max, late)
                out(d)
        self._arm()

    def _apply_event(self, event: LinkEvent) -> None:
        now = self._now()
        if event.uplink is not None:
            self._uplink.reconfigure(event.uplink, now=now)
        if event.downlink is not None:
            self._downlink.reconfigure(event.downlink, now=now)
        self._events_applied += 1
        # a change may release queued packets at once (the bottleneck was removed)
        self._service(now)

    # ------------------------------------------------------------------ clients

    def _sweep_period(self) -> float:
        return min(K_MAX_SWEEP_S, max(0.01, self._idle_timeout / 4.0))

    def _on_sweep(self) -> None:
        self._expire_idle(self._now())
        self._sweep = self._loop.call_later(self._sweep_period(), self._on_sweep)

    def _expire_idle(self, now: float) -> None:
        for client in [c for c in self._clients.values()
                       if now - c.last_active >= self._idle_timeout]:
            self._clients_expired += 1
            self._forget(client)

    def _new_client(self, addr: Address, now: float) -> _Client | None:
        if len(self._clients) >= self._max_clients:
            self._expire_idle(now)
            if len(self._clients) >= self._max_clients:
                return None
        client = _Client(addr, now)
        self._clients[addr[0], addr[1]] = client
        self._clients_total += 1
        task = self._loop.create_task(self._open_upstream(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _open_upstream(self, client: _Client) -> None:
        raw = socket.socket(self._upstream_family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            # a burst waits in a deep buffer (its lateness is reported) instead of being
            # dropped before the link model sees it
            request_recv_buffer(raw)
            # connected: the kernel routes only the upstream's replies to this socket (as
            # a NAT would) and reports ICMP errors for it; connect() on UDP never blocks
            raw.connect(self._upstream)
            transport, sock = await self._loop.create_datagram_endpoint(
                lambda: _UpstreamSocket(self, client), sock=raw)
        except OSError as exc:
            raw.close()
            self._socket_error(exc, "upstream")
            self._forget(client)
            return
        except BaseException:
            raw.close()
            raise
        self._track_close(sock.closed)
        if client.closed:
            transport.close()
            return
        client.socket = sock
        while client.pending:
            self._send(sock, client.pending.popleft(), None, "to_upstream")

    def _forget(self, client: _Client) -> None:
        client.closed = True
        client.pending.clear()
        self._clients.pop((client.addr[0], client.addr[1]), None)
        if client.socket is not None and client.socket.transport is not None:
            client.socket.transport.close()
        client.socket = None

    def _track_close(self, fut: asyncio.Future[None]) -> None:
        # bounded: one entry per open upstream socket, removed once it has closed
        self._closing_sockets.add(fut)
        fut.add_done_callback(self._closing_sockets.discard)

    # ------------------------------------------------------------------ datagrams

    def _from_client(self, data: bytes, addr: Address) -> None:
        if self._end is not None:
            return
        self._counts["from_clients"] += 1
        now = self._now()
        client = self._clients.get((addr[0], addr[1]))
        if client is None:
            client = self._new_client(addr, now)
            if client is None:
                self._clients_refused += 1
                return
        client.last_active = now
        self._offer(self._uplink, data, now, client)

    def _from_upstream(self, client: _Client, data: bytes) -> None:
        if self._end is not None or client.closed:
            return
        self._counts["from_upstream"] += 1
        now = self._now()
        client.last_active = now
        self._offer(self._downlink, data, now, client.addr)

    def _offer(self, link: Link, data: bytes, now: float, meta: Any) -> None:
        if link.queue_packets + link.in_flight >= self._max_link_packets:
            self._dropped["link_overflow"] += 1
            return
        try:
            link.send(data, now=now, meta=meta)
        except LocalProtocolError:
            # larger than an IPv4 UDP datagram (possible over IPv6): the link refuses it
            self._dropped["oversize"] += 1
            return
        # a link without delay or rate delivers at once; do not wait for a timer
        self._service(now)

    def _to_upstream(self, d: Delivery) -> None:
        client: _Client = d.meta
        if client.closed:
            self._dropped["no_client"] += 1
            return
        if client.socket is None:
            if len(client.pending) >= K_MAX_PENDING:
                self._dropped["pending_overflow"] += 1
            else:
                client.pending.append(d.data)
            return
        self._send(client.socket, d.data, None, "to_upstream")

    def _to_client(self, d: Delivery) -> None:
        if self._listen is None:
            return
        self._send(self._listen, d.data, d.meta, "to_clients")

    def _send(self, sock: _Socket, data: bytes, addr: Address | None, counter: str) -> None:
        transport = sock.transport
        if transport is None or transport.is_closing():
            self._dropped["no_client"] += 1
            return
        if sock.paused:
            # the kernel's buffer is full and asyncio's would grow without bound: a wire
            # drops what it cannot send
            self._dropped["send_buffer"] += 1
            return
        transport.sendto(data, addr)
        self._counts[counter] += 1

    def _socket_error(self, exc: Exception, where: str) -> None:
        # ICMP port unreachable arrives as ConnectionRefusedError on a later socket call;
        # the relay is a wire, so it counts errors and keeps going
        self._errors["refused" if isinstance(exc, ConnectionRefusedError) else "other"] += 1
        logger.debug("relay %s socket error: %r", where, exc)


async def _resolve(host: str, port: int, what: str, *, passive: bool) -> tuple[int, Address]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                       flags=socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as exc:
        raise LocalProtocolError(f"{what}: cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise LocalProtocolError(f"{what}: cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


async def start_relay(
    listen: tuple[str, int],
    upstream: tuple[str, int],
    links: Scenario | tuple[LinkConfig, LinkConfig],
    *,
    seed: int | None = None,
    max_clients: int = K_MAX_CLIENTS,
    idle_timeout_s: float = K_IDLE_TIMEOUT_S,
    max_link_packets: int = K_MAX_LINK_PACKETS,
) -> Relay:
    """Listen on ``listen`` (port 0 picks one) and relay to ``upstream`` through the links of
    a scenario (its events applied at their ``at_s`` after the start, each once) or through
    a fixed (uplink, downlink) pair of LinkConfigs.

    ``seed`` replaces the scenario's seed (default 1 for a LinkConfig pair). At most
    ``max_clients`` client addresses are relayed at once; one silent for ``idle_timeout_s``
    in both directions is forgotten. Raises LocalProtocolError for an address that cannot
    be resolved or bound.
    """
    if isinstance(links, Scenario):
        uplink_cfg, downlink_cfg = links.uplink, links.downlink
        events: Sequence[LinkEvent] = links.events
        default_seed = links.seed
    else:
        try:
            uplink_cfg, downlink_cfg = links
        except (TypeError, ValueError):
            raise LocalProtocolError("links must be a Scenario or an (uplink, downlink) "
                                     "pair of LinkConfig") from None
        if not (isinstance(uplink_cfg, LinkConfig) and isinstance(downlink_cfg, LinkConfig)):
            raise LocalProtocolError("links must be a Scenario or an (uplink, downlink) "
                                     "pair of LinkConfig")
        events, default_seed = (), 1
    seed = default_seed if seed is None else seed
    configs = [uplink_cfg, downlink_cfg, *(c for ev in events
                                           for c in (ev.uplink, ev.downlink) if c is not None)]
    if any(c.has_reader for c in configs):
        raise LocalProtocolError(
            "read_kbps / read_stall_ms model the receiving process in a simulation; the "
            "relay's receivers are real programs: leave them out of a relayed scenario")
    if not isinstance(max_clients, int) or max_clients < 1:
        raise LocalProtocolError(f"max_clients must be an integer >= 1, got {max_clients!r}")
    if not (isinstance(idle_timeout_s, int | float) and math.isfinite(idle_timeout_s)
            and idle_timeout_s > 0):
        raise LocalProtocolError(f"idle_timeout_s must be > 0, got {idle_timeout_s!r}")
    if not isinstance(max_link_packets, int) or max_link_packets < 1:
        raise LocalProtocolError(f"max_link_packets must be an integer >= 1, "
                                 f"got {max_link_packets!r}")

    loop = asyncio.get_running_loop()
    up_family, up_addr = await _resolve(upstream[0], upstream[1], "upstream", passive=False)
    if int(up_addr[1]) == 0:
        raise LocalProtocolError("upstream: port 0 is not a destination")
    listen_family, listen_addr = await _resolve(listen[0], listen[1], "listen", passive=True)

    t0 = loop.time()
    relay = Relay(
        upstream=up_addr, upstream_family=up_family,
        uplink=Link(uplink_cfg, rng=link_rng(seed, "uplink"), name="uplink"),
        downlink=Link(downlink_cfg, rng=link_rng(seed, "downlink"), name="downlink"),
        events=events, t0=t0, max_clients=max_clients, idle_timeout_s=float(idle_timeout_s),
        max_link_packets=max_link_packets)
    # the socket is made here, not by asyncio, whose local_addr takes only (host, port)
    # and would lose an IPv6 scope id
    raw = socket.socket(listen_family, socket.SOCK_DGRAM)
    try:
        raw.setblocking(False)
        request_recv_buffer(raw)
        raw.bind(listen_addr)
        _, listen_sock = await loop.create_datagram_endpoint(
            lambda: _ListenSocket(relay), sock=raw)
    except OSError as exc:
        raw.close()
        relay.close()
        raise LocalProtocolError(f"listen: cannot bind {_format_address(listen_addr)}: "
                                 f"{exc.strerror or exc}") from None
    relay._listen = listen_sock
    logger.info("relay listening on %s, upstream %s", _format_address(relay.address),
                _format_address(up_addr))
    return relay
