"""The one module that reads aioquic's private state.

aioquic has no public statistics API: RTT, congestion window and bytes in flight live on
private attributes of ``QuicConnection`` and its recovery object. Everything edgewire needs
from there is read here, so an aioquic upgrade breaks this file and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aioquic import tls

# importing the controllers registers them under "reno" and "cubic"
from aioquic.quic.congestion import base as _congestion_base
from aioquic.quic.congestion import cubic as _cubic  # noqa: F401
from aioquic.quic.congestion import reno as _reno  # noqa: F401
from aioquic.quic.congestion.base import QuicCongestionControl
from aioquic.quic.connection import END_STATES, QuicConnection

# importing it registers edgewire's own controller as "edgewire"
from edgewire.transport import cc as _edgewire_cc  # noqa: F401

__all__ = [
    "QuicStats",
    "ack_with_data",
    "congestion_control_names",
    "congestion_controller",
    "host_connection_ids",
    "is_one_rtt",
    "keep_pacer_bursts",
    "max_datagram_payload",
    "min_rtt_or_none",
    "nothing_to_send",
    "observe_sent_packets",
    "pace_at",
    "pacing_refund",
    "pending_datagram_bytes",
    "read_quic_stats",
    "receive_datagram_acking_pairs",
    "received_window",
    "refresh_pacing",
    "send_datagram_first",
    "set_ack_delay",
    "smoothed_rtt",
    "smoothed_rtt_or_none",
    "stabilize_stream_order",
    "stream_send_marks",
    "unsent_stream_bytes",
]

#: Bytes of a 1-RTT packet around one DATAGRAM frame, beyond the connection id: first byte,
#: packet number (at most 4), AEAD tag (16), frame type (1) and length varint (at most 4).
_PACKET_OVERHEAD = 1 + 4 + 16 + 1 + 4
#: How far before ``now`` a due ACK is moved so aioquic treats it as overdue.
K_OVERDUE = 1e-9  # seconds
#: aioquic's floor on the smoothed RTT when it computes the pacing rate.
K_PACER_MIN_TIME = 1e-6  # seconds
#: A packet time this much above window ÷ RTT's is aioquic's floor, not float rounding.
K_PACER_FLOORED = 1 + 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicStats:
    """A snapshot of the QUIC connection's loss-recovery and congestion state."""

    rtt_latest: float | None
    """Most recent RTT sample in seconds (None before the first sample)."""
    rtt_smoothed: float | None
    """Smoothed RTT (RFC 9002) in seconds."""
    rtt_min: float | None
    """Minimum RTT seen, seconds."""
    rtt_variance: float | None
    """RTT variation, seconds."""
    cwnd_bytes: int
    """Congestion window."""
    bytes_in_flight: int
    """Bytes sent and not yet acknowledged or declared lost."""


def read_quic_stats(quic: QuicConnection) -> QuicStats:
    """Snapshot of RTT, cwnd and bytes in flight."""
    loss = quic._loss
    have_rtt = bool(loss._rtt_initialized)
    return QuicStats(
        rtt_latest=loss._rtt_latest if have_rtt else None,
        rtt_smoothed=loss._rtt_smoothed if have_rtt else None,
        rtt_min=loss._rtt_min if have_rtt and math.isfinite(loss._rtt_min) else None,
        rtt_variance=loss._rtt_variance if have_rtt else None,
        cwnd_bytes=int(loss.congestion_window),
        bytes_in_flight=int(loss.bytes_in_flight),
    )


def smoothed_rtt_or_none(quic: QuicConnection) -> float | None:
    """Smoothed RTT in seconds, or None before the first sample."""
    loss = quic._loss
    return float(loss._rtt_smoothed) if loss._rtt_initialized else None


def min_rtt_or_none(quic: QuicConnection) -> float | None:
    """The connection's smallest RTT sample so far (seconds), or None before any."""
    low = quic._loss._rtt_min
    return float(low) if math.isfinite(low) and low > 0 else None


