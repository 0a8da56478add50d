"""Per-path health figures of a multi-endpoint netsim run: one
:class:`~edgewire.health.monitor.HealthMonitor` per path, sampled on a virtual-time tick,
its report under ``paths.<name>.health.monitor`` of the run JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgewire.health.monitor import HealthMonitor
from edgewire.netsim.engine import Simulator
from edgewire.transport import Session

__all__ = ["K_HEALTH_SAMPLE_S", "PathHealth"]

#: Virtual seconds between two samples of every path's session.
K_HEALTH_SAMPLE_S = 0.05


class PathHealth:
    """A health monitor per path, fed from the client's session on that path."""

    def __init__(self, session_id: str, sessions: dict[str, Callable[[], Session]]) -> None:
        self._sessions = sessions
        self.monitors = {name: HealthMonitor(session=session_id, path=name)
                         for name in sessions}

    def sample(self, now: float) -> None:
        """Let every monitor observe its path's session."""
        for name, monitor in self.monitors.items():
            monitor.observe(self._sessions[name](), now=now)

    def schedule(self, sim: Simulator, stop: float) -> None:
        """Sample every K_HEALTH_SAMPLE_S of virtual time until ``stop``."""
        def tick(now: float) -> None:
            self.sample(now)
            if now + K_HEALTH_SAMPLE_S <= stop + 1e-9:
                sim.call_at(now + K_HEALTH_SAMPLE_S, tick)
        sim.call_at(K_HEALTH_SAMPLE_S, tick)

    def report(self, name: str, *, now: float) -> dict[str, Any]:
        """``{"monitor": <edgewire.health/1 report>}`` of one path (``ts`` is the virtual
        time: a simulation has no wall clock)."""
        return {"monitor": self.monitors[name].report(now=now, ts=now)}
