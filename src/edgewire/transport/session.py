"""The edgewire session: four kinds of channel over one aioquic ``QuicConnection``, sans-I/O.

A driver (``edgewire.aio`` over UDP sockets, ``edgewire.netsim`` in virtual time) feeds it
datagrams and timer expiries with the current time, sends what ``datagrams_to_send`` returns
and re-arms its timer from ``get_timer``. After every call it drains ``next_event``.

With :meth:`Session.set_endpoint_log` a session records every channel message it sends and
delivers (an :class:`EndpointLog`, e.g. ``edgewire.traces.endpoint_log.EndpointLogWriter``):
two endpoints' logs give exact per-channel loss and one-way delay (docs/TRACES.md).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection

from edgewire.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
)
from edgewire.transport import control as ctl
from edgewire.transport import fec, quicstats
from edgewire.transport.bwe import PacketResult
from edgewire.transport.channel import ChannelInfo, ChannelState
from edgewire.transport.config import ALPN, K_MIN_ACK_DELAY, SessionConfig
from edgewire.transport.events import (
    AppMessageReceived,
    BitrateChanged,
    ChannelOpened,
    Event,
    KeyframeRequested,
    MessageReceived,
    SessionClosed,
    SessionReady,
)
from edgewire.transport.messages import TokenMessage, encode_array, encode_tokens
from edgewire.transport.qos import ChannelKind, QoS, default_qos
from edgewire.transport.ratecontrol import RateController
from edgewire.transport.receive import Receiver
from edgewire.transport.recovery import ReceiveRecovery, SendRecovery
from edgewire.transport.scheduler import PriorityOrder, earliest
from edgewire.transport.stats import ChannelStats, SessionCounters
from edgewire.transport.wire import (
    FEC_HEADER_SIZE,
    FLAG_KEYFRAME,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    ErrorCode,
    RecordReader,
    encode_header,
    encode_record,
    encode_record_header,
    encode_stream_prefix,
    with_sequence,
)

__all__ = ["EndpointLog", "Session"]

#: Packet bytes around a DATAGRAM payload, counted against the congestion window.
K_DATAGRAM_OVERHEAD = 40  # bytes
#: When the client probes the clock offset again, counted from the hello: quick probes
#: first (the hello's own sample is skewed by handshake processing), then every 10 s.
K_CLOCK_PROBES = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)  # seconds
K_CLOCK_PROBE_INTERVAL = 10.0  # seconds
#: Fewest seconds between two keyframe requests for one channel: a keyframe takes about
#: one RTT to come, and every lost frame until then would otherwise ask again.
K_KEYFRAME_REQUEST_INTERVAL = 0.2  # seconds
#: Key of the application messages that carry multipath control (docs/MULTIPATH.md);
#: a hello under it switches the session's reliable records to the multipath header.
K_MULTIPATH_KEY = "edgewire.mp"
#: Versions this implementation speaks.
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)


class EndpointLog(Protocol):
    """Where a session records its channel messages (:meth:`Session.set_endpoint_log`);
    ``edgewire.traces.endpoint_log.EndpointLogWriter`` writes them to a file.

    ``channel`` is ``"<name>#<id>"`` (the id tells apart channels of one name and is the
    same on both sides), ``seq`` the message's number on its channel: the frame id of an
    audio or video frame, the message index (0, 1, 2, ...) on a tokens or embeddings
    channel. ``size_bytes`` is the frame's payload, or the encoded record of a reliable
    message; the receiver logs the same figures for the same message."""

    def sent(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        """The application handed message ``seq`` of ``channel`` to the session."""

    def received(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        """The session delivered message ``seq`` of ``channel`` to the application."""


class Session(Receiver):
    """One edgewire session (client or server side) over one QUIC connection."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        *,
        config: SessionConfig | None = None,
        original_destination_connection_id: bytes | None = None,
    ) -> None:
        if ALPN not in (configuration.alpn_protocols or []):
            raise LocalProtocolError(f"QUIC configuration must offer ALPN {ALPN!r}")
        if not configuration.max_datagram_frame_size:
            raise LocalProtocolError("QUIC configuration must enable DATAGRAM frames")
        super().__init__(config or SessionConfig(), is_client=configuration.is_client)
        self.quic = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
        )
        quicstats.set_ack_delay(self.quic, self.config.ack_delay)
        self._rate = RateController(self.quic, estimator=self.config.estimator,
                                    config=self.config.bwe)
        self._ack_every_second = self.config.ack_delay > K_MIN_ACK_DELAY
        self._order = PriorityOrder()
        self._backlog: set[int] = set()  # channels with data queued in edgewire
        self._next_local_id = 0 if self.is_client else 1
        self._control_stream: int | None = None
        self._control_reader = RecordReader(max_record=ctl.MAX_CONTROL_RECORD)
        self._hello_deadline: float | None = None
        self.version: int | None = None
        self._clock_rtt = math.inf  # round trip of the best clock sample so far
        self._keyframe_asked: dict[int, float] = {}  # peer's video channel -> last request
        self._keyframe_told: dict[int, float] = {}  # own video channel -> last event
        self.keyframe_requests_sent = 0
        """Keyframe requests sent to the peer."""
        self.keyframe_requests_suppressed = 0
        """Keyframe requests not sent: one for the channel went out within
        ``K_KEYFRAME_REQUEST_INTERVAL`` (or an RTT)."""
        self.keyframe_requests_received = 0
        """Keyframe requests from the peer for this side's video channels."""
        self._probe_at: float | None = None
        self._probes_sent = 0
        self._hello_done_at = 0.0
        self.connection_ids_changed = True
        """Set when QUIC issues or retires connection ids (a server re-reads its routes)."""
        self.idle_sends_skipped = 0
        self._recovering: list[ChannelState] = []  # real-time channels with recovery state
        self._elastic = False  # a local video or embeddings channel exists
        self._solo: deque[bytes] = deque()  # parity datagrams, each to go in its own packet
        """``datagrams_to_send`` calls answered without asking aioquic (skip_idle_sends)."""
        self.multipath: dict[str, Any] | None = None
        """Set when the session belongs to a multi-endpoint session (the client sets it,
        the server learns it from the peer's multipath hello): reliable records then start
        with a multipath sequence number and are delivered undecoded (bytes) for
        ``edgewire.health.multipath`` to order, deduplicate and decode."""
        self.last_received: float | None = None
        """When the last UDP datagram from the network arrived (None before the first);
        the health monitor's silence detection reads it."""
        self._endpoint_log: EndpointLog | None = None

    # ------------------------------------------------------------------ driver interface

    def connect(self, addr: NetworkAddress, *, now: float) -> None:
        """Start the QUIC handshake (client only)."""
        if not self.is_client:
            raise LocalProtocolError("connect() is for the client side")
        self.quic.connect(addr, now=now)
        self._hello_deadline = now + self.config.hello_timeout

    def receive_datagram(self, data: bytes, addr: NetworkAddress, *, now: float,
                         socket_drops: int | None = None) -> None:
        """Process one UDP datagram from the network. ``socket_drops``: when the driver
        knows it, how many datagrams the receiving socket has dropped so far (a running
        total, as ``edgewire.aio.udp.UdpEndpoint.socket_drops`` counts them); what it
        dropped since this session last heard is reported to the peer's estimator."""
        if socket_drops is not None:
            self._rate.on_socket_drops(socket_drops, now)
        if self._hello_deadline is None and not self.is_client:
            self._hello_deadline = now + self.config.hello_timeout
        if self._ack_every_second:
            quicstats.receive_datagram_acking_pairs(self.quic, data, addr, now, K_MIN_ACK_DELAY)
        else:
            self.quic.receive_datagram(data, addr, now=now)
        self.last_received = now
        self._rate.on_received(now)
        self._process_quic_events(now)

    def handle_timer(self, *, now: float) -> None:
        """Call when the time from ``get_timer`` has come."""
        qt = self.quic.get_timer()
        if qt is not None and qt <= now:
            self.quic.handle_timer(now=now)
            self._process_quic_events(now)
        if not self.ready and self._hello_deadline is not None and now >= self._hello_deadline:
            self.close(ErrorCode.HELLO_TIMEOUT, "edgewire hello did not complete", now=now)
        if self._probe_at is not None and now >= self._probe_at and not self.closed:
            self._send_control(ctl.Ping(clock=now))
            self._probes_sent += 1
            self._schedule_probe()
        self._expire_receive(now)
        if self.ready and not self.closed:
            if self._recovering:
                self._recovery_timers(now)
            self._rate_timers(now)
        for cid in list(self._backlog):
            dq = self._channels[cid].dgram_queue
            if dq is not None:
                dq.expire(now)
                if not len(dq):
                    self._backlog.discard(cid)

    def get_timer(self) -> float | None:
        """Earliest time at which ``handle_timer`` must be called, or None."""
        timer = self.quic.get_timer()
        if self.closed:
            return timer
        for cid in self._backlog:
            dq = self._channels[cid].dgram_queue
            if dq is not None:
                timer = earliest(timer, dq.next_deadline())
        # called after every send and delivery: plain comparisons where it is hot
        if self.version is None:  # not ready
            timer = earliest(timer, self._hello_deadline)
        else:
            rate = self._rate
            t = rate.get_timer()
            if t is not None and (timer is None or t < timer):
                timer = t
            if self._local_sending:
                t = rate.next_allocation
                if timer is None or t < timer:
                    timer = t
        for state in self._recovering:
            # a channel has one half or the other
            rec = state.send_recovery or state.receive_recovery
            t = rec.get_timer() if rec is not None else None
            if t is not None and (timer is None or t < timer):
                timer = t
        t = self._probe_at
        if t is not None and (timer is None or t < timer):
            timer = t
        t = self._receive_timer()
        if t is not None and (timer is None or t < timer):
            timer = t
        return timer

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, NetworkAddress]]:
        """UDP datagrams to send now, with their destinations."""
        if self.ready and not self.closed:
            rate = self._rate
            for datagram in reversed(rate.feedback(now, with_data=bool(self._backlog))):
                quicstats.send_datagram_first(self.quic, datagram)
            if self._elastic:  # probes find capacity for what can use more of it
                room = quicstats.max_datagram_payload(self.quic)
                for datagram in rate.probe_padding(now, room):
                    self.quic.send_datagram_frame(datagram)
        if self._backlog and self.ready and not self.closed:
            self._fill(now)
        elif (self.config.skip_idle_sends and not self._solo
              and quicstats.nothing_to_send(self.quic, now)):
            self.idle_sends_skipped += 1
            return []
        datagrams = self._quic_datagrams(now)
        # aioquic packs every pending DATAGRAM frame into as few packets as it can; parity
        # packed with the media it protects would be lost with it, so each parity datagram
        # is handed over alone and gets a QUIC packet of its own
        solo = self._solo
        while solo and not self.closed:
            parity = solo.popleft()
            if len(parity) > quicstats.max_datagram_payload(self.quic):
                # aioquic would hold it at the head of its queue forever (the path's
                # datagram size shrank after the media was cut); never stall for parity
                self._counters.parity_too_large += 1
                continue
            self.quic.send_datagram_frame(parity)
            datagrams += self._quic_datagrams(now)
        return datagrams

    def _quic_datagrams(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        quicstats.ack_with_data(self.quic, now)
        if not self.config.stable_stream_order:
            return self.quic.datagrams_to_send(now=now)
        marks = quicstats.stream_send_marks(self.quic)
        datagrams = self.quic.datagrams_to_send(now=now)
        quicstats.stabilize_stream_order(self.quic, marks)
        return datagrams

    def next_event(self) -> Event | None:
        """Next event for the application, or None."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ application API

    @property
    def ready(self) -> bool:
        """True once the hello exchange is done and channels can be used."""
        return self.version is not None

    def open_channel(
        self, kind: ChannelKind | str, *, name: str | None = None, qos: QoS | None = None,
        now: float,
    ) -> int:
        """Open a channel of ``kind``; returns its id. The peer gets a ChannelOpened event."""
        self._check_usable()
        base = default_qos(kind)  # raises LocalProtocolError for an unknown kind
        kind = ChannelKind(kind)
        qos = qos or base
        if qos.reliable != kind.reliable:
            raise LocalProtocolError(f"{kind.value} channels must have reliable={kind.reliable}")
        name = kind.value if name is None else name
        if len(name) > 256:
            raise LocalProtocolError("channel name longer than 256 characters")
        if self._next_local_id > 0xFFFF:
            raise LocalProtocolError("no channel ids left in this session")
        channel_id = self._next_local_id
        self._next_local_id += 2
        info = ChannelInfo(channel_id=channel_id, kind=kind, name=name, qos=qos, local=True)
        self._add_channel(info)
        self._send_control(ctl.OpenChannel(channel_id=channel_id, kind=kind, name=name, qos=qos))
        return channel_id

    def send(
        self,
        channel_id: int,
        payload: Any,
        *,
        now: float,
        timestamp: float | None = None,
        keyframe: bool = False,
    ) -> None:
        """Queue one message: bytes (audio, video), TokenMessage or a sequence of token ids
        (tokens), or a numpy array (embeddings). ``timestamp`` is the capture time on this
        side's clock (default ``now``); real-time deadlines count from it."""
        self._check_usable()
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id} in this session")
        if state.closed_local:
            raise LocalProtocolError(f"channel {channel_id} is closed")
        info = state.info
        ts = now if timestamp is None else timestamp
        if info.kind is ChannelKind.TOKENS:
            if isinstance(payload, TokenMessage):
                body = encode_tokens(tuple(payload.ids), payload.text, ts,
                                     logprobs=payload.logprobs, end=payload.end,
                                     error=payload.error)
            elif isinstance(payload, Sequence) and not isinstance(payload, str | bytes):
                body = encode_tokens(tuple(payload), None, ts)
            else:
                raise LocalProtocolError("tokens channels send a TokenMessage or token ids")
            self._queue_record(state, body, len(body))
            size = len(body)
        elif info.kind is ChannelKind.EMBEDDINGS:
            body = encode_array(payload, ts)
            self._queue_record(state, body, len(body))
            size = len(body)
        else:
            if not isinstance(payload, bytes | bytearray | memoryview):
                raise LocalProtocolError(f"{info.kind.value} channels send bytes")
            frame = bytes(payload)
            self._queue_frame(state, frame, ts, keyframe, now)
            size = len(frame)
        if self._endpoint_log is not None:
            self._log_sent(state, size, now)

    def send_record(self, channel_id: int, body: bytes, *, now: float) -> None:
        """Queue an already-encoded record on a reliable channel (the multipath layer
        puts its sequence header in front of a token frame or array envelope)."""
        self._check_usable()
        state = self._channels.get(channel_id)
        if state is None or not state.info.local or not state.info.qos.reliable:
            raise LocalProtocolError(f"channel {channel_id} is not a reliable channel of "
                                     "this side")
        if state.closed_local:
            raise LocalProtocolError(f"channel {channel_id} is closed")
        self._queue_record(state, bytes(body), len(body))
        if self._endpoint_log is not None:
            self._log_sent(state, len(body), now)

    def set_next_frame_id(self, channel_id: int, frame_id: int) -> None:
        """Number the next frame of a local real-time channel ``frame_id``: a multipath
        sender keeps one frame counter across paths, so the receiver sees the frames lost
        in a switch as a gap, not a restart."""
        state = self._channels.get(channel_id)
        if state is None or not state.info.local or state.info.qos.reliable:
            raise LocalProtocolError(f"channel {channel_id} is not a real-time channel of "
                                     "this side")
        state.next_frame = frame_id & 0xFFFFFFFF

    def close_channel(self, channel_id: int, *, now: float) -> None:
        """Send nothing more on a channel; queued data is still delivered."""
        self._check_usable()
        state = self._channels.get(channel_id)
        if state is None or state.closed_local:
            raise LocalProtocolError(f"channel {channel_id} is not open")
        state.closed_local = True
        if state.stream_queue is not None and state.out_stream_id is not None:
            state.fin_pending = True
            self._backlog.add(channel_id)
        self._send_control(ctl.CloseChannel(channel_id=channel_id,
                                            messages=state.stats.sent_messages))

    def request_keyframe(self, channel_id: int, *, now: float) -> bool:
        """Ask the peer for a keyframe on one of its video channels (a frame was lost or
        could not be decoded). Returns False when a request for the channel went out
        less than ``K_KEYFRAME_REQUEST_INTERVAL`` (or one RTT, if longer) ago: the
        keyframe asked for then is still on its way."""
        self._check_usable()
        state = self._channels.get(channel_id)
        if state is None or state.info.local or state.info.kind is not ChannelKind.VIDEO:
            raise LocalProtocolError(f"channel {channel_id} is not a video channel the "
                                     "peer sends on")
        interval = max(K_KEYFRAME_REQUEST_INTERVAL, quicstats.smoothed_rtt(self.quic))
        last = self._keyframe_asked.get(channel_id)
        if last is not None and now - last < interval:
            self.keyframe_requests_suppressed += 1
            return False
        self._keyframe_asked[channel_id] = now
        self.keyframe_requests_sent += 1
        self._send_control(ctl.KeyframeRequest(channel_id=channel_id))
        return True

    def send_app_message(self, body: Any, *, now: float) -> None:
        """Send a small CBOR-encodable value to the peer on the control stream."""
        self._check_usable()
        try:
            record = ctl.encode_control(ctl.AppMessage(body=body))
        except Exception as exc:  # cbor2 raises several types for values it cannot encode
            raise LocalProtocolError(f"app message body is not CBOR-encodable: {exc}") from None
        if len(record) > ctl.MAX_CONTROL_RECORD:
            raise MessageTooLargeError(
                f"app message of {len(record)} bytes exceeds {ctl.MAX_CONTROL_RECORD}")
        assert self._control_stream is not None
        self.quic.send_stream_data(self._control_stream, encode_record(record))

    def close(self, error_code: int = ErrorCode.NO_ERROR, reason: str = "", *, now: float) -> None:
        """Close the connection with an application error code (0: clean close)."""
        if self.closed:
            return
        self.quic.close(error_code=int(error_code), reason_phrase=reason)
        self._finish(int(error_code), reason, by_peer=False)

    def can_send(self, channel_id: int, size: int) -> bool:
        """True if a reliable channel's queue would take ``size`` more bytes now."""
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id} in this session")
        return state.stream_queue.has_room(size) if state.stream_queue is not None else True

    def queued_bytes(self, channel_id: int) -> int:
        """Bytes of a channel still waiting in edgewire's or aioquic's send buffers."""
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id} in this session")
        unsent = 0
        if state.out_stream_id is not None:
            unsent = quicstats.unsent_stream_bytes(self.quic, state.out_stream_id)
        return state.queued_bytes() + unsent

    def channel_info(self, channel_id: int) -> ChannelInfo:
        """Kind, name and QoS of a channel."""
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id} in this session")
        return state.info

    def channel_stats(self, channel_id: int) -> ChannelStats:
        """Live counters of one channel (sender and receiver sides)."""
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id} in this session")
        stats = state.stats
        if state.dgram_queue is not None:
            stats.expired = state.dgram_queue.expired
            stats.dropped_queue_full = state.dgram_queue.dropped
        return stats

    @property
    def channels(self) -> list[ChannelInfo]:
        """Every channel of the session, local and remote."""
        return [s.info for s in self._channels.values()]

    @property
    def counters(self) -> SessionCounters:
        """Session-wide drop counters."""
        return self._counters

    def quic_stats(self) -> quicstats.QuicStats:
        """RTT, congestion window and bytes in flight of the QUIC connection."""
        return quicstats.read_quic_stats(self.quic)

    def stats(self) -> dict[str, Any]:
        """Everything in one JSON-ready dict: QUIC state, drop counters, every channel."""
        q = self.quic_stats()
        return {
            "rtt_ms": {k: None if v is None else round(v * 1000, 3) for k, v in (
                ("latest", q.rtt_latest), ("smoothed", q.rtt_smoothed), ("min", q.rtt_min))},
            "cwnd_bytes": q.cwnd_bytes,
            "bytes_in_flight": q.bytes_in_flight,
            "bandwidth_estimate_kbps": round(self._rate.target_bps / 1000, 1),
            "clock_offset_ms": round(self.clock_offset * 1000, 3),
            "counters": {k: getattr(self._counters, k) for k in self._counters.__slots__},
            "channels": {
                f"{s.info.name}#{cid}": {"kind": s.info.kind.value, "local": s.info.local,
                                         **self.channel_stats(cid).as_dict(),
                                         **self._recovery_summary(s)}
                for cid, s in self._channels.items()
            },
        }

    def set_endpoint_log(self, log: EndpointLog | None) -> None:
        """Record every channel message from now on: ``log.sent`` when the application
        hands one to :meth:`send` (after it was queued; refused messages are not
        recorded), ``log.received`` when one is delivered (a ``MessageReceived`` event;
        frames lost, late or dropped for a full event queue are not). Both get this
        session's ``now``. None stops recording. Recording changes nothing else; closing
        the log is the caller's business (detach it first)."""
        self._endpoint_log = log

    @property
    def endpoint_log(self) -> EndpointLog | None:
        """The log attached with :meth:`set_endpoint_log`, or None."""
        return self._endpoint_log

    @staticmethod
    def _log_channel(state: ChannelState) -> str:
        name = state.info.name
        if "," in name or "\n" in name or "\r" in name:  # the log is comma-separated lines
            name = name.replace(",", "_").replace("\n", "_").replace("\r", "_")
        return f"{name}#{state.channel_id}"

    def _log_sent(self, state: ChannelState, size: int, now: float) -> None:
        assert self._endpoint_log is not None
        if state.info.qos.reliable:
            seq = state.stats.sent_messages - 1
        else:
            seq = (state.next_frame - 1) & 0xFFFFFFFF
        self._endpoint_log.sent(now=now, channel=self._log_channel(state), seq=seq,
                                size_bytes=size)

    def _deliver_frame(
        self, state: ChannelState, frame_id: int, payload: bytes, capture: float,
        keyframe: bool, now: float,
    ) -> None:
        log = self._endpoint_log
        if log is None:
            super()._deliver_frame(state, frame_id, payload, capture, keyframe, now)
            return
        delivered, dropped = state.stats.delivered, self._counters.events_dropped
        super()._deliver_frame(state, frame_id, payload, capture, keyframe, now)
        if (state.stats.delivered != delivered
                and self._counters.events_dropped == dropped):
            log.received(now=now, channel=self._log_channel(state), seq=frame_id,
                         size_bytes=len(payload))

    # ------------------------------------------------------------------ sending internals

    def _check_usable(self) -> None:
        if self.closed:
            raise ConnectionClosedError("session is closed", error_code=self._close_code)
        if not self.ready:
            raise LocalProtocolError("session is not ready yet (wait for SessionReady)")

    def _queue_record(self, state: ChannelState, body: bytes, size: int) -> None:
        if size > state.info.qos.max_message_bytes:
            raise MessageTooLargeError(
                f"{size}-byte message exceeds the channel's max_message_bytes "
                f"({state.info.qos.max_message_bytes})"
            )
        assert state.stream_queue is not None
        if state.out_stream_id is None:
            state.out_stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
            self.quic.send_stream_data(state.out_stream_id, encode_stream_prefix(state.channel_id))
        state.stream_queue.push(encode_record_header(len(body)), body)
        self._backlog.add(state.channel_id)
        state.stats.sent_messages += 1
        state.stats.sent_bytes += size

    def _queue_frame(
        self, state: ChannelState, payload: bytes, ts: float, keyframe: bool, now: float
    ) -> None:
        qos = state.info.qos
        if len(payload) > qos.max_message_bytes:
            raise MessageTooLargeError(
                f"{len(payload)}-byte frame exceeds max_message_bytes ({qos.max_message_bytes})"
            )
        room = quicstats.max_datagram_payload(self.quic) - HEADER_SIZE
        if state.send_recovery is not None and self.config.recovery.uses_fec:
            # a parity datagram carries a whole media datagram, its length and the FEC
            # header: media must leave that much room for parity to fit a QUIC packet
            room -= FEC_HEADER_SIZE + fec.PREFIX_BYTES
        count = max(1, -(-len(payload) // room))
        if count > 1 and state.info.kind is ChannelKind.AUDIO:
            raise MessageTooLargeError(
                f"{len(payload)}-byte audio frame does not fit one datagram ({room} bytes); "
                "audio frames are never fragmented"
            )
        if count > 0xFFFF:
            raise MessageTooLargeError("frame needs more than 65535 fragments")
        frame_id = state.next_frame
        state.next_frame = (frame_id + 1) & 0xFFFFFFFF
        ts_us = round(ts * 1e6)
        flags = FLAG_KEYFRAME if keyframe else 0
        datagrams = []
        for i in range(count):
            # the sequence number is set when the datagram is handed to QUIC
            header = encode_header(
                channel_id=state.channel_id, sequence=0, timestamp_us=ts_us,
                frame_id=frame_id, frag_index=i, frag_count=count, flags=flags,
            )
            datagrams.append(header + payload[i * room : (i + 1) * room])
        assert state.dgram_queue is not None
        assert qos.deadline_ms is not None
        state.dgram_queue.push(datagrams, deadline=ts + qos.deadline_ms / 1000.0)
        self._backlog.add(state.channel_id)
        state.stats.sent_messages += 1
        state.stats.sent_bytes += len(payload)

    def _fill(self, now: float) -> None:
        """Hand aioquic what the congestion window can take now, highest priority first.

        Data already inside aioquic (unsent stream bytes, pending DATAGRAMs) counts against
        the window first, so a lower-priority channel never crowds out a higher one.
        """
        quic = self.quic
        pending = (quicstats.pending_datagram_bytes(quic)
                   + K_DATAGRAM_OVERHEAD * quicstats.pending_datagram_count(quic))
        budget = quicstats.send_budget(quic) - pending
        handoff = self._rate.handoff_bytes()
        if handoff is not None:
            # aioquic sends its queue in order: hand it only what the pacer sends soon,
            # so a frame of higher priority never waits behind a long paced backlog
            budget = min(budget, handoff - pending)
        backlog = self._backlog
        for cid in self._order.order():
            state = self._channels[cid]
            sq = state.stream_queue
            if cid not in backlog:
                if sq is not None and state.out_stream_id is not None:
                    # idle reliable channels still hold their unsent bytes in aioquic
                    budget -= quicstats.unsent_stream_bytes(quic, state.out_stream_id)
                continue
            if sq is not None:
                sid = state.out_stream_id
                if sid is None:
                    continue
                budget -= quicstats.unsent_stream_bytes(quic, sid)
                if sq.bytes and budget > 0:
                    for piece in sq.take(budget):
                        budget -= len(piece)
                        # aioquic copies the data into its buffer; a view avoids one copy
                        quic.send_stream_data(sid, piece)  # type: ignore[arg-type]
                if state.fin_pending and not sq.bytes:
                    quic.send_stream_data(sid, b"", end_stream=True)
                    state.fin_pending = False
                if not sq.bytes and not state.fin_pending:
                    backlog.discard(cid)
                continue
            dq = state.dgram_queue
            assert dq is not None
            if budget <= 0:
                dq.expire(now)
                if not len(dq):
                    backlog.discard(cid)
                continue
            sent = 0
            rec = state.send_recovery
            while budget > 0:
                item = dq.pop_with_deadline(now)
                if item is None:
                    break
                seq = state.next_seq
                state.next_seq = (seq + 1) & 0xFFFFFFFF
                data = with_sequence(item[0], seq)
                quic.send_datagram_frame(data)
                budget -= len(data) + K_DATAGRAM_OVERHEAD
                sent += 1
                if rec is not None:
                    # parity goes right after the datagram that completes its group
                    for parity in rec.on_sent(seq, data, deadline=item[1], now=now):
                        self._solo.append(parity)
                        budget -= len(parity) + K_DATAGRAM_OVERHEAD
            state.stats.sent_datagrams += sent
            if not len(dq):
                backlog.discard(cid)

    def _send_control(self, msg: ctl.ControlMessage) -> None:
        if self._control_stream is None:
            raise LocalProtocolError("control stream is not open yet")
        self.quic.send_stream_data(self._control_stream, encode_record(ctl.encode_control(msg)))

    def _add_channel(self, info: ChannelInfo) -> ChannelState:
        state = ChannelState.create(info)
        if info.local and info.kind in (ChannelKind.VIDEO, ChannelKind.EMBEDDINGS):
            # only video and bulk data can use more than they get; a call of audio and
            # tokens has no use for probing the link (padding would only delay it)
            self._elastic = True
        self._channels[info.channel_id] = state
        self._order.add(info.channel_id, info.qos.priority)
        rcfg = self.config.recovery
        if not info.qos.reliable and info.qos.deadline_ms is not None and rcfg.mode != "none":
            deadline = info.qos.deadline_ms / 1000.0
            if info.local:
                state.send_recovery = SendRecovery(info.channel_id, rcfg, deadline=deadline)
            else:
                state.receive_recovery = ReceiveRecovery(info.channel_id, rcfg,
                                                         deadline=deadline)
            self._recovering.append(state)
        return state

    def _recovery_timers(self, now: float) -> None:
        """Parity of groups held open too long, NACKs due, loss reports due."""
        quic = self.quic
        rtt = quicstats.smoothed_rtt(quic)
        for state in self._recovering:
            send = state.send_recovery
            if send is not None:
                self._solo.extend(send.on_timer(now))
            recv = state.receive_recovery
            if recv is not None:
                for nack in recv.nacks(now=now, rtt=rtt):
                    quic.send_datagram_frame(nack)
                recv.expire(now)
                report = recv.take_report(now)
                if report is not None:
                    self._send_control(ctl.RecoveryReport(
                        channel_id=state.channel_id, received=report[0], lost=report[1],
                        bursts=report[2]))

    def recovery_summary(self, channel_id: int) -> dict[str, Any]:
        """FEC and retransmission state and counters of a real-time channel (empty for a
        reliable channel or with recovery off)."""
        state = self._channels.get(channel_id)
        if state is None:
            raise LocalProtocolError(f"no channel {channel_id}")
        summary: dict[str, Any] = self._recovery_summary(state).get("recovery", {})
        return summary

    @staticmethod
    def _recovery_summary(state: ChannelState) -> dict[str, Any]:
        if state.send_recovery is not None:
            return {"recovery": state.send_recovery.summary()}
        if state.receive_recovery is not None:
            return {"recovery": state.receive_recovery.summary()}
        return {}

    # ------------------------------------------------------------------ rate control

    def _rate_timers(self, now: float) -> None:
        """Estimator timers; every K_ALLOCATION_INTERVAL the channels' shares."""
        rate = self._rate
        rate.on_timer(now)
        if self._local_sending and rate.allocation_due(now):
            local = [(cid, s.info.qos.priority, s.info.kind, s.stats.sent_bytes,
                      s.send_recovery.recovery_bytes if s.send_recovery is not None else 0)
                     for cid, s in self._channels.items()
                     if s.info.local and not s.closed_local]
            target = rate.target_bps
            for cid, share in rate.reallocate(now, local):
                self._push(BitrateChanged(channel_id=cid, bitrate_bps=share, target_bps=target))

    @property
    def _local_sending(self) -> bool:
        return self._next_local_id != (0 if self.is_client else 1)

    def add_feedback_observer(
        self, observer: Callable[[list[PacketResult], float], None]
    ) -> None:
        """Hand the per-packet results (send time, size, arrival or loss) of every
        transport-wide feedback from the peer to ``observer(results, now)``, read-only
        (the health monitor's jitter, loss and burst figures)."""
        self._rate.add_feedback_observer(observer)

    @property
    def peer_socket_drops(self) -> int:
        """Datagrams the peer's own socket dropped (its receive buffer full), as the
        latest FEEDBACK from it said: read by a feedback observer, that report's count
        (the health monitor's ``loss.receiver_rate``)."""
        return self._rate.history.last_receiver_drops

    @property
    def bandwidth_estimate_bps(self) -> float:
        """The bandwidth estimate: the rate this side may send at, bits per second."""
        return self._rate.target_bps

    def bwe_state(self) -> dict[str, Any]:
        """The estimator's state (delay- and loss-based rates, detector, probes) and the
        feedback counters, JSON-ready (docs/BWE.md)."""
        return self._rate.state()

    def channel_share_bps(self, channel_id: int) -> float | None:
        """A local channel's current share of the estimate (None before the first split)."""
        return self._rate.share(channel_id)

    # hooks of the receiving half
    def _on_feedback(self, data: bytes, now: float) -> None:
        self._rate.on_feedback(data, now)

    def _rtt(self) -> float:
        return quicstats.smoothed_rtt(self.quic)

    def _send_datagram(self, data: bytes) -> None:
        self.quic.send_datagram_frame(data)

    # ------------------------------------------------------------------ QUIC events

    def _process_quic_events(self, now: float) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, qe.DatagramFrameReceived):
                self._on_datagram(event.data, now)
            elif isinstance(event, qe.StreamDataReceived):
                if event.stream_id == self._control_stream or (
                    not self.is_client and self._control_stream is None and event.stream_id == 0
                ):
                    self._control_stream = event.stream_id
                    self._on_control_data(event.data, now)
                else:
                    self._on_stream_data(event.stream_id, event.data, event.end_stream, now)
            elif isinstance(event, qe.HandshakeCompleted):
                if event.alpn_protocol != ALPN:
                    self.close(ErrorCode.VERSION_NEGOTIATION_FAILED, "ALPN mismatch", now=now)
                elif self.is_client:
                    self._control_stream = self.quic.get_next_available_stream_id()
                    self._send_control(ctl.Hello(
                        versions=SUPPORTED_VERSIONS, clock=now, software=self.config.software,
                        feedback_ms=self._rate.feedback_wish_ms()))
            elif isinstance(event, qe.ConnectionIdIssued | qe.ConnectionIdRetired):
                self.connection_ids_changed = True
            elif isinstance(event, qe.ConnectionTerminated):
                self._finish(event.error_code, event.reason_phrase, by_peer=True)

    def _on_control_data(self, data: bytes, now: float) -> None:
        try:
            for record in self._control_reader.feed(data):
                msg = ctl.decode_control(record)
                if msg is None:
                    self._counters.unknown_control_messages += 1
                else:
                    self._on_control(msg, now)
                if self.closed:
                    return
        except RemoteProtocolError as exc:
            self.close(exc.error_code or ErrorCode.CONTROL_PROTOCOL_ERROR, str(exc), now=now)

    def _on_control(self, msg: ctl.ControlMessage, now: float) -> None:
        if isinstance(msg, ctl.Hello) and not self.is_client and self.version is None:
            common = set(msg.versions) & set(SUPPORTED_VERSIONS)
            if not common:
                self.close(ErrorCode.VERSION_NEGOTIATION_FAILED,
                           f"no common version in {list(msg.versions)[:8]}", now=now)
                return
            self.version = max(common)
            if not self.config.shared_clock:
                self.clock_offset = msg.clock - now  # refined by the client's ClockSync
            self._rate.on_peer_feedback_wish(msg.feedback_ms)
            self._send_control(ctl.HelloAck(version=self.version, clock_echo=msg.clock,
                                            clock_recv=now, clock_send=now,
                                            software=self.config.software,
                                            feedback_ms=self._rate.feedback_wish_ms()))
            self._push(SessionReady(version=self.version, peer_software=msg.software))
        elif isinstance(msg, ctl.HelloAck) and self.is_client and self.version is None:
            if msg.version not in SUPPORTED_VERSIONS:
                self.close(ErrorCode.VERSION_NEGOTIATION_FAILED,
                           f"server chose unsupported version {msg.version}", now=now)
                return
            self.version = msg.version
            self._hello_done_at = now
            self._rate.on_peer_feedback_wish(msg.feedback_ms)
            self._clock_sample(msg.clock_echo, msg.clock_recv, msg.clock_send, now)
            self._schedule_probe()
            self._push(SessionReady(version=self.version, peer_software=msg.software))
        elif isinstance(msg, ctl.Pong) and self.is_client and self.ready:
            self._clock_sample(msg.clock_echo, msg.clock_recv, msg.clock_send, now)
        elif isinstance(msg, ctl.Ping) and not self.is_client and self.ready:
            self._send_control(ctl.Pong(clock_echo=msg.clock, clock_recv=now, clock_send=now))
        elif isinstance(msg, ctl.ClockSync) and not self.is_client and self.ready:
            if not self.config.shared_clock:
                self.clock_offset = -msg.offset
        elif not self.ready:
            raise RemoteProtocolError(f"{type(msg).__name__} before the hello exchange",
                                      error_code=ErrorCode.CONTROL_PROTOCOL_ERROR)
        elif isinstance(msg, ctl.OpenChannel):
            self._on_open(msg, now)
        elif isinstance(msg, ctl.RecoveryReport):
            state = self._channels.get(msg.channel_id)
            if state is None or state.send_recovery is None:
                self._counters.stray_reports += 1  # a channel closed, or not ours
            else:
                state.send_recovery.on_report(received=msg.received, lost=msg.lost,
                                              bursts=msg.bursts,
                                              rtt=quicstats.smoothed_rtt(self.quic), now=now)
        elif isinstance(msg, ctl.KeyframeRequest):
            state = self._channels.get(msg.channel_id)
            if (state is None or not state.info.local or state.closed_local
                    or state.info.kind is not ChannelKind.VIDEO):
                self._counters.stray_reports += 1  # not a video channel this side sends
            else:
                self.keyframe_requests_received += 1
                # one event per channel per half interval, however often a peer asks
                last = self._keyframe_told.get(msg.channel_id)
                if last is None or now - last >= K_KEYFRAME_REQUEST_INTERVAL / 2:
                    self._keyframe_told[msg.channel_id] = now
                    self._push(KeyframeRequested(channel_id=msg.channel_id))
        elif isinstance(msg, ctl.CloseChannel):
            self._on_close_channel(msg.channel_id, msg.messages, now)
        elif isinstance(msg, ctl.AppMessage):
            body = msg.body
            if (self.multipath is None and isinstance(body, dict)
                    and isinstance(mp := body.get(K_MULTIPATH_KEY), dict)
                    and mp.get("t") == "hello"):
                # the control stream is ordered: the hello precedes the peer's channels
                self.multipath = mp
            self._push(AppMessageReceived(body=body))
        else:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__}",
                                      error_code=ErrorCode.CONTROL_PROTOCOL_ERROR)

    def _clock_sample(self, t0: float, t1: float, t2: float, t3: float) -> None:
        """NTP-style offset (server clock - client clock) from one probe; the sample with
        the shortest round trip wins, as its one-way delays are the least skewed."""
        rtt = (t3 - t0) - (t2 - t1)
        if self.config.shared_clock or rtt < 0 or rtt > self._clock_rtt:
            return
        self._clock_rtt = rtt
        self.clock_offset = ((t1 - t0) + (t2 - t3)) / 2
        self._send_control(ctl.ClockSync(offset=self.clock_offset))

    def _schedule_probe(self) -> None:
        if self.config.shared_clock:
            return
        n = self._probes_sent
        delay = K_CLOCK_PROBES[n] if n < len(K_CLOCK_PROBES) else K_CLOCK_PROBE_INTERVAL
        base = self._hello_done_at if n < len(K_CLOCK_PROBES) else (self._probe_at or 0.0)
        self._probe_at = base + delay

    def _on_open(self, msg: ctl.OpenChannel, now: float) -> None:
        cid = msg.channel_id
        if cid % 2 != (1 if self.is_client else 0) or cid in self._channels:
            raise RemoteProtocolError(f"peer opened channel id {cid} it may not use",
                                      error_code=ErrorCode.CONTROL_PROTOCOL_ERROR)
        if sum(not s.info.local for s in self._channels.values()) >= self.config.max_channels:
            raise RemoteProtocolError("peer opened too many channels",
                                      error_code=ErrorCode.CHANNEL_LIMIT_EXCEEDED)
        local_qos = default_qos(msg.kind)
        qos = msg.qos.with_(max_queue_bytes=local_qos.max_queue_bytes)
        info = ChannelInfo(channel_id=cid, kind=msg.kind, name=msg.name, qos=qos, local=False)
        self._add_channel(info)
        self._push(ChannelOpened(channel_id=cid, kind=msg.kind, name=msg.name, qos=qos))
        self._replay_early(cid, now)

    def _deliver_record(self, state: ChannelState, ins: Any, body: bytes,
                        now: float) -> None:
        log = self._endpoint_log
        if self.multipath is None:
            if log is None:
                super()._deliver_record(state, ins, body, now)
                return
            delivered = state.stats.delivered
            super()._deliver_record(state, ins, body, now)
            if state.stats.delivered != delivered:
                log.received(now=now, channel=self._log_channel(state),
                             seq=ins.next_message - 1, size_bytes=len(body))
            return
        # multipath: the record starts with a sequence header only the multipath layer
        # reads; it decodes, orders and times the message itself
        state.stats.delivered += 1
        state.stats.delivered_bytes += len(body)
        msg_id = ins.next_message
        ins.next_message += 1
        self._push(MessageReceived(channel_id=state.channel_id, payload=body,
                                   timestamp=now, latency=0.0, frame_id=msg_id))
        if log is not None:
            log.received(now=now, channel=self._log_channel(state), seq=msg_id,
                         size_bytes=len(body))
        self._maybe_report_closed(state)

    def _finish(self, error_code: int, reason: str, *, by_peer: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_code = error_code
        self._events.append(SessionClosed(error_code=error_code, reason=reason, by_peer=by_peer))

    def _fatal(self, exc: RemoteProtocolError, now: float) -> None:
        self.close(exc.error_code or ErrorCode.STREAM_PROTOCOL_ERROR, str(exc), now=now)
