"""Transport-wide feedback for bandwidth estimation: what arrived when.

Every 1-RTT QUIC packet already carries a per-connection sequence number, its packet
number, and both endpoints see it: the sender in its congestion controller when the
packet leaves, the receiver once the packet is decrypted. So the transport-wide sequence
number of edgewire's estimator is the QUIC packet number. It covers media datagrams and
reliable streams alike, which is what lets the estimate govern both.

The receiver (:class:`ArrivalRecorder`) notes the arrival time of each packet and sends
them back in FEEDBACK datagrams about every 50 ms (riding on outgoing data when it can,
at most 100 ms apart, sooner after a gap). The sender (:class:`SentHistory`) keeps the
send time and size of each packet it sent and turns a feedback datagram into
:class:`~edgewire.transport.bwe.PacketResult` rows for the estimator.

FEEDBACK datagram (network byte order)::

    0       1       2               4
    +-------+-------+---------------+
    |ver|typ| flags | feedback seq  |
    +-------+-------+---------------+-------------------------------+
    |                 base packet number (64 bits)                  |
    +---------------+-----------------------------------------------+
    | packet count  |  reference arrival time, signed us (64 bits)  |
    +---------------+-----------------------------------------------+
    | received bitmap: one bit per packet, base first, MSB first    |
    +---------------------------------------------------------------+
    | one varint per received packet: zigzag arrival delta (us)     |
    +---------------------------------------------------------------+

The first received packet's delta is counted from the reference time, each later one from
the packet received before it in the bitmap's order (deltas may be negative when packets
were reordered).

``flags``: 0, or ``0x80 | n`` (n in 1..127) when the receiver's own socket dropped n
datagrams (127: at least that many) since its previous report: a receive buffer that
overflowed while the receiving application was busy. Those packets are missing from the
bitmap as a loss on the path would be; the flag tells the sender the receiver lost them.

PADDING datagrams (type 4) fill probe clusters; receivers drop them.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from edgewire.errors import RemoteProtocolError
from edgewire.transport.bwe import PacketResult
from edgewire.transport.wire import TYPE_FEEDBACK, TYPE_PADDING, WIRE_VERSION

__all__ = [
    "FEEDBACK_HEADER_SIZE",
    "MAX_FEEDBACK_PACKETS",
    "ArrivalRecorder",
    "Feedback",
    "FeedbackCounters",
    "SentHistory",
    "decode_feedback",
    "encode_feedback",
    "padding_datagram",
]

_HEADER = struct.Struct("!BBHQHq")
FEEDBACK_HEADER_SIZE = _HEADER.size  # 22 bytes
#: Most packets one FEEDBACK datagram covers (received or not).
MAX_FEEDBACK_PACKETS = 4096
#: QUIC packet numbers are below 2**62.
MAX_PACKET_NUMBER = (1 << 62) - 1
#: Largest arrival delta a varint may carry (about 35 minutes): anything larger is bogus.
_MAX_DELTA_US = 1 << 41

#: Feedback goes out with the next data packet once this old, alone once K_FEEDBACK_MAX_WAIT
#: old, and K_FEEDBACK_AFTER_GAP after a gap in the packet numbers (a loss, or reordering).
K_FEEDBACK_INTERVAL = 0.05  # seconds
K_FEEDBACK_MAX_WAIT = 0.1  # seconds
K_FEEDBACK_AFTER_GAP = 0.01  # seconds
#: The shortest interval a peer may ask for (``ArrivalRecorder.set_interval``).
K_FEEDBACK_MIN_INTERVAL = 0.01  # seconds
#: Feedback rides on data once this fraction of the interval the peer asked for has
#: passed (and K_FEEDBACK_INTERVAL at most): a voice call asked for 25 ms reports then
#: carries them on its 20 ms frames instead of sending one alone between two frames.
K_FEEDBACK_RIDE = 0.75
#: Arrivals held for the next feedback; beyond it the oldest are dropped and counted.
K_MAX_PENDING = 8192
#: Packet numbers up to the largest received among which a late arrival is looked for:
#: aioquic's duplicate window (QuicPacketNumberWindow, 2 * MAX_ACK_RANGES). QUIC drops
#: anything older as a duplicate and that window answers "received" for it, so a gap that
#: falls out of it is lost for good. Gaps remembered: at most K_RECEIVED_WINDOW - 1.
K_RECEIVED_WINDOW = 128
#: Receiver drops one report can carry (the flags byte's low seven bits).
K_MAX_REPORTED_DROPS = 0x7F
_DROPS_FLAG = 0x80
#: Packets the sender remembers (and seconds): feedback about older ones is ignored.
K_HISTORY_PACKETS = 32768
K_HISTORY_AGE = 5.0  # seconds


def _varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """One decoded FEEDBACK datagram."""

    sequence: int
    """Feedback sequence number (16 bits, wraps)."""
    base: int
    """Packet number of the first packet covered."""
    arrivals: tuple[tuple[int, float | None], ...]
    """(packet number, arrival time in seconds on the receiver's clock, or None when it
    had not arrived) for every packet from ``base`` on, in packet-number order."""
    receiver_drops: int = 0
    """Datagrams the receiver's socket dropped since its previous report (at most
    ``K_MAX_REPORTED_DROPS``: that many or more)."""


def encode_feedback(sequence: int, base: int, arrivals: list[float | None], *,
                    receiver_drops: int = 0) -> bytes:
    """A FEEDBACK datagram for packets ``base``, ``base + 1``, … with these arrival times
    (seconds, None for a packet not received). At least one must have arrived.
    ``receiver_drops``: datagrams the receiver's socket dropped since the previous report
    (more than ``K_MAX_REPORTED_DROPS`` is sent as that many)."""
    if receiver_drops < 0:
        raise ValueError(f"receiver_drops must be at least 0, not {receiver_drops}")
    flags = _DROPS_FLAG | min(receiver_drops, K_MAX_REPORTED_DROPS) if receiver_drops else 0
    count = len(arrivals)
    if not 0 < count <= MAX_FEEDBACK_PACKETS:
        raise ValueError(f"feedback covers 1..{MAX_FEEDBACK_PACKETS} packets, not {count}")
    if not 0 <= base <= MAX_PACKET_NUMBER - count:
        raise ValueError(f"base packet number {base} out of range")
    times = [round(t * 1e6) for t in arrivals if t is not None]
    if not times:
        raise ValueError("feedback must report at least one arrival")
    bitmap = bytearray((count + 7) // 8)
    for i, t in enumerate(arrivals):
        if t is not None:
            bitmap[i >> 3] |= 0x80 >> (i & 7)
    out = bytearray(_HEADER.pack((WIRE_VERSION << 4) | TYPE_FEEDBACK, flags, sequence & 0xFFFF,
                                 base, count, times[0]))
    out += bitmap
    prev = times[0]
    for t in times:
        delta = t - prev
        prev = t
        _varint((delta << 1) ^ (delta >> 63), out)  # zigzag: small magnitudes stay small
    return bytes(out)


def decode_feedback(data: bytes | memoryview) -> Feedback:
    """Decode a FEEDBACK datagram; :class:`RemoteProtocolError` for anything malformed."""
    if len(data) < FEEDBACK_HEADER_SIZE:
        raise RemoteProtocolError(f"feedback of {len(data)} bytes is too short")
    vt, flags, seq, base, count, ref = _HEADER.unpack_from(data)
    if vt != (WIRE_VERSION << 4) | TYPE_FEEDBACK:
        raise RemoteProtocolError("not a feedback datagram")
    drops = 0
    if flags:  # the receiver's socket drops: 0x80 | a count of 1..127
        drops = flags & K_MAX_REPORTED_DROPS
        if not flags & _DROPS_FLAG or not drops:
            raise RemoteProtocolError(f"feedback flags 0x{flags:02x}: a drop count needs "
                                      f"the 0x80 flag and the flag a count of 1..127")
    if not 0 < count <= MAX_FEEDBACK_PACKETS:
        raise RemoteProtocolError(f"feedback packet count {count} out of 1..4096")
    if base > MAX_PACKET_NUMBER - count:
        raise RemoteProtocolError(f"feedback base packet number {base} out of range")
    pos = FEEDBACK_HEADER_SIZE
    bitmap = bytes(data[pos:pos + (count + 7) // 8])
    pos += len(bitmap)
    if len(bitmap) != (count + 7) // 8:
        raise RemoteProtocolError("feedback bitmap is truncated")
    if count % 8 and bitmap[-1] & (0xFF >> (count % 8)):
        raise RemoteProtocolError("feedback bitmap has bits beyond its packet count")
    arrivals: list[tuple[int, float | None]] = []
    t = ref
    end = len(data)
    for i in range(count):
        if not bitmap[i >> 3] & (0x80 >> (i & 7)):
            arrivals.append((base + i, None))
            continue
        value = shift = 0
        while True:
            if pos >= end:
                raise RemoteProtocolError("feedback arrival deltas are truncated")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift > 63:
                raise RemoteProtocolError("feedback varint longer than 9 bytes")
        delta = (value >> 1) ^ -(value & 1)
        if abs(delta) > _MAX_DELTA_US:
            raise RemoteProtocolError(f"feedback arrival delta {delta} us is implausible")
        t += delta
        arrivals.append((base + i, t / 1e6))
    if all(a is None for _, a in arrivals):
        raise RemoteProtocolError("feedback reports no arrival")
    if pos != end:
        raise RemoteProtocolError(f"{end - pos} stray bytes after the feedback")
    return Feedback(sequence=seq, base=base, arrivals=tuple(arrivals), receiver_drops=drops)


def padding_datagram(size: int) -> bytes:
    """A PADDING datagram of ``size`` bytes (probe clusters; receivers drop it)."""
    return bytes([(WIRE_VERSION << 4) | TYPE_PADDING]) + bytes(max(0, size - 1))


class ArrivalRecorder:
    """Receiving side: the arrival time of every 1-RTT packet, sent back as feedback.

    ``on_packet(largest, now, received)`` is called after each datagram (even one QUIC
    dropped) with the largest packet number received so far and QUIC's received-packet
    window: a packet number beyond the last largest arrived now; one that did not raise
    the largest is looked for among the gaps remembered earlier, and only within the last
    ``window`` packet numbers (aioquic's window claims everything older was received;
    QUIC drops such packets as duplicates, so older gaps are simply lost).
    """

    def __init__(self, *, window: int = K_RECEIVED_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 packet, not {window}")
        self._window = window
        self._largest = -1
        self._pending: list[tuple[int, float]] = []  # (packet number, arrival) unreported
        self._missing: OrderedDict[int, None] = OrderedDict()  # gaps, ascending
        self._next_base = 0  # first packet number not covered by a sent feedback
        self._last_sent = 0.0
        self._due_alone: float | None = None
        self._max_wait = K_FEEDBACK_MAX_WAIT
        self._sequence = 0
        self._drops = 0  # socket drops not yet reported
        self.sent = 0
        """Feedback datagrams sent."""
        self.drops_noted = 0
        """Datagrams the receiving socket dropped, as the driver reported them."""
        self.dropped = 0
        """Arrivals dropped before they could be reported (K_MAX_PENDING)."""

    def on_packet(self, largest: int, now: float, received: object) -> None:
        """Note the packet(s) that made QUIC's largest received number ``largest``.

        ``received`` supports ``pn in received``, exactly for the last ``window`` packet
        numbers up to ``largest`` (what it says of older ones is not used)."""
        missing = self._missing
        if largest > self._largest:
            lowest = largest - self._window + 1  # the oldest QUIC would still accept
            for pn in range(max(self._largest + 1, lowest), largest):
                missing[pn] = None
            while missing and next(iter(missing)) < lowest:
                missing.popitem(last=False)  # fell out of QUIC's window: lost
            if largest > self._largest + 1 and self._largest >= 0:
                self._gap(now)
            self._largest = largest
            self._add(largest, now)
            return
        if not missing:
            return
        # a reordered packet (or a duplicate, or nothing QUIC kept): every remembered gap
        # lies within the window, where membership is exact; one datagram carries at most
        # one 1-RTT packet, but take all found rather than leave one for a later datagram
        found = [pn for pn in missing if pn in received]  # type: ignore[operator]
        for pn in found:
            del missing[pn]
            self._add(pn, now)

    def note_drops(self, count: int, now: float) -> None:
        """The receiving socket dropped ``count`` more datagrams (its buffer was full):
        the next report says so, and goes out as soon as after a gap."""
        if count <= 0:
            return
        self.drops_noted += count
        self._drops = min(self._drops + count, K_MAX_REPORTED_DROPS)
        if self._pending:  # else the next arrival schedules it (``_add``)
            self._gap(now)

    def _add(self, pn: int, now: float) -> None:
        if len(self._pending) >= K_MAX_PENDING:
            self._pending.pop(0)
            self.dropped += 1
        self._pending.append((pn, now))
        if self._due_alone is None:
            self._due_alone = max(now, self._last_sent + self._max_wait)
            if self._drops:
                self._gap(now)

    @property
    def max_wait(self) -> float:
        """Seconds feedback waits at most before going out alone."""
        return self._max_wait

    def set_interval(self, seconds: float) -> float:
        """Report at most ``seconds`` apart (the sender's estimator asks for it in the
        hello), within K_FEEDBACK_MIN_INTERVAL..K_FEEDBACK_MAX_WAIT; returns what is used."""
        wait = min(max(float(seconds), K_FEEDBACK_MIN_INTERVAL), K_FEEDBACK_MAX_WAIT)
        self._max_wait = wait
        if self._due_alone is not None and self._pending:
            self._due_alone = min(self._due_alone, max(self._pending[0][1],
                                                       self._last_sent + wait))
        return wait

    def _gap(self, now: float) -> None:
        due = now + K_FEEDBACK_AFTER_GAP
        if self._due_alone is None or due < self._due_alone:
            self._due_alone = due

    def get_timer(self) -> float | None:
        """When feedback must go out even with no data to ride on."""
        return self._due_alone

    def due(self, now: float, *, with_data: bool) -> bool:
        """Whether feedback should be sent now (``with_data``: a data packet is about to
        be sent that it can ride on)."""
        if not self._pending or self._due_alone is None:
            return False
        # riding on data: K_FEEDBACK_INTERVAL, or sooner if the peer asked for less
        return now >= self._due_alone or (
            with_data and now >= self._last_sent + min(K_FEEDBACK_INTERVAL,
                                                       K_FEEDBACK_RIDE * self._max_wait))

    def take(self, now: float, room: int) -> Iterator[bytes]:
        """FEEDBACK datagrams of at most ``room`` bytes reporting every pending arrival."""
        pending = sorted(self._pending)
        self._pending = []
        self._last_sent = now
        self._due_alone = None
        i, n = 0, len(pending)
        while i < n:
            first = pending[i][0]
            # report the packets missing since the last feedback too (within reason); a
            # late arrival older than that starts its own range
            base = min(first, max(self._next_base, first - MAX_FEEDBACK_PACKETS // 4))
            arrivals: list[float | None] = []
            last_pn = base - 1
            prev_us: int | None = None
            varint_bytes = 0
            while i < n:
                pn, t = pending[i]
                if pn <= last_pn:  # the same packet number twice: keep the first
                    i += 1
                    continue
                us = round(t * 1e6)
                delta = 0 if prev_us is None else us - prev_us
                vlen = _varint_len((delta << 1) ^ (delta >> 63))
                span = pn - base + 1
                size = FEEDBACK_HEADER_SIZE + (span + 7) // 8 + varint_bytes + vlen
                if arrivals and (span > MAX_FEEDBACK_PACKETS or size > room):
                    break
                arrivals.extend([None] * (pn - last_pn - 1))
                arrivals.append(t)
                varint_bytes += vlen
                prev_us = us
                last_pn = pn
                i += 1
            self._next_base = max(self._next_base, last_pn + 1)
            self.sent += 1
            drops, self._drops = self._drops, 0
            yield encode_feedback(self._sequence, base, arrivals, receiver_drops=drops)
            self._sequence = (self._sequence + 1) & 0xFFFF


def _varint_len(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


@dataclass(slots=True)
class FeedbackCounters:
    """What the sending side did with the feedback it received."""

    feedback: int = 0
    """FEEDBACK datagrams accepted."""
    malformed: int = 0
    """FEEDBACK datagrams that failed to decode (dropped)."""
    reordered: int = 0
    """FEEDBACK datagrams older than one already seen (still used)."""
    unknown_packets: int = 0
    """Reports of packet numbers never sent (beyond the largest sent): ignored."""
    stale_packets: int = 0
    """Reports of packets no longer in the history (too old): ignored."""
    duplicate_packets: int = 0
    """Arrivals reported again for a packet already reported received: ignored."""
    receiver_drops: int = 0
    """Datagrams the peer's socket dropped, as its reports said (each report says at
    most ``K_MAX_REPORTED_DROPS``)."""


class _Sent:
    __slots__ = ("cluster", "received", "size", "time")

    def __init__(self, time: float, size: int, cluster: int | None) -> None:
        self.time = time
        self.size = size
        self.cluster = cluster
        self.received = False  # an arrival was already reported


class SentHistory:
    """Sending side: send time, size and probe cluster of each recent 1-RTT packet."""

    def __init__(self, *, max_packets: int = K_HISTORY_PACKETS,
                 max_age: float = K_HISTORY_AGE) -> None:
        self._sent: OrderedDict[int, _Sent] = OrderedDict()  # by packet number
        self._max_packets = max_packets
        self._max_age = max_age
        self._largest = -1
        self._last_feedback_seq: int | None = None
        self.counters = FeedbackCounters()
        self.last_receiver_drops = 0
        """The receiver drops the latest accepted report carried (0 for none)."""

    def on_sent(self, packet_number: int, size: int, now: float, cluster: int | None) -> None:
        """Remember a packet that left (in packet-number order)."""
        sent = self._sent
        sent[packet_number] = _Sent(now, size, cluster)
        if packet_number > self._largest:
            self._largest = packet_number
        while len(sent) > self._max_packets:
            sent.popitem(last=False)
        while sent and now - next(iter(sent.values())).time > self._max_age:
            sent.popitem(last=False)

    def on_feedback(self, data: bytes) -> list[PacketResult]:
        """The estimator's rows for one FEEDBACK datagram (empty if it was unusable)."""
        try:
            fb = decode_feedback(data)
        except RemoteProtocolError:
            self.counters.malformed += 1
            self.last_receiver_drops = 0
            return []
        c = self.counters
        c.feedback += 1
        self.last_receiver_drops = fb.receiver_drops
        c.receiver_drops += fb.receiver_drops
        last = self._last_feedback_seq
        if last is not None and 0 < (last - fb.sequence) & 0xFFFF < 0x8000:
            c.reordered += 1
        else:
            self._last_feedback_seq = fb.sequence
        results: list[PacketResult] = []
        sent = self._sent
        for pn, arrival in fb.arrivals:
            if pn > self._largest:
                c.unknown_packets += 1
                continue
            row = sent.get(pn)
            if row is None:
                # not in flight (ACK-only packets are never remembered) or too old
                if pn < self._oldest():
                    c.stale_packets += 1
                continue
            if row.received:
                if arrival is not None:
                    c.duplicate_packets += 1
                continue
            if arrival is not None:
                row.received = True
            results.append(PacketResult(sequence=pn, send_time=row.time, size_bytes=row.size,
                                        arrival_time=arrival, probe_cluster=row.cluster))
        return results

    def _oldest(self) -> int:
        return next(iter(self._sent)) if self._sent else self._largest + 1

    def __len__(self) -> int:
        return len(self._sent)
