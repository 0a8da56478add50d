"""Events a :class:`~edgewire.transport.session.Session` hands to its driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgewire.transport.qos import ChannelKind, QoS

__all__ = [
    "AppMessageReceived",
    "BitrateChanged",
    "ChannelClosed",
    "ChannelOpened",
    "Event",
    "FrameLost",
    "KeyframeRequested",
    "MessageReceived",
    "SessionClosed",
    "SessionReady",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionReady:
    """The QUIC handshake and the edgewire hello are done; channels can be used."""

    version: int
    """Negotiated edgewire protocol version."""
    peer_software: str
    """Implementation name the peer sent in its hello."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelOpened:
    """The peer opened a channel."""

    channel_id: int
    """Id of the new channel."""
    kind: ChannelKind
    """Its kind."""
    name: str
    """Its name."""
    qos: QoS
    """The QoS the peer announced."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClosed:
    """The peer will send nothing more on a channel."""

    channel_id: int
    """The closed channel."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """A whole message arrived on a channel."""

    channel_id: int
    """Channel it arrived on."""
    payload: Any
    """bytes (audio, video), TokenMessage (tokens) or numpy.ndarray (embeddings)."""
    timestamp: float
    """Capture time on this side's clock (sender time corrected by the clock offset)."""
    latency: float
    """Seconds from capture to delivery."""
    frame_id: int = 0
    """Frame counter for audio and video; message counter for reliable channels."""
    keyframe: bool = False
    """Video keyframe flag."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameLost:
    """A real-time frame will not be delivered."""

    channel_id: int
    """Channel of the frame."""
    frame_id: int
    """Its id."""
    reason: str
    """"incomplete" (fragments missing at the deadline), "late" (complete after the
    deadline) or "evicted" (reassembly table full)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppMessageReceived:
    """The peer sent an application message on the control stream."""

    body: Any
    """The decoded CBOR value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    """The connection is closed; the session is finished."""

    error_code: int
    """Application or transport error code (0 when closed cleanly)."""
    reason: str
    """Reason phrase."""
    by_peer: bool
    """True if the peer closed it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BitrateChanged:
    """The share of the bandwidth estimate given to one of this side's channels changed.

    Encoders follow ``bitrate_bps`` (audio and video bitrate, the video ladder); reliable
    channels may use it to choose a precision or batch size. Shares follow priority:
    audio first, then tokens, video, embeddings (docs/BWE.md)."""

    channel_id: int
    """The local channel whose share changed."""
    bitrate_bps: float
    """Its share of the estimate, bits per second."""
    target_bps: float
    """The whole estimate the shares were cut from, bits per second."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyframeRequested:
    """The peer asked for a keyframe on one of this side's video channels (it lost a frame
    it cannot decode around): make the next frame a keyframe (``Encoder.request_keyframe``).
    Requests are already rate-limited by the asking side."""

    channel_id: int
    """The local video channel."""


Event = (
    SessionReady
    | ChannelOpened
    | ChannelClosed
    | MessageReceived
    | FrameLost
    | AppMessageReceived
    | BitrateChanged
    | KeyframeRequested
    | SessionClosed
)
