"""Sliding-window rates: what the path delivered (acked) and what the sender sent."""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["AckedRate", "SendRate", "SentLog", "WindowedMin"]


class WindowedMin:
    """The smallest value seen over the current and the previous ``window`` seconds (a
    new period starts at the first sample ``window`` after the last start), so a value
    that rose for good is learned within one to two windows."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._start: float | None = None
        self._cur = float("inf")
        self._prev = float("inf")

    def add(self, value: float, now: float) -> float:
        """Fold in ``value`` seen at ``now``; returns the minimum."""
        if self._start is None:
            self._start = now
        elif now - self._start >= self._window:
            self._prev, self._cur = self._cur, float("inf")
            self._start = now
        self._cur = min(self._cur, value)
        return self.value

    @property
    def value(self) -> float:
        """The minimum (inf before any sample)."""
        return min(self._cur, self._prev)

    def reset(self) -> None:
        """Forget the samples (the period keeps running)."""
        self._cur = self._prev = float("inf")


class AckedRate:
    """Bits/s of received packets over a sliding window of arrival time (receiver clock).

    The window is anchored at the latest arrival rather than at ``now``: the receiver's clock
    has its own origin, and an idle spell should not make the path look slower than it is.
    """

    def __init__(self, *, window: float, min_span: float, max_packets: int,
                 max_jump: float = 3.0) -> None:
        self._window = window
        self._max_jump = max_jump
        self._min_span = min_span
        self._max_packets = max_packets
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._latest: float | None = None
        self.truncated = 0
        """Packets dropped from the window only because it held ``max_packets``."""

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, arrival_time: float, size_bytes: int) -> None:
        """Count a received packet."""
        latest = self._latest
        if latest is not None and arrival_time < latest - self._max_jump:
            # the receiver clock went back: what came before is on another time line
            self.reset()
            latest = None
        if latest is not None and arrival_time <= latest - self._window:
            return  # arrived (late in the feedback) before the window: nothing to add
        if latest is None or arrival_time > latest:
            self._latest = latest = arrival_time
        packets = self._packets
        if len(packets) >= self._max_packets:
            self._pop()
            self.truncated += 1
        packets.append((arrival_time, size_bytes))
        self._bytes += size_bytes
        cutoff = latest - self._window
        while packets and packets[0][0] <= cutoff:
            self._pop()

    def _pop(self) -> None:
        _, size = self._packets.popleft()
        self._bytes -= size

    def reset(self) -> None:
        """Forget everything (the receiver clock jumped)."""
        self._packets.clear()
        self._bytes = 0
        self._latest = None

    def rate_bps(self) -> float | None:
        """The acked rate, or None until the window spans ``min_span`` of arrival time.

        The first packet's bytes are left out: they arrived at the start of the span and
        were carried before it.
        """
        if len(self._packets) < 2 or self._latest is None:
            return None
        first_arrival, first_size = self._packets[0]
        span = self._latest - first_arrival
        if span < self._min_span:
            return None
        return (self._bytes - first_size) * 8 / span


    def recent_bps(self, span: float) -> float | None:
        """The rate over the last ``span`` seconds of arrival time only (None when that
        stretch is not covered yet). Right after the rate changed, this is what the path
        delivers now, where the full window still averages in the old rate."""
        latest = self._latest
        if latest is None:
            return None
        cutoff = latest - span
        total = 0
        earliest = latest
        earliest_size = 0
        count = 0
        for arrival, size in reversed(self._packets):
            if arrival <= cutoff:
                break
            total += size
            count += 1
            if arrival <= earliest:
                earliest, earliest_size = arrival, size
        covered = latest - earliest
        if count < 2 or covered < span / 2:
            return None
        return (total - earliest_size) * 8 / covered


class SendRate:
    """Bits/s the sender sent over the last ``window`` seconds, in ``bins`` time bins."""

    def __init__(self, *, window: float, bins: int = 20) -> None:
        self._window = window
        self._bin = window / bins
        self._bins: deque[list[float]] = deque(maxlen=bins + 1)  # [bin start, bytes]
        self._first: float | None = None

    def add(self, size_bytes: int, now: float) -> None:
        """Count a sent packet."""
        if self._first is None:
            self._first = now
        start = now - now % self._bin
        bins = self._bins
        if bins and (last := bins[-1])[0] >= start:
            # same bin (or a clock that stepped back a little: charge it to the last bin)
            last[1] += size_bytes
        else:
            bins.append([start, float(size_bytes)])

    def rate_bps(self, now: float) -> float | None:
        """The send rate, or None before ``window`` seconds of history exist."""
        if self._first is None or now - self._first < self._window:
            return None
        cutoff = now - self._window
        sent = sum(b for start, b in self._bins if start + self._bin > cutoff)
        return sent * 8 / self._window

    def last_sent(self) -> float | None:
        """Start of the latest bin with sends (None before the first packet)."""
        return self._bins[-1][0] if self._bins else None


class SentLog:
    """How many bytes the sender sent after a given moment, over the last ``window``
    seconds of send time and at most ``max_entries`` packets (older ones are forgotten:
    a moment before the log counts every byte still in it)."""

    def __init__(self, *, window: float, max_entries: int) -> None:
        self._window = window
        self._max_entries = max_entries
        self._times: list[float] = []
        self._before: list[int] = []  # bytes sent before each packet
        self._head = 0
        self._total = 0

    def __len__(self) -> int:
        return len(self._times) - self._head

    def add(self, size_bytes: int, now: float) -> None:
        """Log a packet sent at ``now`` (a clock that steps back is taken as the latest
        entry's time, so the log stays sorted)."""
        times = self._times
        head = self._head
        if len(times) > head and now < times[-1]:
            now = times[-1]
        times.append(now)
        self._before.append(self._total)
        self._total += size_bytes
        n = len(times)
        oldest = now - self._window
        while n - head > self._max_entries or (head < n and times[head] < oldest):
            head += 1
        if head > 1024 and head * 2 > len(times):
            del times[:head]
            del self._before[:head]
            head = 0
        self._head = head

    def bytes_after(self, t: float) -> int:
        """Bytes of the logged packets sent strictly after ``t``."""
        i = bisect.bisect_right(self._times, t, lo=self._head)
        if i >= len(self._times):
            return 0
        return self._total - self._before[i]
