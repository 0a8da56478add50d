"""Channel kinds and their quality-of-service settings."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from edgewire.errors import LocalProtocolError

__all__ = ["DEFAULT_QOS", "ChannelKind", "QoS", "default_qos"]


class ChannelKind(enum.StrEnum):
    """The four kinds of payload a session carries, each with its own delivery."""

    AUDIO = "audio"
    """Small frames in single QUIC DATAGRAMs; late is as bad as lost."""
    VIDEO = "video"
    """Frames fragmented across DATAGRAMs; delivered whole or reported lost."""
    TOKENS = "tokens"
    """LLM token messages on a QUIC stream: never lost, duplicated or reordered."""
    EMBEDDINGS = "embeddings"
    """numpy arrays on a QUIC stream: reliable, bulk."""

    @property
    def reliable(self) -> bool:
        """True for the kinds carried on QUIC streams."""
        return self in (ChannelKind.TOKENS, ChannelKind.EMBEDDINGS)


@dataclass(frozen=True, slots=True, kw_only=True)
class QoS:
    """Delivery settings of one channel. Lower ``priority`` values are served first."""

    priority: int
    """Scheduling priority, 0 (first) to 7 (last)."""
    deadline_ms: float | None
    """Capture-to-delivery deadline for real-time kinds; None for reliable kinds."""
    reliable: bool
    """Carried on a QUIC stream (never lost) rather than in DATAGRAMs."""
    max_queue_bytes: int
    """Send queue limit. Real-time channels drop their oldest frames beyond it (counted);
    reliable channels refuse new messages with QueueFullError."""
    max_message_bytes: int
    """Largest payload accepted by ``send`` and from the peer."""
    drop_late: bool = True
    """Receiver drops real-time frames that arrive after their deadline (counted as late)."""

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 7:
            raise LocalProtocolError(f"priority {self.priority} not in 0..7")
        if self.deadline_ms is not None and not self.deadline_ms > 0:
            raise LocalProtocolError(f"deadline_ms must be positive, got {self.deadline_ms}")
        if not self.reliable and self.deadline_ms is None:
            raise LocalProtocolError("real-time channels need a deadline_ms")
        if self.max_queue_bytes <= 0 or self.max_message_bytes <= 0:
            raise LocalProtocolError("queue and message limits must be positive")

    def with_(self, **changes: object) -> QoS:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


#: Per-kind defaults: audio first, then tokens, video, embeddings.
DEFAULT_QOS: dict[ChannelKind, QoS] = {
    ChannelKind.AUDIO: QoS(
        priority=0,
        deadline_ms=150.0,
        reliable=False,
        max_queue_bytes=64 * 1024,
        max_message_bytes=1024,
    ),
    ChannelKind.TOKENS: QoS(
        priority=1,
        deadline_ms=None,
        reliable=True,
        max_queue_bytes=1 << 20,
        max_message_bytes=64 * 1024,
    ),
    ChannelKind.VIDEO: QoS(
        priority=2,
        deadline_ms=300.0,
        reliable=False,
        max_queue_bytes=4 << 20,
        max_message_bytes=2 << 20,
    ),
    ChannelKind.EMBEDDINGS: QoS(
        priority=3,
        deadline_ms=None,
        reliable=True,
        max_queue_bytes=64 << 20,
        max_message_bytes=32 << 20,
    ),
}


def default_qos(kind: ChannelKind | str) -> QoS:
    """The default QoS of a channel kind."""
    try:
        return DEFAULT_QOS[ChannelKind(kind)]
    except ValueError:
        raise LocalProtocolError(
            f"unknown channel kind {kind!r}; expected one of {[k.value for k in ChannelKind]}"
        ) from None
