"""The sans-I/O transport: session, channels, wire format, scheduler."""

from edgewire.transport.channel import ChannelInfo
from edgewire.transport.config import ALPN, SessionConfig, quic_configuration
from edgewire.transport.events import (
    AppMessageReceived,
    BitrateChanged,
    ChannelClosed,
    ChannelOpened,
    Event,
    FrameLost,
    KeyframeRequested,
    MessageReceived,
    SessionClosed,
    SessionReady,
)
from edgewire.transport.messages import TokenMessage
from edgewire.transport.qos import ChannelKind, QoS, default_qos
from edgewire.transport.session import Session
from edgewire.transport.stats import ChannelStats, SessionCounters
from edgewire.transport.wire import ErrorCode

__all__ = [
    "ALPN",
    "AppMessageReceived",
    "BitrateChanged",
    "ChannelClosed",
    "ChannelInfo",
    "ChannelKind",
    "ChannelOpened",
    "ChannelStats",
    "ErrorCode",
    "Event",
    "FrameLost",
    "KeyframeRequested",
    "MessageReceived",
    "QoS",
    "Session",
    "SessionClosed",
    "SessionConfig",
    "SessionCounters",
    "SessionReady",
    "TokenMessage",
    "default_qos",
    "quic_configuration",
]
