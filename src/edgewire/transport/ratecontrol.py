"""A session's rate control: feedback both ways, the estimator, the QUIC controller, and
the split of the estimate between channels.

One :class:`RateController` per session. As a receiver it records the arrival of every
1-RTT packet and sends FEEDBACK datagrams (``transport.feedback``). As a sender it keeps
the history of packets sent, turns the peer's feedback into per-packet results for the
estimator (``transport.bwe``), runs the estimator's probes (PADDING datagrams at the
probe rate), hands the target to the ``"edgewire"`` congestion controller when the
connection uses it, and splits the target between the local channels by priority.
The estimate is computed whatever the controller, so reno and cubic sessions report one
too (the benchmark compares them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicSentPacket

from edgewire.transport import quicstats
from edgewire.transport.bwe import (
    DEFAULT_ESTIMATOR,
    BandwidthEstimator,
    BweConfig,
    PacketResult,
    ProbeRequest,
    create_estimator,
)
from edgewire.transport.cc import EdgewireCongestionControl
from edgewire.transport.feedback import ArrivalRecorder, SentHistory, padding_datagram
from edgewire.transport.qos import ChannelKind

__all__ = ["ChannelDemand", "RateController", "allocate"]

#: How often channel send rates are measured and the shares recomputed.
K_ALLOCATION_INTERVAL = 0.2  # seconds
#: A share change smaller than this fraction is not announced.
K_SHARE_CHANGE = 0.1
#: Each kind's demand: its measured send rate times a headroom to grow into, at least a
#: floor. Embeddings are elastic (None): they take what is left.
K_DEMAND: dict[ChannelKind, tuple[float, float] | None] = {
    ChannelKind.AUDIO: (1.25, 64_000.0),
    ChannelKind.TOKENS: (2.0, 32_000.0),
    ChannelKind.VIDEO: (1.5, 300_000.0),
    ChannelKind.EMBEDDINGS: None,
}
#: Pacing rate ÷ target. A backlogged sender (bulk embeddings) sends exactly at the
#: pacing rate, so anything above 1 would run ahead of the estimate; the estimator's own
#: increase is what finds more capacity.
K_PACING_GAIN = 1.0
#: Seconds of pacing handed to aioquic at a time (its queue is first in, first out).
K_HANDOFF = 0.02  # seconds
#: A full-size QUIC packet, bytes (handoffs hold at least two).
K_MAX_PACKET = 1200
#: How long past its planned end a probe cluster keeps tagging packets until as many have
#: left as it planned: padding handed to QUIC can leave a little late (pacing), and a
#: cluster short of ``min_packets`` gives no result at all.
K_PROBE_GRACE = 0.05  # seconds
#: Audio and tokens are never held below what they send: random loss (which a loss-based
#: estimate reads as congestion) must not silence a call. The floor is their measured
#: send rate, FEC parity and retransmissions included, times this headroom, which covers
#: the per packet overhead of small packets (QUIC header and AEAD tag are a third of an audio
#: packet), plus K_FLOOR_EXTRA for the feedback, NACKs and reports that go with them.
K_FLOOR_HEADROOM = 4.0
K_FLOOR_EXTRA = 32_000.0
#: Smoothing of the measured channel send rates (weight of the newest interval).
K_RATE_SMOOTHING = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDemand:
    """What the allocation knows about one local channel."""

    channel_id: int
    priority: int
    kind: ChannelKind
    rate_bps: float
    """Measured send rate (smoothed)."""


def allocate(target_bps: float, channels: Iterable[ChannelDemand]) -> dict[int, float]:
    """Split ``target_bps`` by priority (lower first, then channel id): each channel gets
    its demand (send rate x headroom, at least a floor) while the target lasts; elastic
    kinds (embeddings) share what is left after every channel of higher priority."""
    left = max(0.0, target_bps)
    shares: dict[int, float] = {}
    ordered = sorted(channels, key=lambda c: (c.priority, c.channel_id))
    elastic: list[ChannelDemand] = []
    for ch in ordered:
        demand = K_DEMAND.get(ch.kind)
        if demand is None:
            elastic.append(ch)
            continue
        headroom, floor = demand
        want = max(ch.rate_bps * headroom, floor)
        shares[ch.channel_id] = min(want, left)
        left -= shares[ch.channel_id]
    for ch in elastic:
        shares[ch.channel_id] = left / len(elastic)
    return shares


class RateController:
    """Feedback, estimate, probes and shares of one session (sans-I/O)."""

    def __init__(self, quic: QuicConnection, *, estimator: str = DEFAULT_ESTIMATOR,
                 config: BweConfig | None = None) -> None:
        self.quic = quic
        self.recorder = ArrivalRecorder()
        self._socket_drops: int | None = None
        self.history = SentHistory()
        self.estimator: BandwidthEstimator = create_estimator(estimator, config)
        cc = quicstats.congestion_controller(quic)
        self.cc: EdgewireCongestionControl | None = (
            cc if isinstance(cc, EdgewireCongestionControl) else None)
        quicstats.observe_sent_packets(quic, self.on_quic_sent)
        quicstats.keep_pacer_bursts(quic)
        if self.cc is not None:
            self.cc.smoothed_rtt = lambda: quicstats.smoothed_rtt_or_none(quic)
            self.cc.set_target(self.estimator.target_bps)
            quicstats.pace_at(quic, self._pacing_rate, burst_rtt=self.cc.burst_rtt)
        self._probe: ProbeRequest | None = None
        self._probe_until = 0.0
        self._padding_left = 0
        self._probe_planned = 0
        self._probe_tagged = 0
        self._padding_gap = 0.0
        self._next_padding = 0.0
        self.probes = 0
        """Probe clusters started."""
        self.padding_bytes = 0
        """PADDING bytes sent for probes."""
        self._shares: dict[int, float] = {}
        self._announced: dict[int, float] = {}
        self._rates: dict[int, float] = {}
        self._sent_marks: dict[int, int] = {}
        self._recovery_rates: dict[int, float] = {}  # parity + retransmissions, bits/s
        self._recovery_marks: dict[int, int] = {}
        self._next_allocation = 0.0
        self._last_allocation: float | None = None
        self._floor_bps = 0.0
        self._observers: list[Callable[[list[PacketResult], float], None]] = []

    # ---------------------------------------------------------------- receiving side

    def on_received(self, now: float) -> None:
        """After every datagram QUIC accepted: note the packet's arrival."""
        largest, window = quicstats.received_window(self.quic)
        if largest >= 0:
            self.recorder.on_packet(largest, now, window)

    def on_socket_drops(self, total: int, now: float) -> None:
        """The receiving socket's drop count so far (a running total, wrapping at
        2**32): what it dropped since the last call goes into the next feedback. The
        first call only sets the mark (a socket shared with earlier sessions counted
        their drops too)."""
        seen, self._socket_drops = self._socket_drops, total
        if seen is not None:
            self.recorder.note_drops((total - seen) & 0xFFFFFFFF, now)

    def feedback(self, now: float, *, with_data: bool) -> list[bytes]:
        """FEEDBACK datagrams due now (``with_data``: a data packet is about to go), each
        at most the largest DATAGRAM payload of the connection (looked up only when a
        report is due: this is asked before every send)."""
        if not self.recorder.due(now, with_data=with_data):
            return []
        return list(self.recorder.take(now, quicstats.max_datagram_payload(self.quic)))

    def feedback_wish_ms(self) -> int:
        """The feedback interval (ms) our estimator asks the peer for; 0 for no wish."""
        interval = self.estimator.feedback_interval
        return 0 if interval is None else max(1, round(interval * 1000))

    def on_peer_feedback_wish(self, ms: int) -> None:
        """The peer's estimator asked for feedback every ``ms`` ms (0: its default)."""
        if ms > 0:
            self.recorder.set_interval(ms / 1000)

    # ---------------------------------------------------------------- sending side

    def on_quic_sent(self, packet: QuicSentPacket) -> None:
        """A packet left (observed from aioquic's loss recovery)."""
        if self.cc is not None:
            quicstats.pacing_refund(self.quic, packet.sent_bytes)
        if (not packet.in_flight or not quicstats.is_one_rtt(packet)
                or packet.sent_time is None):
            return
        now = packet.sent_time
        cluster = None
        if self._probe is not None and self._tagging(now):
            cluster = self._probe.cluster
            self._probe_tagged += 1
        self.history.on_sent(packet.packet_number, packet.sent_bytes, now, cluster)
        self.estimator.on_sent(size_bytes=packet.sent_bytes, now=now)

    def on_feedback(self, data: bytes, now: float) -> None:
        """A FEEDBACK datagram from the peer."""
        results = self.history.on_feedback(data)
        if not results:
            return
        drops = self.history.last_receiver_drops
        for observer in self._observers:
            observer(results, now)
        rtt = quicstats.smoothed_rtt_or_none(self.quic)
        if rtt is not None:
            self.estimator.on_rtt(rtt, now=now, min_rtt=quicstats.min_rtt_or_none(self.quic))
        self.estimator.on_feedback(results, now=now)
        if drops:
            self.estimator.on_receiver_drops(drops, now=now)
        self._follow(now)

    def add_feedback_observer(self,
                              observer: Callable[[list[PacketResult], float], None]) -> None:
        """Also hand every feedback's per-packet results to ``observer(results, now)``
        (read-only: the health monitor derives jitter, loss and bursts from them)."""
        self._observers.append(observer)

    def on_timer(self, now: float) -> None:
        """Estimator timers and probe bookkeeping; call from the session's timer."""
        timer = self.estimator.get_timer()
        if timer is not None and now >= timer:
            self.estimator.on_timer(now=now)
        # at the cluster's end (inclusive, the timer fires exactly then), not after it
        if (self._probe is not None and self._padding_left <= 0
                and now >= self._probe_end()):
            self._probe = None
        self._follow(now)
        if self.cc is not None:
            self.cc.on_timer(now)

    def get_timer(self) -> float | None:
        """The earliest of the estimator's, the feedback's, the probe's and the congestion
        controller's (window growth while silent) deadlines."""
        # called after every send and delivery: plain comparisons, no temporary list
        best = self.estimator.get_timer()
        t = self.recorder.get_timer()
        if t is not None and (best is None or t < best):
            best = t
        if self._probe is not None:
            t = self._next_padding if self._padding_left > 0 else self._probe_end()
            if best is None or t < best:
                best = t
        if self.cc is not None:
            t = self.cc.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def probe_padding(self, now: float, room: int) -> list[bytes]:
        """PADDING of a probe the estimator asks for now, or the next one still owed.

        Padding is handed over one datagram at a time at the probe rate, so a media
        frame sent meanwhile waits behind at most one padding packet."""
        size = max(room, 64)
        if self._probe is None:
            req = self.estimator.probe_request(now=now)
            if req is None:
                return []
            self._probe = req
            self._padding_left = max(req.min_packets,
                                     math.ceil(req.rate_bps / 8 * req.duration / size))
            self._padding_gap = size * 8 / req.rate_bps
            self._next_padding = now
            # every packet sent while the padding drains at the probe rate is part of the
            # cluster (the padding and whatever data goes with it)
            self._probe_until = now + max(req.duration, self._padding_left * self._padding_gap)
            self._probe_planned = self._padding_left
            self._probe_tagged = 0
            self.probes += 1
            if self.cc is not None:
                self._set_target(max(req.rate_bps, self.send_rate_bps))
        if self._padding_left <= 0 or now < self._next_padding:
            return []
        self._padding_left -= 1
        self._next_padding = now + self._padding_gap
        self.padding_bytes += size
        return [padding_datagram(size)]

    def _tagging(self, now: float) -> bool:
        """Packets sent at ``now`` belong to the current cluster: until its planned end,
        or a little after it while fewer packets than planned have left."""
        return now <= self._probe_end()

    def _probe_end(self) -> float:
        if self._probe_tagged >= self._probe_planned:
            return self._probe_until
        return self._probe_until + K_PROBE_GRACE

    def _pacing_rate(self) -> float | None:
        return None if self.cc is None else self.cc.target_bps * K_PACING_GAIN

    def handoff_bytes(self) -> int | None:
        """How much data aioquic should hold at most (None without edgewire's
        controller): K_HANDOFF of pacing, at least two full packets."""
        rate = self._pacing_rate()
        if rate is None:
            return None
        return max(2 * K_MAX_PACKET, int(rate / 8 * K_HANDOFF))

    @property
    def send_rate_bps(self) -> float:
        """What the controller lets out: the estimate, but never less than the real-time
        floor (see K_FLOOR_HEADROOM)."""
        return max(self.estimator.target_bps, self._floor_bps)

    def _set_target(self, rate_bps: float) -> None:
        assert self.cc is not None
        if rate_bps != self.cc.target_bps:
            self.cc.set_target(rate_bps)
            quicstats.refresh_pacing(self.quic)

    def _follow(self, now: float) -> None:
        if self.cc is not None and (self._probe is None or now > self._probe_until):
            self._set_target(self.send_rate_bps)

    # ---------------------------------------------------------------- shares

    @property
    def next_allocation(self) -> float:
        """When the shares are recomputed next."""
        return self._next_allocation

    def allocation_due(self, now: float) -> bool:
        """True when the shares should be recomputed."""
        return now >= self._next_allocation

    def reallocate(self, now: float,
                   channels: Iterable[tuple[int, int, ChannelKind, int, int]]
                   ) -> list[tuple[int, float]]:
        """Measure each local channel's send rate from (id, priority, kind, media bytes
        sent so far, recovery bytes sent so far), split the target and return the
        (channel, share) changes worth announcing. Shares follow the media rate; the
        real-time floor counts parity and retransmissions too, since a call's recovery
        must not be throttled by the loss it repairs."""
        self._next_allocation = now + K_ALLOCATION_INTERVAL
        elapsed = None if self._last_allocation is None else now - self._last_allocation
        self._last_allocation = now
        demands = []
        realtime = 0.0
        has_realtime = False
        for cid, priority, kind, sent, extra in channels:
            rate = self._measure(self._rates, self._sent_marks, cid, sent, elapsed)
            demands.append(ChannelDemand(channel_id=cid, priority=priority, kind=kind,
                                         rate_bps=rate))
            if kind in (ChannelKind.AUDIO, ChannelKind.TOKENS):
                has_realtime = True
                realtime += rate + self._measure(self._recovery_rates,
                                                 self._recovery_marks, cid, extra, elapsed)
        self._floor_bps = realtime * K_FLOOR_HEADROOM + (K_FLOOR_EXTRA if has_realtime
                                                         else 0.0)
        self._shares = allocate(self.estimator.target_bps, demands)
        # channels closed since the last split leave every table
        for table in (self._announced, self._rates, self._sent_marks,
                      self._recovery_rates, self._recovery_marks):
            for cid in [c for c in table if c not in self._shares]:
                del table[cid]
        changes = []
        for cid, share in self._shares.items():
            old = self._announced.get(cid)
            if old is None or abs(share - old) > K_SHARE_CHANGE * max(old, 1.0):
                self._announced[cid] = share
                changes.append((cid, share))
        return changes

    @staticmethod
    def _measure(rates: dict[int, float], marks: dict[int, int], cid: int, sent: int,
                 elapsed: float | None) -> float:
        """Smoothed rate of one channel's byte counter (``rates`` and ``marks`` hold the
        rates and the counter values of the last allocation)."""
        prev = marks.get(cid)
        marks[cid] = sent
        rate = rates.get(cid, 0.0)
        if prev is not None and elapsed:
            measured = (sent - prev) * 8 / elapsed
            rate = measured if cid not in rates else (
                K_RATE_SMOOTHING * measured + (1 - K_RATE_SMOOTHING) * rate)
        rates[cid] = rate
        return rate

    def share(self, channel_id: int) -> float | None:
        """The channel's current share of the estimate, bits per second."""
        return self._shares.get(channel_id)

    # ---------------------------------------------------------------- reporting

    @property
    def target_bps(self) -> float:
        """The bandwidth estimate (the estimator's target rate), bits per second."""
        return self.estimator.target_bps

    def state(self) -> dict[str, Any]:
        """Estimator state plus feedback and probe counters, JSON-ready."""
        c = self.history.counters
        return {
            **self.estimator.state(),
            "controller": "edgewire" if self.cc is not None else "other",
            "feedback_sent": self.recorder.sent,
            "feedback_received": c.feedback,
            "feedback_malformed": c.malformed,
            "feedback_reordered": c.reordered,
            "feedback_unknown_packets": c.unknown_packets,
            "feedback_stale_packets": c.stale_packets,
            "feedback_duplicate_packets": c.duplicate_packets,
            "arrivals_dropped": self.recorder.dropped,
            "socket_drops": self.recorder.drops_noted,
            "probes_started": self.probes,
            "padding_bytes": self.padding_bytes,
            "shares_bps": {str(k): round(v) for k, v in self._shares.items()},
        }
