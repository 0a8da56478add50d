"""The service side of multi-endpoint sessions: server sessions grouped by the client's
multipath hello into :class:`~edgewire.health.multipath.MultiSession` objects.

Every server endpoint a client may use ("edge", "cloud") attaches its new sessions here.
Sessions whose client sends a multipath hello become paths of that client's multi-session;
the merge of reliable channels (order, no duplicates, resend of what a dead path did not
deliver) happens in that object, so **the endpoints must share one MultiReceiver** for the
guarantee to span them. In netsim all endpoints live in one process and share it; in a
deployment where edge and cloud run apart, each has its own and reliable channels are
exactly-once per endpoint only (docs/MULTIPATH.md).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.health.multipath import MultipathConfig, MultiSession
from edgewire.health.multiwire import MpHello, decode_mp_control
from edgewire.transport import Session
from edgewire.transport.session import K_MULTIPATH_KEY

__all__ = ["MultiReceiver"]


class MultiReceiver:
    """Groups server sessions into multi-sessions by the id in their multipath hello."""

    def __init__(self, *, config: MultipathConfig | None = None, max_sessions: int = 1024,
                 hello_timeout_s: float = 5.0) -> None:
        if max_sessions < 1 or not hello_timeout_s > 0:
            raise LocalProtocolError("max_sessions must be >= 1 and hello_timeout_s > 0")
        self.config = config or MultipathConfig()
        self.max_sessions = max_sessions
        """Most multi-sessions (and, separately, sessions waiting for a hello) held."""
        self.hello_timeout_s = hello_timeout_s
        """A session without a multipath hello this long after attaching is left alone
        (a plain single-path client)."""
        self.sessions: dict[str, MultiSession] = {}
        """Multi-sessions by the client's session id."""
        self._pending: deque[tuple[float, Session]] = deque()
        self.unclaimed = 0
        """Sessions that sent no multipath hello in time (plain clients)."""
        self.rejected = 0
        """Sessions refused: malformed hello, a path already taken, or over the limit."""

    def attach(self, session: Session, *, now: float) -> None:
        """A server endpoint accepted ``session``: watch it for a multipath hello."""
        if len(self._pending) >= self.max_sessions:
            self._pending.popleft()
            self.rejected += 1
        self._pending.append((now, session))

    def poll(self, *, now: float) -> None:
        """Adopt sessions whose hello arrived; let every multi-session take in events."""
        if self._pending:
            waiting: deque[tuple[float, Session]] = deque()
            for since, session in self._pending:
                if session.multipath is not None:
                    self._adopt(session, now)
                elif session.closed or now - since > self.hello_timeout_s:
                    self.unclaimed += 1
                else:
                    waiting.append((since, session))
            self._pending = waiting
        for multi in self.sessions.values():
            multi.poll(now=now)

    def _adopt(self, session: Session, now: float) -> None:
        try:
            hello = decode_mp_control({K_MULTIPATH_KEY: session.multipath})
        except RemoteProtocolError:
            hello = None
        if not isinstance(hello, MpHello):
            self.rejected += 1
            return
        multi = self.sessions.get(hello.session)
        if multi is None:
            if len(self.sessions) >= self.max_sessions:
                self.rejected += 1
                return
            multi = self.sessions[hello.session] = MultiSession(
                {}, session_id=hello.session, config=self.config)
        if hello.path in multi.paths:
            self.rejected += 1  # a second connection for a path: keep the first
            return
        multi.add_path(hello.path, session, active=hello.active)

    def get_timer(self) -> float | None:
        """Earliest timer of any multi-session or hello wait."""
        times = [t for m in self.sessions.values() if (t := m.get_timer()) is not None]
        if self._pending:
            times.append(self._pending[0][0] + self.hello_timeout_s)
        return min(times) if times else None

    def handle_timer(self, *, now: float) -> None:
        """Run what is due."""
        self.poll(now=now)
        for multi in self.sessions.values():
            timer = multi.get_timer()
            if timer is not None and timer <= now:
                multi.handle_timer(now=now)

    def forget_closed(self) -> int:
        """Drop multi-sessions whose every path is closed; returns how many."""
        gone = [sid for sid, m in self.sessions.items() if m.closed]
        for sid in gone:
            del self.sessions[sid]
        return len(gone)

    def summary(self) -> dict[str, Any]:
        """Counters, JSON-ready."""
        return {"sessions": len(self.sessions), "waiting": len(self._pending),
                "unclaimed": self.unclaimed, "rejected": self.rejected}
