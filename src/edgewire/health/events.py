"""Events of the health layer's multi-endpoint sessions (``edgewire.health.multipath``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PathSwitched"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PathSwitched:
    """A multi-endpoint session moved its channels from one path to another."""

    at_s: float
    """When the switch happened (the ``now`` of the call that made it), seconds."""
    from_path: str
    """The path the channels left."""
    to_path: str
    """The path they use from now on."""
    reason: str
    """"silence" (nothing heard on the old path for ``failover_after_s``), "closed" (its
    QUIC connection ended), "decision" (``apply_decision``), "manual" (``switch``) or
    "peer" (the server followed the client)."""
    resent: int
    """Unacknowledged reliable messages queued again on the new path."""