def observe_sent_packets(quic: QuicConnection, callback: Any) -> None:
    """Call ``callback(packet)`` for every packet aioquic sends (``packet.in_flight`` says
    whether it counts in flight), whatever the congestion controller: the loss-recovery
    object's ``on_packet_sent`` is wrapped on this instance only."""
    loss = quic._loss
    inner = loss.on_packet_sent

    def on_packet_sent(*, packet: Any, space: Any) -> None:
        inner(packet=packet, space=space)
        callback(packet)

    loss.on_packet_sent = on_packet_sent  # type: ignore[method-assign]


def keep_pacer_bursts(quic: QuicConnection) -> None:
    """Keep aioquic's pacer bursts whole at very high pacing rates.

    aioquic floors the pacer's time per packet at 1 µs but sizes its burst (2 to 16 full
    packets) at the unfloored rate, window ÷ smoothed RTT. Past one packet per microsecond
    (about 10 Gbit/s: a Reno or CUBIC window of megabytes over loopback's 1 ms floor on the
    smoothed RTT) the burst is shorter than one packet's time, so the bucket never holds a
    packet and every call to ``datagrams_to_send`` lets one packet out. This wraps the rate
    computation on this connection's pacer so that the burst keeps its size in packets
    when the time per packet is floored; below that rate nothing changes."""
    pacer = quic._loss._pacer
    inner = pacer.update_rate
    size = quic._configuration.max_datagram_size

    def update_rate(congestion_window: int, smoothed_rtt: float) -> None:
        inner(congestion_window=congestion_window, smoothed_rtt=smoothed_rtt)
        packet_time = pacer.packet_time
        if packet_time is None or congestion_window <= 0:
            return
        unfloored = size * max(smoothed_rtt, K_PACER_MIN_TIME) / congestion_window
        if packet_time > unfloored * K_PACER_FLOORED:
            pacer.bucket_max *= packet_time / unfloored

    pacer.update_rate = update_rate  # type: ignore[method-assign]
    refresh_pacing(quic)


