"""Loss-based rate control (draft-ietf-rmcat-gcc section 6).

Light loss (below ``low_loss``) is taken as noise of the path, not congestion, and the rate
grows; moderate loss holds it; heavy loss (above ``high_loss``) backs off in proportion to
the loss, once per round trip so one burst of reports does not count as several.

A path can lose packets steadily whatever is sent on it (radio links do). With a delay
signal beside it (the ``gcc`` estimator), the loss seen while the delay-based detector finds
no queue is learned slowly as the path's *inherent* loss, and only loss above it counts:
otherwise 5 % random loss would hold the rate wherever it happened to be for good. Loss
that comes with a queue is never learned, and the inherent loss is capped
(``inherent_max``), so a congested bottleneck still backs the rate off.
"""

from __future__ import annotations

import math

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
        self.inherent_loss = 0.0
        """Loss the path shows without a queue (learned only with a delay signal)."""
        self._pool_calm: bool | None = None
        self._fresh = False  # a pool completed since the last back-off
        self._expected = 0
        self._lost = 0
        self._window_start: float | None = None
        self._last_update: float | None = None
        self._last_decrease: float | None = None

    def on_report(self, *, now: float, received: int, lost: int, recovered: int) -> None:
        """Count one report: ``received`` and ``lost`` new packets, and ``recovered``
        packets reported lost before that have now arrived (they were counted as lost and
        expected already: the loss is taken back, the packet is not counted again).

        Reports are pooled for ``window`` seconds and at least ``min_packets`` packets
        before the loss fraction changes: random loss of a few per cent, pooled over a
        few dozen packets, crosses ``high_loss`` by chance often enough to walk the rate
        down. Loss above ``heavy_loss`` (beyond the inherent loss) is taken as soon as
        twice ``min_packets`` were seen.
        """
        cfg = self._config
        if self._window_start is None:
            self._window_start = now
        self._expected += received + lost
        self._lost = max(0, self._lost + lost - recovered)
        if self._expected < cfg.min_packets:
            return
        rate = min(1.0, self._lost / self._expected)
        heavy = (self._expected >= 2 * cfg.min_packets
                 and rate - self.inherent_loss > cfg.heavy_loss)
        if now - self._window_start >= cfg.window or heavy:
            if self._pool_calm and rate <= cfg.heavy_loss:
                weight = 1.0 - math.exp(-(now - self._window_start) / cfg.inherent_time)
                learned = self.inherent_loss + weight * (rate - self.inherent_loss)
                self.inherent_loss = min(max(learned, 0.0), cfg.inherent_max)
            self.loss_rate = rate
            self._expected = 0
            self._lost = 0
            self._window_start = now
            self._pool_calm = None
            self._fresh = True

    def note_delay(self, *, calm: bool) -> None:
        """What the delay-based detector saw since the last call: ``calm`` when no queue
        was building. A pool whose every note was calm teaches the inherent loss."""
        self._pool_calm = calm if self._pool_calm is None else self._pool_calm and calm

    @property
    def excess_loss(self) -> float:
        """The loss fraction above the path's inherent loss: what the rules act on."""
        return max(0.0, self.loss_rate - self.inherent_loss)

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
        loss = self.excess_loss
        if loss <= cfg.low_loss:
            if limit_bps is None or rate < limit_bps:
                grown = rate * (1 + cfg.increase) ** elapsed
                rate = grown if limit_bps is None else min(grown, limit_bps)
        elif loss > cfg.high_loss:
            interval = rtt + cfg.decrease_interval_extra
            if self._fresh and (self._last_decrease is None
                                or now - self._last_decrease >= interval):
                self._fresh = False  # one back-off per measurement
                rate *= 1 - cfg.decrease_factor * loss
                self._last_decrease = now
                self.decreases += 1
        if cap_bps is not None:
            rate = min(rate, cap_bps)
        self.estimate_bps = min(max(rate, self._min), self._max)
        return self.estimate_bps

    def raise_to(self, bps: float) -> None:
        """Follow a successful probe up to ``bps`` unless loss is heavy."""
        if self.excess_loss <= self._config.high_loss and bps > self.estimate_bps:
            self.estimate_bps = min(max(bps, self._min), self._max)

    def scale(self, factor: float) -> None:
        """Multiply the estimate (feedback timeout)."""
        self.estimate_bps = min(max(self.estimate_bps * factor, self._min), self._max)
