"""edgewire's congestion controller for aioquic: window and pacing follow the estimate.

aioquic's congestion controllers (Reno, CUBIC) grow their window until the bottleneck
queue overflows. This one has no opinion of its own: the session's bandwidth estimator
(``edgewire.transport.bwe``, delay- and loss-based) sets a target rate, and streams and
DATAGRAMs together are sent at that rate. Registered with aioquic as ``"edgewire"``.

The pacer sends at the target (``quicstats.pace_at``: aioquic would otherwise pace at
window ÷ smoothed RTT). The window, target x max(smoothed RTT + K_WINDOW_EXTRA,
K_MIN_WINDOW_TIME), only caps what is in flight: the extra covers the delayed ACK (up to
25 ms) and feedback jitter, so a paced flow is never also window-limited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aioquic.quic.congestion.base import (
    K_MINIMUM_WINDOW,
    QuicCongestionControl,
    register_congestion_control,
)
from aioquic.quic.packet_builder import QuicSentPacket

__all__ = ["CONGESTION_CONTROL_NAME", "EdgewireCongestionControl"]

#: Name under which the controller is registered with aioquic.
CONGESTION_CONTROL_NAME = "edgewire"
#: Target before the estimator has said anything (the estimator's own start rate).
K_START_BPS = 300_000.0
#: Window time beyond the smoothed RTT.
K_WINDOW_EXTRA = 0.04  # seconds
#: RTT assumed before the first sample.
K_INITIAL_RTT = 0.1  # seconds
#: The window covers at least this much time at the target: on a short path a window of
#: one RTT would stall small real-time packets behind a few unacknowledged ones (after a
#: blackout, until loss detection clears them); pacing holds the rate either way.
K_MIN_WINDOW_TIME = 1.0  # seconds
#: Fewest packets the window allows, so ACK clocking never stalls.
K_MIN_PACKETS = 4


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
        self._rtt: float | None = None
        self.persistent_congestion = 0
        """Times aioquic declared persistent congestion."""
        self._update_window()

    def set_target(self, target_bps: float) -> None:
        """Follow a new target rate."""
        self.target_bps = max(float(target_bps), 1.0)
        self._update_window()

    def _update_window(self) -> None:
        rtt = self.smoothed_rtt() if self.smoothed_rtt is not None else None
        if rtt is None:
            rtt = self._rtt if self._rtt is not None else K_INITIAL_RTT
        window = self.target_bps / 8.0 * max(rtt + K_WINDOW_EXTRA, K_MIN_WINDOW_TIME)
        floor = max(K_MIN_PACKETS, K_MINIMUM_WINDOW) * self._max_datagram_size
        self.congestion_window = max(int(window), floor)

    # ------------------------------------------------------------ aioquic's hooks

    def on_packet_acked(self, *, now: float, packet: QuicSentPacket) -> None:
        self.bytes_in_flight -= packet.sent_bytes

    def on_packet_sent(self, *, packet: QuicSentPacket) -> None:
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
        self._rtt = rtt if self._rtt is None else 0.875 * self._rtt + 0.125 * rtt
        self._update_window()

    def get_log_data(self) -> dict[str, Any]:
        data = super().get_log_data()
        data["target_bps"] = round(self.target_bps)
        return data


register_congestion_control(CONGESTION_CONTROL_NAME, EdgewireCongestionControl)