def pace_at(quic: QuicConnection, rate_bps: Any, burst_rtt: Any = None) -> None:
    """Make aioquic's pacer send at ``rate_bps()`` bits per second (when it returns a
    number) instead of at window ÷ smoothed RTT; the window still caps what is in flight.

    aioquic lets a burst of a quarter of the window (2 to 16 full packets) leave at once
    after an idle spell, a quarter of the smoothed RTT at the pacing rate. With
    ``burst_rtt(smoothed_rtt)`` given, the burst is a quarter of that time instead (the
    congestion controller keeps it from growing with the path's length, and from
    shrinking to a few microseconds on a path of a few milliseconds).

    aioquic recomputes the pacing rate from the window after every RTT sample and loss;
    this wraps that computation on this connection's pacer, and applies it at once."""
    pacer = quic._loss._pacer
    inner = pacer.update_rate
    size = quic._configuration.max_datagram_size

    def update_rate(congestion_window: int, smoothed_rtt: float) -> None:
        rate = rate_bps()
        if rate is not None and rate > 0:
            # the pacer's rate is window / RTT: hand it the window that gives ``rate``
            congestion_window = max(int(rate / 8.0 * smoothed_rtt), 1)
        inner(congestion_window=congestion_window, smoothed_rtt=smoothed_rtt)
        if burst_rtt is None or rate is None or rate <= 0:
            return
        burst_time = burst_rtt(smoothed_rtt)
        if burst_time != smoothed_rtt:
            # aioquic's own rule (a quarter of the window, 2 to 16 packets), on the
            # window of ``burst_time`` at the rate
            burst = max(2 * size, min(int(rate / 8.0 * burst_time) // 4, 16 * size))
            if burst_time < smoothed_rtt:
                pacer.bucket_max = min(pacer.bucket_max, burst * 8.0 / rate)
                pacer.bucket_time = min(pacer.bucket_time, pacer.bucket_max)
            else:
                pacer.bucket_max = max(pacer.bucket_max, burst * 8.0 / rate)

    def update_after_send(now: float) -> None:
        # aioquic sends a packet without asking the pacer whenever an ACK is due, and
        # forgives what that packet cost when the bucket was empty: with feedback and
        # ACKs coming in all the time those free packets add up to a sizeable share of
        # the rate. Here they are owed, up to one burst's worth.
        if pacer.packet_time is not None:
            pacer.update_bucket(now=now)
            pacer.bucket_time = max(pacer.bucket_time - pacer.packet_time, -pacer.bucket_max)

    pacer.update_rate = update_rate  # type: ignore[method-assign]
    pacer.update_after_send = update_after_send  # type: ignore[method-assign]
    refresh_pacing(quic)


def pacing_refund(quic: QuicConnection, sent_bytes: int) -> None:
    """Give back the part of a packet's pacing cost its size did not use.

    aioquic's pacer charges every packet a full-size packet's time, so a stream of small
    packets (audio, feedback, ACKs) is held to the packet rate of full-size ones: at
    300 kbit/s about 31 packets a second, fewer than one 20 ms audio channel needs. With
    ``pace_at`` the rate is in bits, so each packet is charged for its bytes."""
    pacer = quic._loss._pacer
    if pacer.packet_time is not None:
        size = quic._configuration.max_datagram_size
        unused = max(0.0, 1.0 - sent_bytes / size)
        pacer.bucket_time = min(pacer.bucket_time + pacer.packet_time * unused,
                                pacer.bucket_max)


def refresh_pacing(quic: QuicConnection) -> None:
    """Recompute the pacing rate now (after the target rate changed)."""
    loss = quic._loss
    if loss._rtt_initialized:
        loss._pacer.update_rate(congestion_window=loss.congestion_window,
                                smoothed_rtt=loss._rtt_smoothed)


def send_datagram_first(quic: QuicConnection, data: bytes) -> None:
    """Queue a DATAGRAM frame ahead of those already waiting (feedback must not wait
    behind a paced backlog of media or probe padding)."""
    quic.send_datagram_frame(data)
    pending = quic._datagrams_pending
    pending.rotate(1)


def smoothed_rtt(quic: QuicConnection) -> float:
    """Smoothed RTT in seconds, or the configured initial RTT before the first sample."""
    loss = quic._loss
    if loss._rtt_initialized:
        return float(loss._rtt_smoothed)
    return float(quic._configuration.initial_rtt)


def send_budget(quic: QuicConnection) -> int:
    """Bytes the congestion window can take now (may be negative)."""
    loss = quic._loss
    return int(loss.congestion_window) - int(loss.bytes_in_flight)


def pending_datagram_bytes(quic: QuicConnection) -> int:
    """Bytes of DATAGRAM payload handed to aioquic and not yet put in a packet."""
    return sum(len(d) for d in quic._datagrams_pending)


def pending_datagram_count(quic: QuicConnection) -> int:
    """Number of DATAGRAMs handed to aioquic and not yet put in a packet."""
    return len(quic._datagrams_pending)


def unsent_stream_bytes(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to a stream that aioquic has not sent yet (0 for an unknown stream)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    return sum(r.stop - r.start for r in stream.sender._pending)


def max_datagram_payload(quic: QuicConnection) -> int:
    """Largest DATAGRAM frame payload that fits in one packet of this connection."""
    cid_len = len(quic._peer_cid.cid) if quic._peer_cid.cid else 20
    return int(quic._max_datagram_size) - cid_len - _PACKET_OVERHEAD


def host_connection_ids(quic: QuicConnection) -> list[bytes]:
    """Connection ids this endpoint has issued (a server routes datagrams by them)."""
    return [c.cid for c in quic._host_cids]


def congestion_control_names() -> list[str]:
    """Names of the congestion controllers registered with aioquic (reno, cubic, ...)."""
    return sorted(_congestion_base._factories)


def _pending_bytes(stream: Any) -> int:
    return sum(r.stop - r.start for r in stream.sender._pending)


def stream_send_marks(quic: QuicConnection) -> list[tuple[Any, int]] | None:
    """Before ``datagrams_to_send``: each queued stream with its unsent byte count, or None
    when fewer than two streams are queued (their order cannot differ)."""
    queue = quic._streams_queue
    if len(queue) < 2:
        return None
    return [(stream, _pending_bytes(stream)) for stream in queue]


def stabilize_stream_order(quic: QuicConnection, marks: list[tuple[Any, int]] | None) -> None:
    """After ``datagrams_to_send``: put the streams it served back in a reproducible order.

    aioquic moves the streams it served to the end of its round-robin queue by iterating a
    ``set`` of stream objects, whose order follows their memory addresses; so which stream
    goes first next time changes from process to process, and a simulated run could not
    be replayed. The served streams (those whose unsent bytes went down) are put at the
    end in the order they were served, which is what the round robin means to do.
    """
    if marks is None:
        return
    served = [stream for stream, pending in marks if _pending_bytes(stream) < pending]
    if len(served) < 2:
        return
    queue = quic._streams_queue
    tail = queue[-len(served):]
    if {id(s) for s in tail} == {id(s) for s in served}:
        queue[-len(served):] = served


def nothing_to_send(quic: QuicConnection, now: float) -> bool:
    """True when ``quic.datagrams_to_send(now)`` would build no packet and leave the
    connection as it is (its timer included); False whenever that is not certain.

    A simulator asks aioquic for datagrams after every delivery, and about half of those
    calls (a DATAGRAM whose ACK is delayed, an ACK-only packet) build nothing yet cost as
    much as the rest of the step. This checks every reason to send that aioquic's 1-RTT
    writer checks, and answers True only when none applies. Before the handshake is
    confirmed, while closing, on an unvalidated or a second path, or with anything
    queued, it answers False. The simulator's tests check every True answer against
    aioquic and require identical results with and without this shortcut.
    """
    # the cheap tests that fail most often come first: an ACK due now, queued DATAGRAMs
    if not quic._handshake_confirmed or quic._close_pending or quic._state in END_STATES:
        return False
    ack_at = quic._spaces[tls.Epoch.ONE_RTT].ack_at
    if ack_at is not None and ack_at <= now:
        return False
    if quic._datagrams_pending or quic._pacing_at is not None or quic._probe_pending:
        return False
    if quic._ping_pending or quic._handshake_done_pending:
        return False
    if quic._streams_blocked_pending or quic._retire_connection_ids:
        return False
    paths = quic._network_paths
    if len(paths) != 1:
        return False
    path = paths[0]
    if not path.is_validated or path.remote_challenges:
        return False
    if quic._is_client and quic._remote_preferred_address is not None:
        return False
    if not quic._cryptos[tls.Epoch.ONE_RTT].send.is_valid():
        return False
    if not quic._crypto_streams[tls.Epoch.ONE_RTT].sender.buffer_is_empty:
        return False
    for cid in quic._host_cids:
        if not cid.was_sent:
            return False
    # MAX_DATA and MAX_STREAMS: the same tests as aioquic's connection-limit writer
    max_data = quic._local_max_data
    if max_data.used * 2 > max_data.value or max_data.value != max_data.sent:
        return False
    for limit in (quic._local_max_streams_bidi, quic._local_max_streams_uni):
        if limit.value != limit.sent and limit.sent - limit.used < limit.value - limit.sent:
            return False
    # MAX_STREAM_DATA
    for stream in quic._streams.values():
        local = stream.max_stream_data_local
        if local and stream.receiver.highest_offset * 2 > local:
            return False
        if stream.max_stream_data_local_sent != local:
            return False
    for stream in quic._streams_queue:
        if (stream.is_finished or stream.receiver.stop_pending or stream.sender.reset_pending
                or not stream.sender.buffer_is_empty):
            return False
    # Pacing: with nothing to send aioquic still asks its pacer, which credits the time
    # elapsed and may arm a pacing timer when the bucket is empty. Credit it the same way
    # (the bucket is lazily evaluated, so this changes nothing aioquic would not) and
    # leave the empty-bucket case to aioquic.
    pacer = quic._loss._pacer
    if pacer.packet_time is not None:
        pacer.update_bucket(now=now)
        if pacer.bucket_time <= 0:
            return False
    return True


def set_ack_delay(quic: QuicConnection, seconds: float) -> None:
    """Let ``quic`` hold an ACK up to ``seconds`` after an ack-eliciting packet (aioquic
    otherwise sends it after 1 ms), so it can ride on the next packet going out."""
    quic._ack_delay = seconds


def receive_datagram_acking_pairs(quic: QuicConnection, data: bytes, addr: Any,
                                  now: float, within: float) -> None:
    """``quic.receive_datagram``, then, if an ACK was already owed and this datagram
    brought another ack-eliciting packet, make the ACK due within ``within`` seconds.

    RFC 9000 13.2.2 asks for an ACK after every second ack-eliciting packet; it keeps a
    bulk sender clocked when ACKs are otherwise held for ``set_ack_delay``. aioquic only
    notes the first ack-eliciting packet (it sets ``ack_at`` when none is set), so the
    owed time is cleared for the call: aioquic setting it again is the sign that an
    ack-eliciting packet arrived. ACK-only packets leave it as it was, so two peers never
    answer each other's ACKs. ``within`` (aioquic's own 1 ms) lets a fast flow batch the
    packets of a millisecond into one ACK, as aioquic does.
    """
    space = quic._spaces.get(tls.Epoch.ONE_RTT)
    owed = space.ack_at if space is not None else None
    if space is None or owed is None:
        quic.receive_datagram(data, addr, now=now)
        return
    space.ack_at = None
    try:
        quic.receive_datagram(data, addr, now=now)
    finally:
        space.ack_at = owed if space.ack_at is None else min(owed, now + within)


def ack_with_data(quic: QuicConnection, now: float) -> None:
    """Make an owed 1-RTT ACK go out now when DATAGRAM or stream data is queued and the
    pacer lets a packet go, so the ACK rides on it: aioquic writes an ACK frame only once
    it is due, and an ACK held for ``set_ack_delay`` would otherwise follow in a packet of
    its own. An ACK already due is released from pacing: aioquic exempts a due ACK from
    pacing only when it is strictly overdue, and one due exactly now behind a paced
    backlog would hold its timer at ``now`` without being sent."""
    space = quic._spaces.get(tls.Epoch.ONE_RTT)
    if space is None or space.ack_at is None:
        return
    if space.ack_at <= now:
        space.ack_at = min(space.ack_at, now - K_OVERDUE)
        return
    if (quic._datagrams_pending or any(
            not stream.sender.buffer_is_empty for stream in quic._streams_queue)) and (
            quic._loss._pacer.next_send_time(now=now) is None):
        space.ack_at = now


def congestion_controller(quic: QuicConnection) -> QuicCongestionControl:
    """The congestion controller instance aioquic created for ``quic``."""
    cc: QuicCongestionControl = quic._loss._cc
    return cc


def received_window(quic: QuicConnection) -> tuple[int, Any]:
    """(largest 1-RTT packet number received, a container answering ``pn in it`` for
    recently received 1-RTT packet numbers); (-1, ()) before 1-RTT keys exist."""
    space = quic._spaces.get(tls.Epoch.ONE_RTT)
    if space is None:
        return -1, ()
    return space.largest_received_packet, space.received_packets


def is_one_rtt(packet: Any) -> bool:
    """True for a sent packet of the 1-RTT (application data) space."""
    return bool(packet.epoch == tls.Epoch.ONE_RTT)
