"""Loss-based rate control (draft-ietf-rmcat-gcc section 6).

Light loss (below ``low_loss``) is taken as noise of the path, not congestion, and the rate
grows; moderate loss holds it; heavy loss (above ``high_loss``) backs off in proportion to
the loss, once per round trip so one burst of reports does not count as several.
"""

from __future__ import annotations

from edgewire.transport.bwe.config import LossConfig

__all__ = ["LossBasedControl"]


class LossBasedControl:
    """The loss-based rate estimate."""

    def __init__(self, config: LossConfig, *, start_bps: float, min_bps: float,
                 max_bps: float) -> None:
        self._config = config
        self._min = min_bps
        self._max = max_bps
        self.estimate_bps = start_bps
        """The loss-based estimate, bits/s."""
        self.loss_rate = 0.0
        """Loss fraction of the last pooled reports."""
        self.decreases = 0
        """Back-offs made."""
        self._expected = 0
        self._lost = 0
        self._last_update: float | None = None
        self._last_decrease: float | None = None

    def on_report(self, *, received: int, lost: int, recovered: int) -> None:
        """Count one report: ``received`` and ``lost`` new packets, and ``recovered``
        packets reported lost before that have now arrived (they were counted as lost and
        expected already: the loss is taken back, the packet is not counted again)."""
        self._expected += received + lost
        self._lost = max(0, self._lost + lost - recovered)
        if self._expected >= self._config.min_packets:
            self.loss_rate = min(1.0, self._lost / self._expected)
            self._expected = 0
            self._lost = 0

    def update(self, *, now: float, rtt: float, limit_bps: float | None,
               cap_bps: float | None) -> float:
        """Apply the current loss rate; returns the new estimate.

        ``limit_bps`` bounds growth (what the path delivered, plus headroom); ``cap_bps``
        (the delay-based estimate, if any) bounds the estimate itself, so that the two stay
        close and a later loss backs off from a rate that was actually in use.
        """
        cfg = self._config
        elapsed = 0.0 if self._last_update is None else now - self._last_update
        elapsed = min(max(elapsed, 0.0), cfg.max_increase_interval)
        self._last_update = now
        rate = self.estimate_bps
        if self.loss_rate <= cfg.low_loss:
            if limit_bps is None or rate < limit_bps:
                grown = rate * (1 + cfg.increase) ** elapsed
                rate = grown if limit_bps is None else min(grown, limit_bps)
        elif self.loss_rate > cfg.high_loss:
            interval = rtt + cfg.decrease_interval_extra
            if self._last_decrease is None or now - self._last_decrease >= interval:
                rate *= 1 - cfg.decrease_factor * self.loss_rate
                self._last_decrease = now
                self.decreases += 1
        if cap_bps is not None:
            rate = min(rate, cap_bps)
        self.estimate_bps = min(max(rate, self._min), self._max)
        return self.estimate_bps

    def raise_to(self, bps: float) -> None:
        """Follow a successful probe up to ``bps`` unless loss is heavy."""
        if self.loss_rate <= self._config.high_loss and bps > self.estimate_bps:
            self.estimate_bps = min(max(bps, self._min), self._max)

    def scale(self, factor: float) -> None:
        """Multiply the estimate (feedback timeout)."""
        self.estimate_bps = min(max(self.estimate_bps * factor, self._min), self._max)
