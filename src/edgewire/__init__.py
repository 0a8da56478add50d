"""edgewire: adaptive real-time transport for AI agents over one QUIC connection.

``edgewire.transport`` is the sans-I/O core; ``edgewire.aio`` drives it over UDP sockets.
"""

from edgewire.aio import Channel, Connection, Server, connect, serve
from edgewire.aio.multi import MultiConnection, connect_multi
from edgewire.errors import (
    ConnectionClosedError,
    EdgewireError,
    InsecureConnectionWarning,
    LocalProtocolError,
    MessageTooLargeError,
    QueueFullError,
    RemoteProtocolError,
)
from edgewire.transport import (
    ChannelKind,
    MessageReceived,
    QoS,
    Session,
    SessionConfig,
    TokenMessage,
)

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "ChannelKind",
    "Connection",
    "ConnectionClosedError",
    "EdgewireError",
    "InsecureConnectionWarning",
    "LocalProtocolError",
    "MessageReceived",
    "MessageTooLargeError",
    "MultiConnection",
    "QoS",
    "QueueFullError",
    "RemoteProtocolError",
    "Server",
    "Session",
    "SessionConfig",
    "TokenMessage",
    "__version__",
    "connect",
    "connect_multi",
    "serve",
]
