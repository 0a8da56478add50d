"""Mahimahi packet-delivery traces: a link's capacity over time.

Format: one integer per line, a time in milliseconds from the start of the trace; each line
is one opportunity for ``K_OPPORTUNITY_BYTES`` to leave the bottleneck. A time may repeat
(several opportunities in one millisecond). The trace repeats with a period equal to its
last timestamp. Unused opportunities are lost.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

from edgewire.errors import LocalProtocolError

__all__ = ["K_OPPORTUNITY_BYTES", "CapacityTrace", "load_mahimahi"]

#: Bytes one delivery opportunity carries (Mahimahi's MTU-sized packet).
K_OPPORTUNITY_BYTES = 1500
#: Longest trace file accepted, in lines (about 12 Gbit/s over 10 minutes).
K_MAX_TRACE_LINES = 10_000_000


@dataclass(frozen=True, slots=True, eq=False)
class CapacityTrace:
    """Delivery opportunities, in ms, of one period of a repeating trace."""

    name: str
    """Where the trace came from (a file name)."""
    times_ms: tuple[int, ...]
    """Sorted opportunity times within one period."""
    period_ms: int
    """Length of one period; the trace repeats after it."""

    def __post_init__(self) -> None:
        if not self.times_ms:
            raise LocalProtocolError(f"trace {self.name}: no delivery opportunities")
        if self.period_ms <= 0:
            raise LocalProtocolError(f"trace {self.name}: the last timestamp must be > 0 ms")
        if any(b < a for a, b in zip(self.times_ms, self.times_ms[1:], strict=False)):
            raise LocalProtocolError(f"trace {self.name}: timestamps must not decrease")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapacityTrace):
            return NotImplemented
        return (self.name, self.period_ms, self.times_ms) == (
            other.name, other.period_ms, other.times_ms)

    def __hash__(self) -> int:
        return hash((self.name, self.period_ms, len(self.times_ms)))

    @property
    def mean_rate_bps(self) -> float:
        """Long-run capacity in bit/s."""
        return len(self.times_ms) * K_OPPORTUNITY_BYTES * 8 / (self.period_ms / 1000.0)

    def opportunity_time(self, index: int) -> float:
        """Time in seconds (from the trace start) of opportunity ``index`` (any integer >= 0,
        counting on through the repetitions)."""
        cycle, pos = divmod(index, len(self.times_ms))
        return (cycle * self.period_ms + self.times_ms[pos]) / 1000.0

    def first_index_at_or_after(self, t: float) -> int:
        """Index of the first opportunity at time ``>= t`` seconds from the trace start."""
        if t <= 0:
            return 0
        t_ms = t * 1000.0
        cycle = int(t_ms // self.period_ms)
        within = t_ms - cycle * self.period_ms
        pos = bisect.bisect_left(self.times_ms, within - 1e-9)
        index = cycle * len(self.times_ms) + pos
        # float round-off near a period boundary: step until the time really is >= t
        while self.opportunity_time(index) < t - 1e-12:
            index += 1
        # an opportunity at the very end of a period (time == period_ms) belongs to the
        # previous cycle but falls at the same instant as the start of this one
        while index > 0 and self.opportunity_time(index - 1) >= t - 1e-12:
            index -= 1
        return index

    def starting_at(self, start_ms: int) -> CapacityTrace:
        """The same repeating trace, read from ``start_ms`` into it (taken modulo the
        period): what a link would see had it joined the trace that late. Opportunities
        before the start come at the end of the new period, so each period holds the same
        opportunities and the long-run rate is unchanged."""
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
            raise LocalProtocolError(f"trace {self.name}: the start must be an integer "
                                     f">= 0 ms, got {start_ms!r}")
        shift = start_ms % self.period_ms
        if shift == 0:
            return self
        times = self.times_ms
        cut = bisect.bisect_left(times, shift)
        period = self.period_ms
        rotated = (tuple(t - shift for t in times[cut:])
                   + tuple(t + period - shift for t in times[:cut]))
        return CapacityTrace(name=f"{self.name}@{shift}ms", times_ms=rotated,
                             period_ms=period)

    def dark_spells(self, t0: float, t1: float, min_gap: float) -> list[tuple[float, float]]:
        """The spells of at least ``min_gap`` seconds within ``[t0, t1)`` (seconds from the
        trace start) that hold no delivery opportunity, as ``(start, end)`` pairs in time
        order: a link outage as a sender meets it. A spell starts at ``t0`` or at an
        opportunity and ends at the next opportunity or at ``t1``."""
        if not (math.isfinite(t0) and math.isfinite(t1) and 0 <= t0 < t1):
            raise LocalProtocolError(f"trace {self.name}: dark spells need 0 <= t0 < t1, "
                                     f"got {t0!r}, {t1!r}")
        if not (math.isfinite(min_gap) and min_gap > 0):
            raise LocalProtocolError(f"trace {self.name}: the shortest dark spell must be "
                                     f"> 0 s, got {min_gap!r}")
        spells: list[tuple[float, float]] = []
        prev = t0
        index = self.first_index_at_or_after(t0)
        while (t := self.opportunity_time(index)) < t1:
            if t - prev >= min_gap:
                spells.append((prev, t))
            prev = t
            index += 1
        if t1 - prev >= min_gap:
            spells.append((prev, t1))
        return spells

    def opportunities_between(self, t0: float, t1: float) -> int:
        """Opportunities at times in ``[t0, t1)`` seconds from the trace start."""
        if t1 <= t0:
            return 0
        return self.first_index_at_or_after(t1) - self.first_index_at_or_after(t0)


def load_mahimahi(path: str | Path) -> CapacityTrace:
    """Read a Mahimahi trace file; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise LocalProtocolError(f"trace file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # ValueError: a path with a NUL byte, which no file system accepts
        raise LocalProtocolError(f"trace file {path}: cannot read: {exc}") from None
    times: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if len(times) >= K_MAX_TRACE_LINES:
            raise LocalProtocolError(f"{path}: longer than {K_MAX_TRACE_LINES} lines")
        try:
            value = int(line)
        except ValueError:
            raise LocalProtocolError(f"{path}:{lineno}: not an integer millisecond: "
                                     f"{line[:40]!r}") from None
        if value < 0:
            raise LocalProtocolError(f"{path}:{lineno}: negative time {value}")
        if times and value < times[-1]:
            raise LocalProtocolError(f"{path}:{lineno}: time {value} is before the previous "
                                     f"line's {times[-1]}")
        times.append(value)
    if not times:
        raise LocalProtocolError(f"{path}: empty trace")
    if times[-1] == 0:
        raise LocalProtocolError(f"{path}: the last timestamp must be > 0 ms")
    return CapacityTrace(name=path.name, times_ms=tuple(times), period_ms=times[-1])
