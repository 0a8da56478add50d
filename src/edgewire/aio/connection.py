"""asyncio face of a session: ``Connection`` and ``Channel``, driven over a UDP transport.

This is a thin adapter (like aioquic's ``asyncio/protocol.py``): every decision is made by
the sans-I/O :class:`~edgewire.transport.Session`; this module feeds it ``loop.time()``,
sends what it returns, keeps its timer armed and turns its events into awaitables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aioquic.quic.connection import NetworkAddress

from edgewire.errors import ConnectionClosedError, LocalProtocolError, QueueFullError
from edgewire.transport import (
    AppMessageReceived,
    BitrateChanged,
    ChannelClosed,
    ChannelInfo,
    ChannelKind,
    ChannelOpened,
    ChannelStats,
    ErrorCode,
    FrameLost,
    KeyframeRequested,
    MessageReceived,
    QoS,
    Session,
    SessionClosed,
    SessionReady,
)
from edgewire.transport.session import EndpointLog

if TYPE_CHECKING:
    from edgewire.traces.endpoint_log import EndpointLogWriter

__all__ = ["Channel", "Connection", "EndpointLogTarget"]

#: What ``connect(endpoint_log=...)`` and ``serve(endpoint_log=...)`` take: a file to
#: write an endpoint log to, or an :class:`~edgewire.transport.session.EndpointLog`
#: object (e.g. an ``EndpointLogWriter`` the caller opened and closes).
EndpointLogTarget = str | os.PathLike[str] | EndpointLog

logger = logging.getLogger("edgewire.aio")

#: Messages a real-time channel holds for a slow reader before dropping the oldest.
K_REALTIME_BACKLOG = 256
#: Messages a reliable channel holds for a slow reader before the session is closed
#: (RECEIVE_BUFFER_OVERFLOW): reliable data can be neither dropped nor held without bound.
K_RELIABLE_BACKLOG = 65536
#: Application messages held before the oldest is dropped.
K_APP_BACKLOG = 1024


class _ChannelView:
    """What every asyncio channel shows: its info as properties, and ``async for``
    over ``recv()`` until the channel or connection ends."""

    info: ChannelInfo

    @property
    def id(self) -> int:
        """Channel id within the session."""
        return self.info.channel_id

    @property
    def kind(self) -> ChannelKind:
        """Kind of payload."""
        return self.info.kind

    @property
    def name(self) -> str:
        """Name given when it was opened (the same on every path of a multi-session)."""
        return self.info.name

    @property
    def qos(self) -> QoS:
        """Delivery settings."""
        return self.info.qos

    async def recv(self) -> MessageReceived:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[MessageReceived]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MessageReceived]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedError:
                return


class Channel(_ChannelView):
    """One channel of a :class:`Connection`: ``await send(...)``, ``async for msg in ch``."""

    def __init__(self, conn: Connection, info: ChannelInfo) -> None:
        self._conn = conn
        self.info = info
        self._inbox: deque[MessageReceived] = deque()
        self._readable: asyncio.Future[None] | None = None
        self._closed_by_peer = False
        self.reader_dropped = 0
        """Real-time messages dropped because the application did not read them in time."""
        self.bitrate_bps: float | None = None
        """This channel's latest share of the bandwidth estimate (local channels; None
        until the first BitrateChanged)."""
        self.on_bitrate: Callable[[float], None] | None = None
        """Called with each new share: an encoder sets its bitrate here."""
        self.on_keyframe_request: Callable[[], None] | None = None
        """Called when the peer asks for a keyframe on this (local video) channel: the
        encoder makes its next frame one (``Encoder.request_keyframe``)."""
        self.keyframe_requests = 0
        """Keyframe requests the peer sent for this channel."""
        self.auto_keyframe_request = True
        """For a video channel the peer sends on: ask the peer for a keyframe whenever a
        frame is lost (the decoder cannot go on without one)."""
        self.frames_lost = 0
        """Frames of this (peer's real-time) channel reported lost or late."""

    def request_keyframe(self) -> bool:
        """Ask the peer for a keyframe on this video channel (it sends on it); False when
        a request went out too recently (see ``Session.request_keyframe``)."""
        conn = self._conn
        sent = conn.session.request_keyframe(self.id, now=conn.loop.time())
        conn._transmit()
        return sent

    def send_nowait(
        self, payload: Any, *, keyframe: bool = False, timestamp: float | None = None
    ) -> None:
        """Queue a message now; QueueFullError if a reliable channel's queue is full."""
        conn = self._conn
        conn.session.send(self.id, payload, now=conn.loop.time(), timestamp=timestamp,
                          keyframe=keyframe)
        conn._schedule_transmit()

    async def send(
        self, payload: Any, *, keyframe: bool = False, timestamp: float | None = None
    ) -> None:
        """Queue a message. On a reliable channel, waits while the send queue is full;
        a real-time channel never waits (its queue drops the oldest frames instead)."""
        while True:
            try:
                self.send_nowait(payload, keyframe=keyframe, timestamp=timestamp)
                return
            except QueueFullError:
                # only reliable queues refuse; the encoded size is known only to the
                # session, so retry after the scheduler has made progress
                await self._wait_shrink(self._conn.session.queued_bytes(self.id))

    async def _wait_shrink(self, queued: int) -> None:
        session = self._conn.session
        await self._conn._wait_for(lambda: session.queued_bytes(self.id) < queued)

    async def drain(self, low_water_bytes: int = 0) -> None:
        """Wait until at most ``low_water_bytes`` of this channel remain unsent."""
        conn = self._conn
        await conn._wait_for(lambda: conn.session.queued_bytes(self.id) <= low_water_bytes)

    async def recv(self) -> MessageReceived:
        """Next message; raises ConnectionClosedError when the channel or session ends."""
        conn = self._conn
        # a reader waits on its own future, woken only by its channel (or by the end)
        while not self._inbox and not self._closed_by_peer and not conn.closed:
            if self._readable is None or self._readable.done():
                self._readable = conn.loop.create_future()
            await self._readable
        if self._inbox:
            return self._inbox.popleft()
        if self._closed_by_peer:
            raise ConnectionClosedError(f"channel {self.name!r} closed by the peer")
        raise ConnectionClosedError("session closed", error_code=conn.close_code)

    async def close(self) -> None:
        """Send nothing more; the peer's iterator ends after the last message."""
        conn = self._conn
        conn.session.close_channel(self.id, now=conn.loop.time())
        conn._schedule_transmit()

    def stats(self) -> ChannelStats:
        """Live counters of this channel."""
        return self._conn.session.channel_stats(self.id)

    def _deliver(self, event: MessageReceived) -> None:
        inbox = self._inbox
        if self.qos.reliable:
            if len(inbox) >= K_RELIABLE_BACKLOG:
                self._conn._close_now(ErrorCode.RECEIVE_BUFFER_OVERFLOW,
                                      f"application stopped reading channel {self.name!r}")
                return
        elif len(inbox) >= K_REALTIME_BACKLOG:
            inbox.popleft()
            self.reader_dropped += 1
        inbox.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)


