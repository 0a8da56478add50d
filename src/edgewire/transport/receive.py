"""The receiving half of a session: datagrams, channel streams, deadlines and events.

Kept apart from :mod:`edgewire.transport.session` (the sending half and the control
protocol) so each file holds one idea. Malformed input from the peer is counted and dropped
here; only violations that leave the two sides disagreeing close the connection.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from edgewire.errors import RemoteProtocolError
from edgewire.transport.channel import ChannelState
from edgewire.transport.config import SessionConfig
from edgewire.transport.events import (
    ChannelClosed,
    Event,
    FrameLost,
    MessageReceived,
)
from edgewire.transport.messages import decode_array, decode_tokens
from edgewire.transport.qos import ChannelKind
from edgewire.transport.scheduler import earliest
from edgewire.transport.stats import SessionCounters
from edgewire.transport.wire import (
    FLAG_RETRANSMIT,
    HEADER_SIZE,
    MAX_U32,
    STREAM_PREFIX_SIZE,
    TYPE_FEC,
    TYPE_FEEDBACK,
    TYPE_MEDIA,
    TYPE_NACK,
    TYPE_PADDING,
    DatagramHeader,
    ErrorCode,
    RecordReader,
    datagram_type,
    decode_fec_header,
    decode_header,
    decode_nack,
)

__all__ = ["Receiver"]

#: Largest reliable message accepted from a peer, whatever it announces.
K_MAX_RECEIVE_MESSAGE = 64 << 20  # bytes


@dataclass(slots=True)
class _InStream:
    """A peer's unidirectional stream carrying one reliable channel."""

    head: bytearray = field(default_factory=bytearray)
    channel_id: int | None = None
    reader: RecordReader | None = None
    held: bytearray = field(default_factory=bytearray)
    fin: bool = False
    next_message: int = 0


