"""Per-channel counters and bounded latency samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ChannelStats", "LatencySamples", "SessionCounters", "percentiles_ms"]


def percentiles_ms(values: Any, qs: tuple[float, ...]) -> dict[str, float | None]:
    """``{"p50": ms, ...}`` of ``values`` in seconds (a sequence or array), rounded to the
    microsecond; every entry None when there are no values."""
    if len(values) == 0:
        return {f"p{q:g}": None for q in qs}
    result = np.percentile(np.asarray(values, dtype=np.float64), qs) * 1000.0
    return {f"p{q:g}": round(float(v), 3) for q, v in zip(qs, result, strict=True)}


class LatencySamples:
    """A ring buffer of the most recent latency samples (seconds), for percentiles."""

    __slots__ = ("_buf", "_count")

    def __init__(self, capacity: int = 8192) -> None:
        self._buf = np.zeros(capacity, dtype=np.float64)
        self._count = 0

    def add(self, value: float) -> None:
        """Record one sample, overwriting the oldest when full."""
        self._buf[self._count % len(self._buf)] = value
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, len(self._buf))

    @property
    def total(self) -> int:
        """Samples ever added (including overwritten ones)."""
        return self._count

    def percentiles_ms(self, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | None]:
        """``{"p50": ms, ...}`` over the kept samples; None when there are none."""
        return percentiles_ms(self._buf[: len(self)], qs)


@dataclass(slots=True)
class ChannelStats:
    """What one side did on one channel. Sender and receiver counters are kept apart."""

    sent_messages: int = 0
    """Messages accepted by ``send``."""
    sent_bytes: int = 0
    """Payload bytes accepted by ``send``."""
    sent_datagrams: int = 0
    """Datagrams handed to QUIC (real-time channels)."""
    expired: int = 0
    """Messages dropped before sending because their deadline passed."""
    dropped_queue_full: int = 0
    """Real-time messages dropped because the send queue was over its limit."""
    delivered: int = 0
    """Messages received whole and handed to the application."""
    delivered_bytes: int = 0
    """Payload bytes delivered."""
    lost: int = 0
    """Frames reported lost: incomplete at the deadline or evicted."""
    late: int = 0
    """Frames complete but after their deadline (dropped when ``drop_late``)."""
    duplicates: int = 0
    """Datagrams for frames already delivered or given up."""
    recovered: int = 0
    """Datagrams rebuilt from FEC parity and delivered as if received."""
    retransmissions_received: int = 0
    """Datagrams received again after a NACK (delivered, or counted as duplicates)."""
    malformed: int = 0
    """Records or datagrams that failed to decode (dropped)."""
    latency: LatencySamples = field(default_factory=LatencySamples)
    """Capture-to-delivery latency of delivered messages."""

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        out: dict[str, object] = {
            name: getattr(self, name) for name in self.__slots__ if name != "latency"
        }
        out["latency_ms"] = self.latency.percentiles_ms()
        return out


@dataclass(slots=True)
class SessionCounters:
    """Session-wide counters of what was dropped and why."""

    malformed_datagrams: int = 0
    """Datagrams whose header failed to decode."""
    unknown_type_datagrams: int = 0
    """Datagrams of a type this version does not know."""
    unknown_channel_datagrams: int = 0
    """Datagrams for channels never opened (dropped after the early buffer)."""
    unknown_control_messages: int = 0
    """Control messages of a type this version does not know (skipped)."""
    early_dropped: int = 0
    """Datagrams dropped because the early buffer (data before its channel's open) was full."""
    stray_reports: int = 0
    """Loss reports or NACKs for channels this side does not send on (dropped)."""
    padding_received: int = 0
    """PADDING datagrams of the peer's bandwidth probes (dropped, as they should be)."""
    parity_too_large: int = 0
    """Parity datagrams not sent because they did not fit a QUIC packet."""
    events_dropped: int = 0
    """Real-time message events dropped because the driver did not drain events."""
