"""Health reports for a multi-endpoint connection: one monitor per path, and decisions
from the placement decider applied to the connection.

``MultiHealthReporter(conn, session="agent-1", sinks=[...])`` observes every path's QUIC
session, hands each path's ``edgewire.health/1`` report to the sinks (periodic and at once
on a tier change, a path going down or a spike), and owns a ``DecisionApplier`` whose
handler is ``conn.apply_decision``: a webhook sink built with ``decisions=
reporter.decisions`` (or :meth:`webhook`) switches paths on the decider's answer, and
:meth:`decide` does the same for an API call. Every outcome, applied or rejected with its
reason, rides in the next report of the path that is active after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from edgewire.aio.health import K_OBSERVE_INTERVAL, SinkFanout, WebhookSink
from edgewire.aio.multi import MultiConnection
from edgewire.health.decisions import Decision, DecisionApplier
from edgewire.health.device import DeviceProbe
from edgewire.health.monitor import HealthConfig, HealthMonitor

__all__ = ["MultiHealthReporter"]


class MultiHealthReporter(SinkFanout):
    """Per-path health monitors of a :class:`MultiConnection`, their reports fanned out to
    sinks, and placement decisions applied to the connection (``async with`` or
    ``start()`` / ``aclose()``)."""

    def __init__(self, conn: MultiConnection, *, session: str,
                 sinks: list[Any] | None = None, config: HealthConfig | None = None,
                 device: DeviceProbe | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.monitors: dict[str, HealthMonitor] = {
            path: HealthMonitor(session=session, path=path, config=config, device=device)
            for path in conn.multi.paths}
        self.sinks: list[Any] = list(sinks or [])
        self.decisions = DecisionApplier(handler=self._switch,
                                         paths=lambda: conn.multi.paths,
                                         record=self._record)
        """Validates decisions and applies them to the connection."""
        self._wall = wall_clock
        self._task: asyncio.Task[None] | None = None
        self.reports = 0
        """Reports emitted (all paths)."""

    def webhook(self, url: str, **options: Any) -> WebhookSink:
        """Add a webhook sink whose answers are applied as decisions."""
        sink = WebhookSink(url, decisions=self.decisions, **options)
        self.sinks.append(sink)
        return sink

    def decide(self, decision: Any) -> list[dict[str, Any]]:
        """Apply decisions given through the API; the outcomes (also in the next report)."""
        return self.decisions.apply(decision, source="api")

    def _switch(self, decision: Decision) -> Mapping[str, Any]:
        out = self.conn.apply_decision({"action": decision.action, "path": decision.path})
        status = "applied" if out.get("ok") else "rejected"
        return {"status": status, "reason": out.get("reason"),
                "active": self.conn.active_path}

    def _record(self, outcome: dict[str, Any]) -> None:
        # the report that follows a decision is the one of the path now active
        active = self.conn.active_path
        monitor = self.monitors.get(active) if active is not None else None
        if monitor is None:
            monitor = next(iter(self.monitors.values()))
        monitor.record_decision(outcome)

    def observe(self, now: float) -> list[dict[str, Any]]:
        """Sample every path and return the reports due now (the task calls this)."""
        multi = self.conn.multi
        due = []
        for path, monitor in self.monitors.items():
            monitor.observe(multi.session(path), now=now)
            if monitor.due(now=now):
                due.append(monitor.report(now=now, ts=self._wall()))
        return due

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for report in self.observe(now):
                self.emit(report)
            timers = [t for m in self.monitors.values() if (t := m.get_timer()) is not None]
            wake = min([now + K_OBSERVE_INTERVAL, *timers])
            await asyncio.sleep(max(0.0, wake - loop.time()))