class Receiver:
    """Receive-side state and logic shared by :class:`~edgewire.transport.session.Session`."""

    def __init__(self, config: SessionConfig, *, is_client: bool) -> None:
        self.config = config
        self.is_client = is_client
        self._channels: dict[int, ChannelState] = {}
        self._events: deque[Event] = deque()
        self._counters = SessionCounters()
        self._early: deque[tuple[float, int, bytes]] = deque()
        self._in_streams: dict[int, _InStream] = {}
        self._held_bytes = 0
        self.clock_offset = 0.0
        """Peer clock minus this side's clock, seconds (from the hello exchange)."""
        self.closed = False
        """True once the connection is closed (by either side)."""
        self._close_code = 0

    # hooks the session provides
    def _fatal(self, exc: RemoteProtocolError, now: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def _rtt(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def _send_datagram(self, data: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    def _push(self, event: Event) -> None:
        if len(self._events) >= self.config.max_events and isinstance(event, MessageReceived):
            state = self._channels.get(event.channel_id)
            if state is not None and not state.info.qos.reliable:
                self._counters.events_dropped += 1
                return
        self._events.append(event)

    def _local_capture(self, ts_us: int, now: float) -> float:
        """Capture time on this side's clock from a header timestamp (sender us mod 2**32)."""
        peer_now_us = round((now + self.clock_offset) * 1e6)
        diff = (ts_us - peer_now_us) & MAX_U32
        if diff >= 1 << 31:
            diff -= 1 << 32
        return (peer_now_us + diff) / 1e6 - self.clock_offset

    # ------------------------------------------------------------------ datagrams

    def _on_datagram(self, data: bytes, now: float) -> None:
        try:
            kind = datagram_type(data)
            if kind == TYPE_MEDIA:
                hdr = decode_header(data)
            elif kind == TYPE_FEC:
                self._on_parity(data, now)
                return
            elif kind == TYPE_NACK:
                self._on_nack(data, now)
                return
            elif kind == TYPE_FEEDBACK:
                self._on_feedback(data, now)  # malformed ones are counted by the estimator
                return
            elif kind == TYPE_PADDING:
                self._counters.padding_received += 1
                return
            else:
                self._counters.unknown_type_datagrams += 1
                return
        except RemoteProtocolError:
            self._counters.malformed_datagrams += 1
            return
        state = self._channels.get(hdr.channel_id)
        if state is None:
            self._hold_early(hdr.channel_id, data, now)
            return
        rec = state.receive_recovery
        if rec is not None and not state.info.qos.reliable:
            retransmitted = bool(hdr.flags & FLAG_RETRANSMIT)
            if retransmitted:
                state.stats.retransmissions_received += 1
            deadline = (self._local_capture(hdr.timestamp_us, now)
                        + rec.deadline)
            rebuilt = rec.on_media(hdr.sequence, data, deadline=deadline,
                                   retransmitted=retransmitted, now=now)
            self._on_media(state, hdr, data, now)
            self._deliver_rebuilt(state, rebuilt, now)
            return
        self._on_media(state, hdr, data, now)

    def _on_parity(self, data: bytes, now: float) -> None:
        hdr = decode_fec_header(data)  # RemoteProtocolError: counted by the caller
        state = self._channels.get(hdr.channel_id)
        rec = None if state is None else state.receive_recovery
        if state is None or rec is None:
            self._counters.stray_reports += 1
            return
        self._deliver_rebuilt(state, rec.on_parity(hdr, data, now=now), now)

    def _deliver_rebuilt(self, state: ChannelState, rebuilt: list[bytes], now: float) -> None:
        for data in rebuilt:
            try:
                hdr = decode_header(data)
            except RemoteProtocolError:
                state.stats.malformed += 1  # the sender protected a garbled datagram
                continue
            if hdr.channel_id != state.channel_id or hdr.type != TYPE_MEDIA:
                state.stats.malformed += 1
                continue
            state.stats.recovered += 1
            self._on_media(state, hdr, data, now)

    def _on_feedback(self, data: bytes, now: float) -> None:
        """A FEEDBACK datagram (hook: the session hands it to its rate controller)."""
        raise NotImplementedError

    def _on_nack(self, data: bytes, now: float) -> None:
        channel_id, ranges = decode_nack(data)  # RemoteProtocolError: counted by the caller
        state = self._channels.get(channel_id)
        rec = None if state is None else state.send_recovery
        if rec is None:
            self._counters.stray_reports += 1
            return
        for datagram in rec.on_nack(ranges, now=now, rtt=self._rtt()):
            self._send_datagram(datagram)

    def _on_media(self, state: ChannelState, hdr: DatagramHeader, data: bytes,
                  now: float) -> None:
        stats = state.stats
        qos = state.info.qos
        if qos.reliable or qos.deadline_ms is None or (
            hdr.frag_count > 1 and state.info.kind is not ChannelKind.VIDEO
        ):
            stats.malformed += 1
            return
        capture = self._local_capture(hdr.timestamp_us, now)
        reasm = state.reassembler
        payload = data[HEADER_SIZE:]
        if hdr.frag_count == 1:
            if hdr.frame_id in reasm.recent:
                stats.duplicates += 1
                return
            reasm.recent.add(hdr.frame_id)
            self._deliver_frame(state, hdr.frame_id, payload, capture, hdr.keyframe, now)
            return
        frame, evicted, dup = reasm.add(
            frame_id=hdr.frame_id, index=hdr.frag_index, count=hdr.frag_count,
            payload=payload, capture=capture, deadline=capture + qos.deadline_ms / 1000.0,
            keyframe=hdr.keyframe,
        )
        if dup:
            stats.duplicates += 1
        for fid in evicted:
            stats.lost += 1
            self._push(FrameLost(channel_id=state.channel_id, frame_id=fid, reason="evicted"))
        if frame is not None:
            self._deliver_frame(state, hdr.frame_id, frame, capture, hdr.keyframe, now)

    def _deliver_frame(
        self, state: ChannelState, frame_id: int, payload: bytes, capture: float,
        keyframe: bool, now: float,
    ) -> None:
        stats = state.stats
        qos = state.info.qos
        latency = now - capture
        if qos.drop_late and qos.deadline_ms is not None and latency > qos.deadline_ms / 1000.0:
            stats.late += 1
            self._push(FrameLost(channel_id=state.channel_id, frame_id=frame_id, reason="late"))
        else:
            stats.delivered += 1
            stats.delivered_bytes += len(payload)
            stats.latency.add(latency)
            self._push(MessageReceived(channel_id=state.channel_id, payload=payload,
                                       timestamp=capture, latency=latency, frame_id=frame_id,
                                       keyframe=keyframe))
        if state.closed_remote:
            self._maybe_report_closed(state, now)

    def _hold_early(self, channel_id: int, data: bytes, now: float) -> None:
        peer_parity = 1 if self.is_client else 0
        if channel_id % 2 != peer_parity:
            self._counters.unknown_channel_datagrams += 1
        elif len(self._early) >= self.config.early_datagrams:
            self._counters.early_dropped += 1
        else:
            self._early.append((now, channel_id, data))

    def _replay_early(self, channel_id: int, now: float) -> None:
        keep: deque[tuple[float, int, bytes]] = deque()
        replay: list[tuple[float, int, bytes]] = []
        for entry in self._early:
            (replay if entry[1] == channel_id else keep).append(entry)
        self._early = keep
        for _, _, data in replay:
            self._on_datagram(data, now)
        for sid, ins in list(self._in_streams.items()):
            if ins.channel_id == channel_id and ins.reader is None:
                held, ins.held = bytes(ins.held), bytearray()
                self._held_bytes -= len(held)
                self._on_stream_data(sid, held, ins.fin, now)

    # ------------------------------------------------------------------ reliable streams

    def _on_stream_data(self, stream_id: int, data: bytes, end: bool, now: float) -> None:
        if stream_id & 0x2 == 0:
            # only the control stream may be bidirectional; ignore any other
            self._counters.unknown_control_messages += 1
            return
        ins = self._in_streams.get(stream_id)
        if ins is None:
            ins = self._in_streams[stream_id] = _InStream()
        if ins.channel_id is None:
            ins.head += data
            if len(ins.head) < STREAM_PREFIX_SIZE:
                return
            ins.channel_id = int.from_bytes(ins.head[:STREAM_PREFIX_SIZE], "big")
            data = bytes(ins.head[STREAM_PREFIX_SIZE:])
            ins.head = bytearray()
        state = self._channels.get(ins.channel_id)
        if state is None:
            ins.held += data
            ins.fin = ins.fin or end
            self._held_bytes += len(data)
            # one budget for all streams whose channel is not open yet
            if self._held_bytes > self.config.max_unknown_stream_bytes:
                self._fatal(RemoteProtocolError(
                    f"{self._held_bytes} bytes held on streams for unopened channels",
                    error_code=ErrorCode.STREAM_PROTOCOL_ERROR), now)
            return
        if not state.info.qos.reliable:
            self._fatal(RemoteProtocolError(
                f"stream data for real-time channel {ins.channel_id}",
                error_code=ErrorCode.STREAM_PROTOCOL_ERROR), now)
            return
        if ins.reader is None:
            limit = min(state.info.qos.max_message_bytes, K_MAX_RECEIVE_MESSAGE)
            ins.reader = RecordReader(max_record=limit)
        try:
            records = ins.reader.feed(data)
        except RemoteProtocolError as exc:
            self._fatal(exc, now)
            return
        for body in records:
            self._deliver_record(state, ins, body, now)
        if end:
            del self._in_streams[stream_id]

    def _deliver_record(self, state: ChannelState, ins: _InStream, body: bytes,
                        now: float) -> None:
        stats = state.stats
        payload: object
        try:
            if state.info.kind is ChannelKind.TOKENS:
                msg = decode_tokens(body)
                ts = msg.timestamp
                capture = ts - self.clock_offset
                payload = replace(msg, timestamp=capture)
            else:
                payload, ts = decode_array(body)
                capture = ts - self.clock_offset
        except RemoteProtocolError:
            stats.malformed += 1
            self._maybe_report_closed(state)
            return
        latency = now - capture
        stats.delivered += 1
        stats.delivered_bytes += len(body)
        stats.latency.add(latency)
        msg_id = ins.next_message
        ins.next_message += 1
        self._push(MessageReceived(channel_id=state.channel_id, payload=payload,
                                   timestamp=capture, latency=latency, frame_id=msg_id))
        self._maybe_report_closed(state)

    # ------------------------------------------------------------------ deadlines

    def _receive_timer(self) -> float | None:
        timer = self._early[0][0] + self.config.early_datagram_ttl if self._early else None
        for state in self._channels.values():
            if state.reassembler._partial:
                timer = earliest(timer, state.reassembler.next_deadline())
            if state.close_by is not None and not state.close_reported:
                timer = earliest(timer, state.close_by)
        return timer

    def _expire_receive(self, now: float) -> None:
        ttl = self.config.early_datagram_ttl
        while self._early and self._early[0][0] + ttl <= now:
            self._early.popleft()
            self._counters.unknown_channel_datagrams += 1
        for state in self._channels.values():
            if len(state.reassembler):
                for fid in state.reassembler.expire(now):
                    state.stats.lost += 1
                    self._push(FrameLost(channel_id=state.channel_id, frame_id=fid,
                                         reason="incomplete"))
            if state.close_by is not None and not state.close_reported:
                self._maybe_report_closed(state, now)

    def _on_close_channel(self, channel_id: int, messages: int, now: float) -> None:
        state = self._channels.get(channel_id)
        if state is None or state.closed_remote:
            raise RemoteProtocolError(f"close for channel {channel_id} that is not open",
                                      error_code=ErrorCode.CONTROL_PROTOCOL_ERROR)
        state.closed_remote = True
        state.close_after = messages
        qos = state.info.qos
        if not qos.reliable and qos.deadline_ms is not None:
            # frames sent before the close may still be on their way in datagrams; some
            # never come (lost, or expired at the sender), so wait one deadline at most
            state.close_by = now + qos.deadline_ms / 1000.0
        self._maybe_report_closed(state, now)

    def _maybe_report_closed(self, state: ChannelState, now: float | None = None) -> None:
        stats = state.stats
        accounted = stats.delivered + stats.malformed
        if state.close_by is not None:
            accounted += stats.lost + stats.late
        if state.closed_remote and not state.close_reported and (
            accounted >= state.close_after
            or (state.close_by is not None and now is not None and now >= state.close_by)
        ):
            state.close_reported = True
            self._push(ChannelClosed(channel_id=state.channel_id))
