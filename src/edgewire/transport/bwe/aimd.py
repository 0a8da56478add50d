"""AIMD rate control of the delay-based estimate (draft-ietf-rmcat-gcc section 5.5).

The detector's signal drives a three-state machine: overuse cuts the rate to a fraction of
what the path delivered (a smaller one when a long queue has to drain), underuse holds it
while the queue drains, normal lets it grow.
Growth is multiplicative while the rate is far from any capacity seen before and additive
(about a packet per round trip) near it, so the rate hovers close to the capacity instead of
overshooting it in large steps.
"""

from __future__ import annotations

import math
from typing import Literal

from edgewire.transport.bwe.config import AimdConfig
from edgewire.transport.bwe.trendline import DetectorState

__all__ = ["AimdRateControl", "LinkCapacity", "RateControlState"]

RateControlState = Literal["increase", "hold", "decrease"]


class LinkCapacity:
    """Running estimate of the acked rate measured at overuse, with its spread.

    Each overuse is a moment the path was full, so the acked rate then samples the
    capacity. The spread (a variance normalised by the estimate, in kbit/s as GCC keeps it,
    so it is comparable across rates) says how far around it the rate counts as "near".
    """

    def __init__(self, config: AimdConfig) -> None:
        self._config = config
        self._estimate_kbps: float | None = None
        self._deviation = config.capacity_deviation_min

    @property
    def estimate_bps(self) -> float | None:
        """The capacity estimate, bits/s, or None when there is none (yet, or any more)."""
        return None if self._estimate_kbps is None else self._estimate_kbps * 1000.0

    def on_overuse(self, acked_bps: float) -> None:
        """Fold in the acked rate measured when an overuse was detected."""
        cfg = self._config
        sample = acked_bps / 1000.0
        a = cfg.capacity_smoothing
        if self._estimate_kbps is None:
            self._estimate_kbps = sample
        else:
            self._estimate_kbps = (1 - a) * self._estimate_kbps + a * sample
        error = self._estimate_kbps - sample
        scale = max(self._estimate_kbps, 1.0)
        self._deviation = (1 - a) * self._deviation + a * error * error / scale
        self._deviation = min(max(self._deviation, cfg.capacity_deviation_min),
                              cfg.capacity_deviation_max)

    def _spread_kbps(self, estimate_kbps: float) -> float:
        return self._config.capacity_stddevs * math.sqrt(estimate_kbps * self._deviation)

    def upper_bps(self) -> float | None:
        """Upper edge of "near the capacity", bits/s."""
        est = self._estimate_kbps
        if est is None:
            return None
        return (est + self._spread_kbps(est)) * 1000.0

    def lower_bps(self) -> float | None:
        """Lower edge of "near the capacity", bits/s."""
        est = self._estimate_kbps
        if est is None:
            return None
        return max(0.0, est - self._spread_kbps(est)) * 1000.0

    def reset(self) -> None:
        """Forget the estimate: the capacity moved away from it."""
        self._estimate_kbps = None
        self._deviation = self._config.capacity_deviation_min


