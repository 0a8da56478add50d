"""edgewire's congestion controller for aioquic: window and pacing follow the estimate.

aioquic's congestion controllers (Reno, CUBIC) grow their window until the bottleneck
queue overflows. This one has no opinion of its own: the session's bandwidth estimator
(``edgewire.transport.bwe``, delay- and loss-based) sets a target rate, and streams and
DATAGRAMs together are sent at that rate. Registered with aioquic as ``"edgewire"``.

The pacer sends at the target (``quicstats.pace_at``: aioquic would otherwise pace at
window ÷ smoothed RTT). The window caps what is in flight at target x max(min RTT +
K_WINDOW_EXTRA, K_MIN_WINDOW_TIME): the extra covers the delayed ACK (up to 25 ms), feedback
jitter and a small queue, so a paced flow at its target is not also window-limited. When
the capacity falls below the target, or the path stops delivering, the window stops the
sender one window after the ACKs stop, whatever the estimator has yet to learn: the queue
it can build is bounded by the window. The min RTT is the smallest RTT sample of the last
K_MIN_RTT_WINDOW to K_MIN_RTT_WINDOW x 2 seconds, so a longer path is learned again.

aioquic's pacer lets a quarter of the smoothed RTT's worth of the rate leave at once
after an idle spell (:func:`quicstats.pace_at` passes :meth:`burst_rtt`): on a 300 ms
path that burst is 75 ms of the rate, far above a low-delay target of a few
milliseconds of queue, and a window-limited sender releases one every round trip. So
the path's min RTT beyond K_BURST_REFERENCE_RTT does not count towards the burst; the
queueing delay in the smoothed RTT still does, as on a short path. On a path of a few
milliseconds (a LAN, loopback) the same quarter is a few microseconds: two packets per
burst, so every two packets cost a wake-up of the event loop, and a fast path was held
to what the loop could do (65 Mbit/s on loopback where Reno's bursts carried 136). So a
burst is at least K_MIN_BURST_TIME of the rate (still 2 to 16 packets): at a 50 ms round
trip a quarter of it is longer, and nothing changes there.

A full window after a blackout would hold the sender until QUIC's probe timeout (which
backs off to seconds) frees it: the packets in flight were lost with the path. So while no
ACK has come for K_SILENCE_AFTER beyond the window time, the window grows by one packet,
again K_SILENCE_INTERVAL later, and then at intervals that double up to
K_SILENCE_MAX_INTERVAL (:meth:`EdgewireCongestionControl.on_timer`, driven by the
session's timer): a trickle that is acknowledged as soon as the path is back, which frees
the window at once. Each packet of it that the path does not drop waits in the
bottleneck queue until the path returns, so the trickle thins out as the silence lasts:
over a 3 s cellular outage it strands half the packets a steady one a tenth of a second
apart would, and costs at most K_SILENCE_MAX_INTERVAL of extra wait once the path is back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from aioquic.quic.congestion.base import (
    K_MINIMUM_WINDOW,
    QuicCongestionControl,
    register_congestion_control,
)
from aioquic.quic.packet_builder import QuicSentPacket

__all__ = ["CONGESTION_CONTROL_NAME", "K_BURST_REFERENCE_RTT", "K_MIN_BURST_TIME",
           "EdgewireCongestionControl"]

#: Name under which the controller is registered with aioquic.
CONGESTION_CONTROL_NAME = "edgewire"
#: Target before the estimator has said anything (the estimator's own start rate).
K_START_BPS = 300_000.0
#: Window time beyond the min RTT.
K_WINDOW_EXTRA = 0.08  # seconds
#: RTT assumed before the first sample.
K_INITIAL_RTT = 0.1  # seconds
#: The window covers at least this much time at the target: on a short path a window of
#: one RTT would stall small real-time packets behind a few unacknowledged ones (after a
#: blackout, until loss detection clears them); pacing holds the rate either way.
K_MIN_WINDOW_TIME = 0.1  # seconds
#: The min RTT is taken over the samples of the last one to two of these periods.
K_MIN_RTT_WINDOW = 5.0  # seconds
#: Silence (no ACK) beyond the window time after which the window grows a packet...
K_SILENCE_AFTER = 0.05  # seconds
#: ...again this many seconds later, then at intervals doubling...
K_SILENCE_INTERVAL = 0.1  # seconds
#: ...up to this one, until an ACK comes.
K_SILENCE_MAX_INTERVAL = 0.2  # seconds: five packets a second into a dark path
#: Fewest packets the window allows, so ACK clocking never stalls.
K_MIN_PACKETS = 4
#: The pacer's burst after an idle spell grows with the smoothed RTT only up to a path
#: whose min RTT is this long (the delivery estimator's default ``reference_rtt``).
#: Beyond it, a 300 ms path's bursts of 75 ms of the rate kept a standing queue that
#: stalled the window every round trip (competition scenario: 0.60 of the link).
K_BURST_REFERENCE_RTT = 0.08  # seconds
#: The pacer's burst is at least this much time at the rate (a quarter of the RTT
#: :meth:`EdgewireCongestionControl.burst_rtt` returns): a millisecond of queue at a
#: bottleneck of the same rate, well under any queue target.
K_MIN_BURST_TIME = 0.001  # seconds


def _doubling_steps() -> int:
    """Intervals of the trickle shorter than K_SILENCE_MAX_INTERVAL."""
    if K_SILENCE_MAX_INTERVAL <= K_SILENCE_INTERVAL:
        return 0
    return math.ceil(math.log2(K_SILENCE_MAX_INTERVAL / K_SILENCE_INTERVAL) - 1e-12)


def silence_grant_time(k: int) -> float:
    """Seconds after the silence starts at which the trickle grants its k-th packet
    (k >= 1): the first at once, then K_SILENCE_INTERVAL later, each interval twice the
    one before up to K_SILENCE_MAX_INTERVAL."""
    if k <= 1:
        return 0.0
    steps = _doubling_steps()
    if k - 1 <= steps:
        return K_SILENCE_INTERVAL * (2.0 ** (k - 1) - 1.0)
    ramp = K_SILENCE_INTERVAL * (2.0 ** steps - 1.0)
    return ramp + (k - 1 - steps) * K_SILENCE_MAX_INTERVAL


def silence_credit(elapsed: float) -> int:
    """Packets the trickle has granted ``elapsed`` seconds into a silence (>= 1)."""
    steps = _doubling_steps()
    ramp = K_SILENCE_INTERVAL * (2.0 ** steps - 1.0)
    if elapsed + 1e-9 < ramp:
        return 1 + int(math.log2(max(elapsed, 0.0) / K_SILENCE_INTERVAL + 1.0) + 1e-9)
    return 1 + steps + int((elapsed - ramp) / K_SILENCE_MAX_INTERVAL + 1e-9)


class EdgewireCongestionControl(QuicCongestionControl):
    """A window and pacing rate derived from an external target rate (``set_target``).

    The session attaches a reader of aioquic's smoothed RTT. Losses and ACKs only
    update bytes in flight: reacting to loss is the estimator's job (its loss-based part),
    which sees loss per packet rather than one congestion event per round trip.
    """

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._max_datagram_size = max_datagram_size
        self.target_bps = K_START_BPS
        """Rate the window and pacer follow, bits per second."""
        self.smoothed_rtt: Callable[[], float | None] | None = None
        """Reader of the connection's smoothed RTT (set by the session)."""
        # windowed min RTT: minimum of the current and the previous period's samples
        self._min_cur = math.inf
        self._min_prev = math.inf
        self._min_start: float | None = None
        self._lowest_rtt = math.inf  # the connection's smallest RTT sample
        self._window_time = K_MIN_WINDOW_TIME
        self._quiet_since: float | None = None  # last ACK, or first send after idle
        self._credit = 0  # packets the window holds beyond the target's, while silent
        self.silence_packets = 0
        """Packets of window granted while no ACK came (see the module docstring)."""
        self.persistent_congestion = 0
        """Times aioquic declared persistent congestion."""
        self._update_window()

    def set_target(self, target_bps: float) -> None:
        """Follow a new target rate."""
        self.target_bps = max(float(target_bps), 1.0)
        self._update_window()

    @property
    def min_rtt(self) -> float | None:
        """Smallest RTT sample of the last K_MIN_RTT_WINDOW to 2 x K_MIN_RTT_WINDOW s."""
        best = min(self._min_cur, self._min_prev)
        return best if best < math.inf else None

    def burst_rtt(self, smoothed_rtt: float) -> float:
        """The RTT the pacer's burst allowance is taken from: the smoothed RTT less what
        the path's RTT (the connection's smallest sample: a long outage keeps a short
        path's recent samples high) exceeds K_BURST_REFERENCE_RTT by, and at least
        4 x K_MIN_BURST_TIME (module docstring)."""
        floor = 4.0 * K_MIN_BURST_TIME  # the burst is a quarter of the returned RTT
        low = self._lowest_rtt
        if not math.isfinite(low):
            return max(smoothed_rtt, floor)
        return max(smoothed_rtt - max(0.0, low - K_BURST_REFERENCE_RTT),
                   min(smoothed_rtt, K_BURST_REFERENCE_RTT), floor)

    def _update_window(self) -> None:
        rtt = self.min_rtt
        if rtt is None:
            rtt = self.smoothed_rtt() if self.smoothed_rtt is not None else None
        if rtt is None:
            rtt = K_INITIAL_RTT
        self._window_time = max(rtt + K_WINDOW_EXTRA, K_MIN_WINDOW_TIME)
        window = self.target_bps / 8.0 * self._window_time
        floor = max(K_MIN_PACKETS, K_MINIMUM_WINDOW) * self._max_datagram_size
        self.congestion_window = (max(int(window), floor)
                                  + self._credit * self._max_datagram_size)

    def _silence_start(self) -> float | None:
        """When the window starts to grow for lack of ACKs (None: nothing in flight)."""
        if self._quiet_since is None or self.bytes_in_flight <= 0:
            return None
        return self._quiet_since + self._window_time + K_SILENCE_AFTER

    def get_timer(self) -> float | None:
        """When :meth:`on_timer` next grows the window, while nothing is acknowledged."""
        start = self._silence_start()
        if start is None:
            return None
        return start + silence_grant_time(self._credit + 1)

    def on_timer(self, now: float) -> None:
        """Grow the window by the packets due after this much silence (see above)."""
        start = self._silence_start()
        if start is None or now < start:
            return
        credit = silence_credit(now - start)
        if credit > self._credit:
            self.silence_packets += credit - self._credit
            self._credit = credit
            self._update_window()

    def _acked(self, now: float) -> None:
        self._quiet_since = now
        if self._credit:
            self._credit = 0
            self._update_window()

    # ------------------------------------------------------------ aioquic's hooks

    def on_packet_acked(self, *, now: float, packet: QuicSentPacket) -> None:
        self.bytes_in_flight -= packet.sent_bytes
        self._acked(now)

    def on_packet_sent(self, *, packet: QuicSentPacket) -> None:
        if self.bytes_in_flight <= 0:
            # nothing was in flight: silence counts from this packet, not from an ACK
            # that may be an idle period old
            self._quiet_since = packet.sent_time
        self.bytes_in_flight += packet.sent_bytes

    def on_packets_expired(self, *, packets: Iterable[QuicSentPacket]) -> None:
        for packet in packets:
            self.bytes_in_flight -= packet.sent_bytes

    def on_packets_lost(self, *, now: float, packets: Iterable[QuicSentPacket]) -> None:
        for packet in packets:
            self.bytes_in_flight -= packet.sent_bytes

    def on_persistent_congestion(self) -> None:
        # the estimator sees the same silence as missing feedback and backs off itself
        self.persistent_congestion += 1

    def on_rtt_measurement(self, *, now: float, rtt: float) -> None:
        # aioquic updates its smoothed RTT just before this call and sets the pacing rate
        # from the window just after it
        if self._min_start is None:
            self._min_start = now
        elif now - self._min_start >= K_MIN_RTT_WINDOW:
            self._min_prev, self._min_cur = self._min_cur, math.inf
            self._min_start = now
        if rtt > 0:
            self._min_cur = min(self._min_cur, rtt)
            self._lowest_rtt = min(self._lowest_rtt, rtt)
        self._update_window()

    def get_log_data(self) -> dict[str, Any]:
        data = super().get_log_data()
        data["target_bps"] = round(self.target_bps)
        if self._credit:
            data["silence_credit_packets"] = self._credit
        if self.min_rtt is not None:
            data["min_rtt"] = round(self.min_rtt, 6)
        return data


register_congestion_control(CONGESTION_CONTROL_NAME, EdgewireCongestionControl)
