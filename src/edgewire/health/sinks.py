"""The sans-I/O parts of report delivery: a bounded drop-oldest queue, the retry
backoff schedule, and the flattening of a report into metric samples.

The sinks themselves (webhook, Prometheus endpoint, JSON lines, async iterator) do I/O
and live in :mod:`edgewire.aio.health`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from edgewire.errors import LocalProtocolError

__all__ = ["DropOldestQueue", "metric_samples", "retry_delay"]

T = TypeVar("T")

#: Gauges exported per (session, path): metric name suffix -> path into the report.
GAUGES: dict[str, tuple[str, ...]] = {
    "score": ("score",),
    "rtt_min_ms": ("rtt_ms", "min"),
    "rtt_smoothed_ms": ("rtt_ms", "smoothed"),
    "rtt_p95_ms": ("rtt_ms", "p95"),
    "jitter_ms": ("jitter_ms",),
    "loss_rate": ("loss", "rate"),
    "residual_loss_rate": ("loss", "residual_rate"),
    "loss_burst_mean": ("loss", "burst_mean"),
    "bandwidth_estimate_kbps": ("bandwidth", "estimate_kbps"),
    "goodput_kbps": ("bandwidth", "goodput_kbps"),
    "queue_delay_ms": ("queue_delay_ms",),
    "overhead_ratio": ("overhead",),
    "device_cpu_percent": ("device", "cpu_percent"),
    "device_memory_percent": ("device", "memory_percent"),
    "device_battery_percent": ("device", "battery_percent"),
}


class DropOldestQueue(Generic[T]):
    """A FIFO of at most ``maxlen`` items: a push onto a full queue drops the oldest
    item and counts it (a slow consumer loses old reports, never new ones)."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise LocalProtocolError(f"queue length must be >= 1, got {maxlen}")
        self._items: deque[T] = deque()
        self.maxlen = maxlen
        self.dropped = 0
        """Items dropped because the queue was full."""

    def push(self, item: T) -> None:
        """Append ``item``, dropping the oldest one if the queue is full."""
        self._items.append(item)
        if len(self._items) > self.maxlen:
            self._items.popleft()
            self.dropped += 1

    def pop(self) -> T | None:
        """The oldest item, or None when empty."""
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


def retry_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): exponential from
    ``base_s``, at most ``cap_s``."""
    if attempt < 1:
        raise LocalProtocolError(f"retry attempts count from 1, got {attempt}")
    return float(min(cap_s, base_s * 2.0 ** min(attempt - 1, 30)))


def metric_samples(report: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(gauge suffix, value) for every numeric figure of the report that is known."""
    for name, keys in GAUGES.items():
        value: Any = report
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)
