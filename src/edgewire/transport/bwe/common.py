"""What every estimator shares: feedback hygiene, rates, RTT and the feedback timeout."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.transport.bwe.base import BandwidthEstimator, PacketResult, ProbeRequest
from edgewire.transport.bwe.config import BweConfig
from edgewire.transport.bwe.loss import LossBasedControl
from edgewire.transport.bwe.rates import AckedRate, SendRate

__all__ = ["K_MAX_PACKET_BYTES", "FeedbackEstimator", "is_valid_result"]


def _finite_nonneg(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _nonneg_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: Largest packet size taken as real: beyond any datagram, even with jumbo frames.
K_MAX_PACKET_BYTES = 1 << 20


def is_valid_result(p: object) -> bool:
    """A well-formed :class:`PacketResult`: non-negative finite sequence, times and size
    (size at most ``K_MAX_PACKET_BYTES``)."""
    if not isinstance(p, PacketResult):
        return False
    return (_nonneg_int(p.sequence) and _nonneg_int(p.size_bytes)
            and p.size_bytes <= K_MAX_PACKET_BYTES
            and _finite_nonneg(p.send_time)
            and (p.arrival_time is None or _finite_nonneg(p.arrival_time))
            and (p.probe_cluster is None or _nonneg_int(p.probe_cluster)))


class FeedbackEstimator(BandwidthEstimator):
    """Base of the registered estimators: sorts each report into new receptions, new
    losses and late arrivals (dropping malformed, duplicate and stale rows), keeps the
    acked and send rates, and halves the estimate when feedback stops.

    Subclasses implement :meth:`_on_received`, :meth:`_update` and :meth:`_on_timeout`.
    """

    def __init__(self, config: BweConfig) -> None:
        self._config = config
        self._rtt = config.initial_rtt
        self._acked = AckedRate(window=config.acked_window, min_span=config.acked_min_span,
                                max_packets=config.max_acked_packets,
                                max_jump=config.trendline.max_arrival_jump)
        self._send = SendRate(window=config.probe.alr_window)
        self._loss = LossBasedControl(config.loss, start_bps=config.start_bps,
                                      min_bps=config.min_bps, max_bps=config.max_bps)
        self._target = config.start_bps
        # sequence -> received, and the sequences in the order they were first seen
        # (about sequence order): the oldest is the one to forget when the table is full.
        # A dict alone would find its oldest key by skipping every slot deleted before it,
        # thousands per packet once the table is full
        self._seen: dict[int, bool] = {}
        self._seen_order: deque[int] = deque()
        self._stale_below = -1
        self._unanswered_since: float | None = None
        self._last_timer = -math.inf
        self._counters = {
            "feedback_reports": 0,
            "packets_received": 0,
            "packets_lost": 0,
            "late_arrivals": 0,
            "bad_results": 0,
            "duplicate_results": 0,
            "stale_results": 0,
            "feedback_timeouts": 0,
            "receiver_drops": 0,
            "receiver_backoffs": 0,
        }
        self._receiver_backoff_at = -math.inf
        # the rate the receiver's drops allow (None: no drops, or long since outgrown),
        # and when it last grew
        self._receiver_cap: float | None = None
        self._receiver_cap_at = 0.0

    # ------------------------------------------------------------------ the interface

    @property
    def target_bps(self) -> float:
        """The combined target send rate, bits/s."""
        return self._target

    def on_rtt(self, rtt: float, *, now: float, min_rtt: float | None = None) -> None:
        """Take a new smoothed RTT (seconds), and the smallest RTT sample so far when
        known (``min_rtt``, used by estimators that need the path's length)."""
        for name, value in (("rtt", rtt), ("min_rtt", rtt if min_rtt is None else min_rtt)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise LocalProtocolError(f"{name} must be a positive finite number of "
                                         f"seconds, got {value!r}")
        self._begin(now)
        self._rtt = float(rtt)

    def on_sent(self, *, size_bytes: int, now: float) -> None:
        """Count a sent packet."""
        # once per packet sent: the test of _nonneg_int, inline
        if (not isinstance(size_bytes, int) or isinstance(size_bytes, bool)
                or not 0 <= size_bytes <= K_MAX_PACKET_BYTES):
            raise LocalProtocolError(
                f"size_bytes must be an int in 0..{K_MAX_PACKET_BYTES}, got {size_bytes!r}")
        self._begin(now)
        self._send.add(size_bytes, now)
        if self._unanswered_since is None:
            self._unanswered_since = now

    def on_feedback(self, packets: Sequence[PacketResult], *, now: float) -> None:
        """Process one feedback report."""
        self._begin(now)
        c = self._counters
        c["feedback_reports"] += 1
        self._unanswered_since = None
        received = lost = recovered = 0
        bad = stale = duplicates = missing = 0
        seen = self._seen
        acked_add = self._acked.add
        on_received = self._on_received
        # once per packet reported: the common case (exact int and float fields, as the
        # feedback decoder makes them) is checked inline, anything else by is_valid_result
        for p in packets:
            plain = False
            if type(p) is PacketResult:
                seq, arrival, size = p.sequence, p.arrival_time, p.size_bytes
                sent, cluster = p.send_time, p.probe_cluster
                plain = (type(seq) is int and seq >= 0
                         and type(size) is int and 0 <= size <= K_MAX_PACKET_BYTES
                         and type(sent) is float and 0.0 <= sent < math.inf
                         and (arrival is None
                              or (type(arrival) is float and 0.0 <= arrival < math.inf))
                         and (cluster is None or (type(cluster) is int and cluster >= 0)))
            if not plain:
                if not is_valid_result(p):
                    bad += 1
                    continue
                seq, arrival, size = p.sequence, p.arrival_time, p.size_bytes
            if seq <= self._stale_below:
                stale += 1
                continue
            prior = seen.get(seq)
            if arrival is None:
                if prior is None:
                    self._remember(seq, False)
                    if self._counts_loss(p):
                        lost += 1
                    missing += 1
                # reported missing again, or after it arrived: nothing new
                continue
            if prior is True:
                duplicates += 1
                continue
            if prior is False:
                seen[seq] = True
                recovered += 1
            else:
                self._remember(seq, True)
                received += 1
            acked_add(arrival, size)
            on_received(p, arrival)
        c["bad_results"] += bad
        c["stale_results"] += stale
        c["duplicate_results"] += duplicates
        c["packets_lost"] += missing - recovered
        c["late_arrivals"] += recovered
        c["packets_received"] += received + recovered
        self._loss.on_report(now=now, received=received, lost=lost, recovered=recovered)
        self._update(now)
        if self._receiver_cap is not None:
            self._follow_receiver_cap(now)

    def on_receiver_drops(self, dropped: int, *, now: float) -> None:
        """The receiver's socket dropped ``dropped`` datagrams: the target falls to
        ``receiver_drop_backoff`` x the rate the receiver read at (the acknowledged rate
        over ``acked_recent_span``; the target when not known), at most once per round
        trip, since the reports of the next round trip still describe what was sent
        before the cut."""
        if (not isinstance(dropped, int) or isinstance(dropped, bool)) or dropped < 1:
            raise LocalProtocolError(f"dropped must be a positive int, got {dropped!r}")
        self._begin(now)
        c = self._counters
        c["receiver_drops"] += dropped
        if now < self._receiver_backoff_at + self._rtt:
            return
        self._receiver_backoff_at = now
        c["receiver_backoffs"] += 1
        read = self._acked.recent_bps(self._config.acked_recent_span)
        limit = self._target if read is None else min(self._target, read)
        cap = self._clamp(self._config.receiver_drop_backoff * limit)
        self._receiver_cap, self._receiver_cap_at = cap, now
        self._limit_to(cap, now)

    def _follow_receiver_cap(self, now: float) -> None:
        """Hold the target under the receiver's cap, which grows by
        ``receiver_cap_growth`` a second while no drop comes, and is let go once it is
        twice the target (something else limits the sender then)."""
        cap = self._receiver_cap
        assert cap is not None
        cap *= (1.0 + self._config.receiver_cap_growth) ** max(0.0, now - self._receiver_cap_at)
        self._receiver_cap_at = now
        if cap >= 2.0 * self._target or cap >= self._config.max_bps:
            self._receiver_cap = None
            return
        self._receiver_cap = cap
        if self._target > cap:
            self._limit_to(cap, now)

    def on_timer(self, *, now: float) -> None:
        """Feedback timeout (and the subclass's own deadlines)."""
        self._begin(now)
        self._last_timer = now
        deadline = self._timeout_deadline()
        if deadline is not None and now >= deadline:
            self._counters["feedback_timeouts"] += 1
            # the next halving needs packets sent after this one and another full interval
            self._unanswered_since = None
            self._on_timeout(now)
        self._on_timer(now)

    def get_timer(self) -> float | None:
        """Earliest deadline not yet handled by :meth:`on_timer`."""
        # called after every send and delivery: plain comparisons, no temporary list
        last = self._last_timer
        best: float | None = None
        since = self._unanswered_since
        if since is not None:
            timeout = since + self._timeout_interval()
            if timeout > last:
                best = timeout
        own = self._next_deadline()
        if own is not None and own > last and (best is None or own < best):
            best = own
        return best

    def probe_request(self, *, now: float) -> ProbeRequest | None:
        """No probing by default."""
        self._begin(now)
        return None

    # ------------------------------------------------------------------ helpers

    def _remember(self, seq: int, received: bool) -> None:
        """Track a sequence seen for the first time; when the table is full the oldest
        goes, and results for it or anything older are stale from then on."""
        seen = self._seen
        if len(seen) >= self._config.max_tracked_sequences:
            oldest = self._seen_order.popleft()
            del seen[oldest]
            if oldest > self._stale_below:
                self._stale_below = oldest
        seen[seq] = received
        self._seen_order.append(seq)

    def _timeout_interval(self) -> float:
        cfg = self._config
        return max(cfg.feedback_timeout, cfg.feedback_timeout_rtts * self._rtt)

    def _timeout_deadline(self) -> float | None:
        if self._unanswered_since is None:
            return None
        return self._unanswered_since + self._timeout_interval()

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self._config.min_bps), self._config.max_bps)

    def _app_limited(self, now: float) -> bool:
        rate = self._send.rate_bps(now)
        # an idle sender is not "limited": probing a silent connection would only wake it
        return rate is not None and 0 < rate < self._config.probe.alr_fraction * self._target

    def _sending_at_target(self, now: float) -> bool:
        rate = self._send.rate_bps(now)
        return rate is not None and rate >= self._config.probe.alr_fraction * self._target

    def _common_state(self) -> dict[str, Any]:
        acked = self._acked.rate_bps()
        return {
            "target_bps": self._target,
            "loss_based_bps": self._loss.estimate_bps,
            "acked_bps": acked,
            "loss_rate": self._loss.loss_rate,
            "inherent_loss": self._loss.inherent_loss,
            "rtt": self._rtt,
            "receiver_cap_bps": self._receiver_cap,
            **self._counters,
            "tracked_sequences": len(self._seen),
            "acked_window_packets": len(self._acked),
        }

    # ------------------------------------------------------------------ subclass hooks

    def _begin(self, now: float) -> None:
        """Called first by every entry point (the first call starts the estimator)."""

    def _on_received(self, p: PacketResult, arrival: float) -> None:
        """A newly received packet, in report order."""

    def _counts_loss(self, p: PacketResult) -> bool:
        """Whether the loss of ``p`` counts towards the loss-based controller."""
        return True

    def _update(self, now: float) -> None:
        """After a report: recompute the estimates and the target."""
        raise NotImplementedError

    def _on_timeout(self, now: float) -> None:
        """Feedback timeout: cut the estimate."""
        raise NotImplementedError

    def _limit_to(self, bps: float, now: float) -> None:
        """Bring the target down to at most ``bps`` (a receiver that falls behind); a
        subclass with a delay-based part caps that too, or its next report would undo
        this."""
        if self._loss.estimate_bps > bps:
            self._loss.scale(bps / self._loss.estimate_bps)
        self._target = self._clamp(min(self._target, bps))

    def _on_timer(self, now: float) -> None:
        """The subclass's own deadlines."""

    def _next_deadline(self) -> float | None:
        """The subclass's next deadline."""
        return None
