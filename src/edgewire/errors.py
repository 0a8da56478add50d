"""Exceptions raised by edgewire.

The split follows h11: :class:`LocalProtocolError` means the caller misused the API and is
raised at once; :class:`RemoteProtocolError` means the peer sent something invalid. Remote
errors are usually counted and dropped inside the session; they surface as exceptions only
where a caller asked to parse something directly (for example :func:`decode_header`).
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosedError",
    "EdgewireError",
    "InsecureConnectionWarning",
    "LocalProtocolError",
    "MessageTooLargeError",
    "QueueFullError",
    "RemoteProtocolError",
]


class EdgewireError(Exception):
    """Base class of every exception edgewire raises on purpose."""


class LocalProtocolError(EdgewireError):
    """The caller used the API in a way it does not allow (wrong state, bad argument)."""


class MessageTooLargeError(LocalProtocolError):
    """A payload is larger than the channel can carry (see the channel's QoS limits)."""


class QueueFullError(LocalProtocolError):
    """A reliable channel's send queue is full; wait until it drains and send again."""


class RemoteProtocolError(EdgewireError):
    """The peer sent something that violates the edgewire protocol.

    ``error_code`` is the application error code (docs/PROTOCOL.md) the session closes the
    connection with when the violation is fatal.
    """

    def __init__(self, message: str, *, error_code: int = 0) -> None:
        super().__init__(message)
        self.error_code = error_code


class ConnectionClosedError(EdgewireError):
    """The session is closed; nothing more can be sent or received on it."""

    def __init__(self, message: str, *, error_code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code
        self.reason = reason


class InsecureConnectionWarning(UserWarning):
    """A client connected with certificate verification switched off (``insecure=True``)."""