def check_udp_socket(sock: object) -> None:
    """A clear error for a socket handed to ``serve`` or ``connect`` that edgewire cannot
    run on: it must be a UDP socket of IPv4 or IPv6."""
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        raise LocalProtocolError(f"sock must be a UDP (SOCK_DGRAM) socket, got {sock!r}")
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise LocalProtocolError(f"sock must be an IPv4 or IPv6 socket, got {sock.family!r}")


def open_endpoint_log(path: str | os.PathLike[str]) -> EndpointLogWriter:
    """A new endpoint log file at ``path`` (its folder is created)."""
    from edgewire.traces.endpoint_log import EndpointLogWriter

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalProtocolError(f"cannot write {target}: {exc.strerror}") from None
    return EndpointLogWriter(target)


class Connection:
    """An established edgewire session on an asyncio loop (from ``connect`` or ``serve``)."""

    def __init__(
        self,
        session: Session,
        send: Callable[[bytes, NetworkAddress], None],
        *,
        on_closed: Callable[[Connection], None] | None = None,
    ) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self._send = send
        self._on_closed = on_closed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_scheduled = False
        self._wakeup: asyncio.Future[None] | None = None
        self._channels: dict[int, Channel] = {}
        self._incoming: deque[Channel] = deque()
        self._app: deque[Any] = deque(maxlen=K_APP_BACKLOG)
        self.ready = False
        self.closed = False
        self.close_code = 0
        self.close_reason = ""
        self._owned_log: EndpointLogWriter | None = None

    # ---------------------------------------------------------------- public API

    async def channel(
        self, kind: ChannelKind | str, *, name: str | None = None, qos: QoS | None = None
    ) -> Channel:
        """Open a channel of ``kind`` ("audio", "video", "tokens" or "embeddings")."""
        cid = self.session.open_channel(kind, name=name, qos=qos, now=self.loop.time())
        ch = self._channels[cid] = Channel(self, self.session.channel_info(cid))
        self._schedule_transmit()
        return ch

    async def accept(self) -> Channel:
        """Wait for the next channel the peer opens."""
        await self._wait_for(lambda: bool(self._incoming), allow_closed=True)
        if self._incoming:
            return self._incoming.popleft()
        raise ConnectionClosedError("session closed", error_code=self.close_code)

    async def send_app_message(self, body: Any) -> None:
        """Send a small CBOR value to the peer (see ``recv_app_message``)."""
        self.session.send_app_message(body, now=self.loop.time())
        self._schedule_transmit()

    async def recv_app_message(self) -> Any:
        """Next application message from the peer."""
        await self._wait_for(lambda: bool(self._app), allow_closed=True)
        if self._app:
            return self._app.popleft()
        raise ConnectionClosedError("session closed", error_code=self.close_code)

    def stats(self) -> dict[str, Any]:
        """Session statistics (see :meth:`Session.stats`)."""
        return self.session.stats()

    @property
    def bandwidth_estimate_bps(self) -> float:
        """The session's bandwidth estimate, bits per second (docs/BWE.md)."""
        return self.session.bandwidth_estimate_bps

    def bwe_state(self) -> dict[str, Any]:
        """The estimator's state and feedback counters (see :meth:`Session.bwe_state`)."""
        return self.session.bwe_state()

    async def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close the connection and wait until the close has been sent."""
        self._close_now(error_code, reason)
        await asyncio.sleep(0)

    async def wait_closed(self) -> None:
        """Wait until the session is closed by either side."""
        await self._wait_for(lambda: self.closed, allow_closed=True)

    async def wait_ready(self) -> None:
        """Wait for the edgewire hello to complete."""
        await self._wait_for(lambda: self.ready, allow_closed=True)
        if not self.ready:
            raise ConnectionClosedError(
                f"connection closed during setup: {self.close_reason or 'no reason'}",
                error_code=self.close_code, reason=self.close_reason)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.closed:
            await self.close()

    # ---------------------------------------------------------------- endpoint log

    def _attach_log(self, target: EndpointLogTarget | None,
                    owned: EndpointLogWriter | None = None) -> None:
        """Record the session's messages to ``target``: a path is opened here and closed
        with the session (as is ``owned``), an object is only attached (its owner closes
        it)."""
        if isinstance(target, str | os.PathLike):
            owned = open_endpoint_log(target)
            target = owned
        self._owned_log = owned
        if target is not None:
            self.session.set_endpoint_log(target)

    def _release_log(self) -> None:
        """Detach and close a log this connection opened (once the session is closed)."""
        owned, self._owned_log = self._owned_log, None
        if owned is not None:
            if self.session.endpoint_log is owned:
                self.session.set_endpoint_log(None)
            owned.close()

    # ---------------------------------------------------------------- driver

    def _receive(self, data: bytes, addr: NetworkAddress,
                 socket_drops: int | None = None) -> None:
        """Feed one UDP datagram without transmitting: a batch of them is answered by one
        ``_transmit`` at its end (``edgewire.aio.udp``). ``socket_drops``: the receiving
        endpoint's ``socket_drops``."""
        self.session.receive_datagram(data, addr, now=self.loop.time(),
                                      socket_drops=socket_drops)
        self._process_events()

    def _schedule_transmit(self) -> None:
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self.loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        self._transmit_scheduled = False
        session = self.session
        for data, addr in session.datagrams_to_send(now=self.loop.time()):
            self._send(data, addr)
        self._process_events()
        self._arm_timer()
        self._notify()

    def _arm_timer(self) -> None:
        at = self.session.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = None if at is None else self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.session.handle_timer(now=self.loop.time())
        self._process_events()
        self._transmit()

    def _process_events(self) -> None:
        session = self.session
        woke = False
        while (event := session.next_event()) is not None:
            if isinstance(event, MessageReceived):
                ch = self._channels.get(event.channel_id)
                if ch is not None:
                    ch._deliver(event)
            elif isinstance(event, ChannelOpened):
                ch = self._channels[event.channel_id] = Channel(
                    self, session.channel_info(event.channel_id))
                self._incoming.append(ch)
                woke = True
            elif isinstance(event, ChannelClosed):
                if (ch := self._channels.get(event.channel_id)) is not None:
                    ch._closed_by_peer = True
                    ch._wake()
            elif isinstance(event, FrameLost):
                ch = self._channels.get(event.channel_id)
                if ch is not None:
                    ch.frames_lost += 1
                    if (ch.auto_keyframe_request and not ch.info.local
                            and ch.info.kind is ChannelKind.VIDEO and not session.closed):
                        session.request_keyframe(event.channel_id, now=self.loop.time())
            elif isinstance(event, KeyframeRequested):
                if (ch := self._channels.get(event.channel_id)) is not None:
                    ch.keyframe_requests += 1
                    if ch.on_keyframe_request is not None:
                        ch.on_keyframe_request()
            elif isinstance(event, BitrateChanged):
                if (ch := self._channels.get(event.channel_id)) is not None:
                    ch.bitrate_bps = event.bitrate_bps
                    if ch.on_bitrate is not None:
                        ch.on_bitrate(event.bitrate_bps)
            elif isinstance(event, AppMessageReceived):
                self._app.append(event.body)
                woke = True
            elif isinstance(event, SessionReady):
                self.ready = True
                woke = True
            elif isinstance(event, SessionClosed):
                self.closed = True
                self.close_code = event.error_code
                self.close_reason = event.reason
                woke = True
                logger.debug("session closed: code %s %s", event.error_code, event.reason)
                self._release_log()
                for ch in self._channels.values():
                    ch._wake()
                if self._on_closed is not None:
                    self._on_closed(self)
        if woke:
            self._notify()

    def _close_now(self, error_code: int, reason: str) -> None:
        if not self.session.closed:
            self.session.close(error_code, reason, now=self.loop.time())
        self._process_events()
        self._transmit()

    def _notify(self) -> None:
        if self._wakeup is not None:
            if not self._wakeup.done():
                self._wakeup.set_result(None)
            self._wakeup = None

    async def _wait_for(self, condition: Callable[[], bool], *, allow_closed: bool = False) -> None:
        while not condition():
            if self.closed:
                if allow_closed:
                    return
                raise ConnectionClosedError(
                    f"session closed (code {self.close_code}: {self.close_reason})",
                    error_code=self.close_code, reason=self.close_reason)
            if self._wakeup is None:
                self._wakeup = self.loop.create_future()
            await self._wakeup