class AimdRateControl:
    """The delay-based rate: additive/multiplicative increase, multiplicative decrease."""

    def __init__(self, config: AimdConfig, *, start_bps: float, min_bps: float,
                 max_bps: float) -> None:
        self._config = config
        self._min = min_bps
        self._max = max_bps
        self.estimate_bps = start_bps
        """The delay-based estimate, bits/s."""
        self.state: RateControlState = "hold"
        """The state the last update acted in ("decrease" stays visible until the next
        signal; it then behaves like "hold")."""
        self.capacity = LinkCapacity(config)
        """Capacity seen at overuses."""
        self.decreases = 0
        """Overuse cuts made."""
        self._last_change: float | None = None
        self._last_update: float | None = None

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self._min), self._max)

    def acked_limit(self, acked_bps: float | None) -> float | None:
        """The rate growth may not pass: what the path delivered, plus headroom."""
        if acked_bps is None:
            return None
        cfg = self._config
        return cfg.acked_limit_factor * acked_bps + cfg.acked_limit_extra_bps

    def time_to_reduce_further(self, *, now: float, acked_bps: float | None,
                               rtt: float) -> bool:
        """Whether a persisting overuse may cut the rate again now: once per (clamped) RTT,
        or at once when the path delivers far less than the estimate."""
        cfg = self._config
        if self._last_change is None:
            return True
        interval = min(max(rtt, cfg.reduce_interval_min), cfg.reduce_interval_max)
        if now - self._last_change >= interval:
            return True
        return acked_bps is not None and acked_bps < cfg.reduce_acked_fraction * self.estimate_bps

    def update(self, signal: DetectorState, *, acked_bps: float | None, rtt: float,
               now: float, queue_delay: float | None = None) -> float:
        """Apply the detector's signal; returns the new estimate. ``queue_delay`` (s), when
        known, deepens a cut so that a long queue drains (``drain_threshold``)."""
        self._transition(signal, now)
        if self.state == "increase":
            self._increase(acked_bps, rtt, now)
        elif self.state == "decrease":
            self._decrease(acked_bps, now, queue_delay)
        self._last_update = now
        return self.estimate_bps

    def set_estimate(self, bps: float, *, now: float) -> None:
        """Jump to ``bps`` (a probe measured it); the capacity estimate is dropped when the
        new rate is beyond it, since the path evidently carries more."""
        self.estimate_bps = self._clamp(bps)
        upper = self.capacity.upper_bps()
        if upper is not None and self.estimate_bps > upper:
            self.capacity.reset()
        self._last_change = now
        self._last_update = now

    def scale(self, factor: float, *, now: float) -> None:
        """Multiply the estimate (feedback timeout)."""
        self.estimate_bps = self._clamp(self.estimate_bps * factor)
        self._last_change = now

    def _transition(self, signal: DetectorState, now: float) -> None:
        if signal == "overusing":
            self.state = "decrease"
        elif signal == "underusing":
            self.state = "hold"
        elif self.state != "increase":
            # a cut leaves the rate where the path was: growth may resume at once
            self.state = "increase"
            # growth is measured from here, not from before the hold
            self._last_update = now

    def _increase(self, acked_bps: float | None, rtt: float, now: float) -> None:
        cfg = self._config
        upper = self.capacity.upper_bps()
        if upper is not None and self.estimate_bps > upper:
            self.capacity.reset()
        elapsed = 0.0 if self._last_update is None else now - self._last_update
        elapsed = min(max(elapsed, 0.0), cfg.max_increase_interval)
        limit = self.acked_limit(acked_bps)
        if limit is not None and self.estimate_bps >= limit:
            # the path has not shown it carries more: growing further would be a guess
            return
        if self.capacity.estimate_bps is not None:
            response_time = rtt + cfg.response_time_extra
            per_second = max(cfg.min_additive_bps, cfg.packet_size_bytes * 8 / response_time)
            step = per_second * elapsed
        else:
            factor = (1 + cfg.multiplicative_increase) ** elapsed
            step = max(self.estimate_bps * (factor - 1), cfg.min_increase_bps * elapsed)
        new = self.estimate_bps + step
        if limit is not None:
            new = min(new, limit)
        self.estimate_bps = self._clamp(new)
        self._last_change = now

    def _beta(self, queue_delay: float | None) -> float:
        cfg = self._config
        if queue_delay is None or queue_delay <= cfg.drain_threshold:
            return cfg.beta
        return min(cfg.beta, max(cfg.min_drain_beta, 1.0 - queue_delay / cfg.drain_time))

    def _decrease(self, acked_bps: float | None, now: float,
                  queue_delay: float | None = None) -> None:
        beta = self._beta(queue_delay)
        if acked_bps is None:
            new = beta * self.estimate_bps
        else:
            new = beta * acked_bps
            capacity = self.capacity.estimate_bps
            if new > self.estimate_bps and capacity is not None:
                new = beta * capacity
            lower = self.capacity.lower_bps()
            if lower is not None and acked_bps < lower:
                # far below what overuse used to happen at: the capacity itself dropped
                self.capacity.reset()
            self.capacity.on_overuse(acked_bps)
        # a cut never raises the rate (the acked rate can exceed the estimate briefly)
        self.estimate_bps = self._clamp(min(new, self.estimate_bps))
        self.decreases += 1
        self._last_change = now
