"""State of a multi-endpoint session: its parameters, each path, each channel."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.health.multireliable import ReliableReceiver, ReliableSender
from edgewire.transport import ChannelInfo, Session

__all__ = ["K_MAX_OUTSTANDING_PROBES", "LogicalChannel", "MultipathConfig", "PathState",
           "check_decision", "path_figures", "reliable_figures"]

#: Probes without an echo after which a path is not probed again until one comes.
K_MAX_OUTSTANDING_PROBES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class MultipathConfig:
    """Parameters of a multi-endpoint session."""

    failover_after_s: float = 0.15
    """Silence on the active path (no datagram received) after which the session moves to
    a standby path heard more recently than that."""
    probe_interval_s: float = 0.05
    """The client probes every path (the server echoes) this often, so a healthy path is
    never silent and a standby's last-heard time stays fresh."""
    ack_delay_s: float = 0.01
    """How long a receiver may wait before acknowledging reliable messages."""
    auto_failover: bool = True
    """Switch by itself on silence or close; off: only ``switch``/``apply_decision``."""
    max_unacked_messages: int = 4096
    """Per reliable channel: messages kept for a resend until acknowledged."""
    max_unacked_bytes: int = 16 << 20
    """Per reliable channel: bytes kept for a resend until acknowledged."""
    max_ahead_messages: int = 4096
    """Per reliable channel: messages a receiver holds ahead of a missing one."""
    max_switch_history: int = 256
    """Switches remembered in ``switches``."""
    max_events: int = 65536
    """Events held for the driver; beyond it media events are dropped and counted."""

    def __post_init__(self) -> None:
        for name in ("failover_after_s", "probe_interval_s", "ack_delay_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < 3600):
                raise LocalProtocolError(f"{name} must be in (0, 3600) seconds, got {value!r}")
        for name in ("max_unacked_messages", "max_unacked_bytes", "max_ahead_messages",
                     "max_switch_history", "max_events"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be >= 1")


class PathState:
    """One path of a multi-session: its QUIC session and what the multipath layer keeps
    about it."""

    __slots__ = ("active_since", "echoes", "local_cids", "name", "next_probe", "opened",
                 "peer_cids", "probe_rtt", "probes", "probes_sent", "session", "state")

    def __init__(self, name: str, session: Session) -> None:
        self.name = name
        self.session = session
        self.state = "standby"  # "active", "standby", "failed" (left on silence), "closed"
        self.opened = False  # local channels mirrored, hello sent
        self.local_cids: dict[int, int] = {}  # logical id -> this session's channel id
        self.peer_cids: dict[int, int] = {}  # this session's channel id -> logical id
        self.next_probe: float | None = None
        self.probes: deque[tuple[int, float]] = deque(maxlen=64)  # (number, sent at)
        self.probes_sent = 0
        self.echoes = 0
        self.probe_rtt: float | None = None
        self.active_since = 0.0


class LogicalChannel:
    """One channel of a multi-session (opened on every path under one name)."""

    __slots__ = ("id", "info", "next_frame", "receiver", "sender")

    def __init__(self, info: ChannelInfo, config: MultipathConfig) -> None:
        self.id = info.channel_id
        self.info = info
        self.next_frame = 0
        self.sender: ReliableSender | None = None
        self.receiver: ReliableReceiver[tuple[int, Any, float]] | None = None
        if info.qos.reliable and info.local:
            self.sender = ReliableSender(max_messages=config.max_unacked_messages,
                                         max_bytes=config.max_unacked_bytes)
        elif info.qos.reliable:
            self.receiver = ReliableReceiver(max_ahead=config.max_ahead_messages)


def path_figures(paths: dict[str, PathState], *, now: float) -> dict[str, dict[str, Any]]:
    """Per path: state, readiness, RTT, silence, probes, QUIC figures (JSON-ready)."""
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        session = path.session
        heard = session.last_received
        row: dict[str, Any] = {
            "state": path.state,
            "ready": session.ready,
            "closed": session.closed,
            "silent_ms": None if heard is None else round((now - heard) * 1000, 3),
            "probes_sent": path.probes_sent,
            "probe_echoes": path.echoes,
            "probe_rtt_ms": (None if path.probe_rtt is None
                             else round(path.probe_rtt * 1000, 3)),
        }
        q = session.quic_stats()
        row["rtt_ms"] = None if q.rtt_smoothed is None else round(q.rtt_smoothed * 1000, 3)
        row["bandwidth_estimate_kbps"] = round(session.bandwidth_estimate_bps / 1000, 1)
        out[name] = row
    return out


def reliable_figures(logical: dict[int, LogicalChannel]) -> dict[str, dict[str, int]]:
    """Per reliable channel ("local NAME"/"peer NAME"): sent/acked/unacked/resent, or
    delivered/duplicates/dropped_ahead."""
    out: dict[str, dict[str, int]] = {}
    for lg in logical.values():
        key = f"{'local' if lg.info.local else 'peer'} {lg.info.name}"
        if lg.sender is not None:
            out[key] = {"sent": lg.sender.next_seq, "acked": lg.sender.acked,
                        "unacked": len(lg.sender), "resent": lg.sender.resent}
        elif lg.receiver is not None:
            out[key] = {"delivered": lg.receiver.next_expected,
                        "duplicates": lg.receiver.duplicates,
                        "dropped_ahead": lg.receiver.dropped_ahead}
    return out


def check_decision(decision: Any, paths: dict[str, PathState]) -> dict[str, Any]:
    """Validate a placement decision against the paths: the outcome dict, ``ok`` True when
    it may be applied (``path`` then names the target)."""
    if isinstance(decision, Mapping):
        action, target = decision.get("action"), decision.get("path")
    elif hasattr(decision, "action"):
        action, target = decision.action, getattr(decision, "path", None)
    else:
        return {"ok": False, "status": "rejected", "action": None, "path": None,
                "reason": f"a decision is a map, got {type(decision).__name__}"}
    out: dict[str, Any] = {"ok": False, "status": "rejected", "action": action,
                           "path": target}
    if action != "switch":
        out["reason"] = f"unknown action {action!r} (supported: 'switch')"
    elif not isinstance(target, str) or target not in paths:
        out["reason"] = f"unknown path {target!r} (known: {', '.join(paths)})"
    elif paths[target].session.closed or not paths[target].session.ready:
        out["reason"] = f"path {target!r} is not ready"
    else:
        out.update(ok=True, status="applied")
    return out
