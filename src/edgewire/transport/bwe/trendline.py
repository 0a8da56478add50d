"""Delay-based congestion signal: packet groups, trendline filter, overuse detector.

A queue building up at the bottleneck makes each group of packets arrive a little later,
relative to when it was sent, than the one before. The trendline filter fits a line to the
accumulated delay variation over the recent groups; its slope, scaled, is compared with a
threshold that adapts to the path's jitter (draft-ietf-rmcat-gcc sections 5.2 to 5.4).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from edgewire.transport.bwe.config import DetectorConfig, TrendlineConfig

__all__ = [
    "DetectorState",
    "GroupDelta",
    "InterArrival",
    "OveruseDetector",
    "TrendlineFilter",
]

DetectorState = Literal["normal", "overusing", "underusing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDelta:
    """The difference between two consecutive packet groups."""

    send_delta: float
    """Seconds between the groups' last send times."""
    arrival_delta: float
    """Seconds between the groups' last arrival times."""
    arrival_time: float
    """Arrival time (receiver clock) of the later group's last packet."""

    @property
    def delay_variation(self) -> float:
        """Arrival delta minus send delta: positive while a queue grows."""
        return self.arrival_delta - self.send_delta


class _Group:
    __slots__ = ("first_arrival", "first_send", "last_arrival", "last_send")

    def __init__(self, send_time: float, arrival_time: float) -> None:
        self.first_send = send_time
        self.last_send = send_time
        self.first_arrival = arrival_time
        self.last_arrival = arrival_time


class InterArrival:
    """Groups received packets by send time and yields the delta between groups."""

    def __init__(self, config: TrendlineConfig) -> None:
        self._config = config
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self.reordered = 0
        """Packets skipped because they were sent before the current group started."""
        self.resets = 0
        """Times the receiver clock jumped (or ran backwards) and grouping restarted."""

    def on_packet(self, send_time: float, arrival_time: float) -> GroupDelta | None:
        """Add a received packet; returns the delta when it closes a group."""
        cur = self._current
        if cur is None:
            self._current = _Group(send_time, arrival_time)
            return None
        if send_time < cur.first_send:
            # its group is already closed: its delay would be charged to the wrong group
            self.reordered += 1
            return None
        if self._joins(cur, send_time, arrival_time):
            cur.last_send = max(cur.last_send, send_time)
            cur.last_arrival = max(cur.last_arrival, arrival_time)
            return None
        delta: GroupDelta | None = None
        prev = self._previous
        if prev is not None:
            send_delta = cur.last_send - prev.last_send
            arrival_delta = cur.last_arrival - prev.last_arrival
            if (arrival_delta < 0
                    or abs(arrival_delta - send_delta) > self._config.max_arrival_jump):
                self.resets += 1
                self._previous = None
                self._current = _Group(send_time, arrival_time)
                return None
            delta = GroupDelta(send_delta=send_delta, arrival_delta=arrival_delta,
                               arrival_time=cur.last_arrival)
        self._previous = cur
        self._current = _Group(send_time, arrival_time)
        return delta

    def _joins(self, cur: _Group, send_time: float, arrival_time: float) -> bool:
        cfg = self._config
        if send_time - cur.first_send <= cfg.group_length:
            return True
        # A burst the network released at once (arriving back to back, faster than sent)
        # says nothing about the queue at the bottleneck: keep it in one group.
        arrival_delta = arrival_time - cur.last_arrival
        send_delta = send_time - cur.last_send
        return (0 <= arrival_delta <= cfg.group_length
                and arrival_delta - send_delta < 0
                and arrival_time - cur.first_arrival < cfg.burst_length)


class TrendlineFilter:
    """Slope of the smoothed accumulated delay variation over the last groups."""

    def __init__(self, config: TrendlineConfig) -> None:
        self._config = config
        self._history: deque[tuple[float, float]] = deque(maxlen=config.window)
        self._first_arrival: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self.samples = 0
        """Group deltas seen (capped at ``max_deltas``)."""
        self.slope = 0.0
        """Last fitted slope (seconds of delay per second of arrival time)."""

    def update(self, delta: GroupDelta) -> float:
        """Add a group delta; returns the modified trend (slope * samples * gain)."""
        cfg = self._config
        self.samples = min(self.samples + 1, cfg.max_deltas)
        self._accumulated += delta.delay_variation
        self._smoothed = cfg.smoothing * self._smoothed + (1 - cfg.smoothing) * self._accumulated
        if self._first_arrival is None:
            self._first_arrival = delta.arrival_time
        self._history.append((delta.arrival_time - self._first_arrival, self._smoothed))
        if len(self._history) == self._history.maxlen:
            slope = _fit_slope(self._history)
            if slope is not None:
                self.slope = slope
        return self.modified_trend

    @property
    def modified_trend(self) -> float:
        """The slope scaled by the sample count (capped) and the gain."""
        return self.slope * min(self.samples, self._config.max_deltas) * self._config.gain


def _fit_slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x, None when all x are equal."""
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    num = 0.0
    den = 0.0
    for x, y in points:
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    if not den > 0:
        return None
    slope = num / den
    # absurd timestamps (far beyond any session) can overflow the sums: no fit then
    return slope if math.isfinite(slope) else None


class OveruseDetector:
    """Compares the modified trend with an adaptive threshold.

    Overuse needs the trend above the threshold for ``overuse_time`` of send time, over at
    least two samples, and not falling (a queue already draining needs no cut); underuse is
    a trend below minus the threshold.
    """

    def __init__(self, config: DetectorConfig) -> None:
        self._config = config
        self.threshold = config.initial_threshold
        """Current threshold (modified-trend units)."""
        self.state: DetectorState = "normal"
        """Current signal."""
        self.trend = 0.0
        """Last modified trend seen."""
        self._time_over: float | None = None
        self._over_count = 0
        self._prev_trend = 0.0
        self._last_update: float | None = None

    def detect(self, modified_trend: float, *, send_delta: float, samples: int,
               now: float) -> DetectorState:
        """Classify one sample; ``now`` is the sample's arrival time (any clock)."""
        self.trend = modified_trend
        if samples < 2:
            return self.state
        cfg = self._config
        if modified_trend > self.threshold:
            if self._time_over is None:
                # count half the first interval: the crossing happened somewhere inside it
                self._time_over = send_delta / 2
            else:
                self._time_over += send_delta
            self._over_count += 1
            if (self._time_over > cfg.overuse_time and self._over_count > 1
                    and modified_trend >= self._prev_trend):
                self._time_over = 0.0
                self._over_count = 0
                self.state = "overusing"
        elif modified_trend < -self.threshold:
            self._time_over = None
            self._over_count = 0
            self.state = "underusing"
        else:
            self._time_over = None
            self._over_count = 0
            self.state = "normal"
        self._prev_trend = modified_trend
        self._adapt(modified_trend, now)
        return self.state

    def _adapt(self, modified_trend: float, now: float) -> None:
        cfg = self._config
        if self._last_update is None:
            self._last_update = now
        magnitude = abs(modified_trend)
        if magnitude > self.threshold + cfg.max_deviation:
            self._last_update = now
            return
        k = cfg.k_down if magnitude < self.threshold else cfg.k_up
        elapsed_ms = min(max(now - self._last_update, 0.0), cfg.max_update_interval) * 1000.0
        self.threshold += k * (magnitude - self.threshold) * elapsed_ms
        self.threshold = min(max(self.threshold, cfg.min_threshold), cfg.max_threshold)
        self._last_update = now
