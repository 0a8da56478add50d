"""Receiving end of a workload: per-channel recorders that turn deliveries into a summary.

A driver routes each ``MessageReceived`` / ``FrameLost`` of a channel to that channel's
:class:`ChannelRecorder` (``on_event``, or ``on_message`` / ``on_lost`` directly) and, at
the end, asks for ``summary(sent=..., duration_s=...)`` with the sender's count.
"""

from __future__ import annotations

import math
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.transport.events import FrameLost, MessageReceived
from edgewire.transport.stats import LatencySamples
from edgewire.workload.sources import payload_size

__all__ = ["ChannelRecorder"]

#: Slack when comparing a latency with the deadline; absorbs float error in ms -> s.
K_DEADLINE_EPSILON = 1e-9  # seconds
#: Distinct loss reasons counted separately; further ones are folded into "other".
K_MAX_LOSS_REASONS = 16


class ChannelRecorder:
    """What one channel delivered: counts, bytes, latency percentiles, on-time deliveries.

    ``deadline_ms`` is the channel's capture-to-delivery deadline; None (reliable channels)
    counts every delivery as on time. Latency samples are kept in a bounded ring
    (``latency_capacity`` most recent); the counters are exact.
    """

    def __init__(self, deadline_ms: float | None = None, *, latency_capacity: int = 8192) -> None:
        if deadline_ms is not None and not (math.isfinite(deadline_ms) and deadline_ms > 0):
            raise LocalProtocolError(f"deadline_ms must be positive, got {deadline_ms!r}")
        if latency_capacity < 1:
            raise LocalProtocolError(f"latency_capacity must be >= 1, got {latency_capacity}")
        self.deadline_ms = deadline_ms
        """Deadline deliveries are judged against; None: all deliveries are on time."""
        self.delivered = 0
        """Messages delivered (on time or not)."""
        self.delivered_bytes = 0
        """Payload bytes delivered."""
        self.on_time = 0
        """Deliveries within the deadline."""
        self.late = 0
        """Frames past the deadline: delivered late, or reported lost with reason "late"."""
        self.lost = 0
        """Frames reported lost for any reason other than "late"."""
        self.loss_reasons: dict[str, int] = {}
        """Every ``on_lost`` call counted by reason ("late" included)."""
        self.latency = LatencySamples(latency_capacity)
        """Capture-to-delivery latency (seconds) of the most recent deliveries."""
        self.first_arrival: float | None = None
        """``now`` of the first delivery, or None."""
        self.last_arrival: float | None = None
        """``now`` of the latest delivery, or None."""

    def on_message(self, *, now: float, latency: float, size_bytes: int) -> None:
        """Record one delivered message: ``latency`` seconds after capture, ``size_bytes``."""
        self.delivered += 1
        self.delivered_bytes += size_bytes
        self.latency.add(latency)
        if self.deadline_ms is None or latency <= self.deadline_ms / 1000.0 + K_DEADLINE_EPSILON:
            self.on_time += 1
        else:
            self.late += 1
        if self.first_arrival is None:
            self.first_arrival = now
        self.last_arrival = now

    def on_lost(self, *, now: float, reason: str) -> None:
        """Record one frame the transport gave up on (see ``FrameLost.reason``)."""
        if reason == "late":
            self.late += 1
        else:
            self.lost += 1
        if reason not in self.loss_reasons and len(self.loss_reasons) >= K_MAX_LOSS_REASONS:
            reason = "other"
        self.loss_reasons[reason] = self.loss_reasons.get(reason, 0) + 1

    def on_event(self, event: MessageReceived | FrameLost, *, now: float) -> None:
        """Record a session event of this channel (the size by :func:`payload_size`)."""
        if isinstance(event, MessageReceived):
            self.on_message(now=now, latency=event.latency,
                            size_bytes=payload_size(event.payload))
        elif isinstance(event, FrameLost):
            self.on_lost(now=now, reason=event.reason)
        else:
            raise LocalProtocolError(f"cannot record a {type(event).__name__}")

    def summary(self, *, sent: int, duration_s: float) -> dict[str, Any]:
        """JSON-ready results for ``sent`` messages over ``duration_s`` seconds.

        Keys: sent, delivered, dropped (sent - delivered, never negative), lost, late,
        on_time_ratio (on-time deliveries / sent, at most 1; None when nothing was sent),
        latency_ms ({"p50", "p95", "p99"}, None without samples) and goodput_kbps (delivered
        payload bits / duration_s / 1000).
        """
        if sent < 0:
            raise LocalProtocolError(f"sent must be >= 0, got {sent}")
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise LocalProtocolError(f"duration_s must be positive, got {duration_s!r}")
        # sent may come from another counter window than delivered: clamp, never go negative
        ratio = None if sent == 0 else round(min(1.0, self.on_time / sent), 6)
        return {
            "sent": sent,
            "delivered": self.delivered,
            "dropped": max(0, sent - self.delivered),
            "lost": self.lost,
            "late": self.late,
            "on_time_ratio": ratio,
            "latency_ms": self.latency.percentiles_ms((50, 95, 99)),
            "goodput_kbps": round(self.delivered_bytes * 8 / duration_s / 1000.0, 3),
        }
