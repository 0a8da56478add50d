"""The discrete-event loop: endpoints, links and applications on one virtual clock.

The clock never ticks: each step jumps to the earliest of the endpoints' timers, the links'
next departures, the applications' timers and the scheduled callbacks, then at that instant
delivers what arrived, fires due timers, lets the applications act and hands what the
endpoints want to send to the links. Nothing reads a real clock, so a run is as fast as the
Python it executes and, for a seed, the same every time.

Endpoints are anything with aioquic's sans-I/O shape (an edgewire
:class:`~edgewire.transport.Session` is one): ``receive_datagram(data, addr, now=)``,
``handle_timer(now=)``, ``get_timer()``, ``datagrams_to_send(now=)``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Protocol

from edgewire.errors import LocalProtocolError
from edgewire.netsim.link import Link

__all__ = ["Address", "Application", "Endpoint", "SimulationStuckError", "Simulator"]

Address = tuple[str, int]

#: Steps at one instant after which the clock is declared stuck (a timer that never moves).
K_MAX_STEPS_AT_ONE_TIME = 100_000


class SimulationStuckError(RuntimeError):
    """A timer keeps firing at the same virtual time; the run cannot make progress."""


class Endpoint(Protocol):
    """A sans-I/O network endpoint (QUIC connection shaped)."""

    def receive_datagram(self, data: bytes, addr: Address, *, now: float) -> None:
        """A datagram from ``addr`` arrived."""

    def handle_timer(self, *, now: float) -> None:
        """The timer from ``get_timer`` expired."""

    def get_timer(self) -> float | None:
        """When ``handle_timer`` should run next, or None."""

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Address]]:
        """Datagrams to put on the wire now, with their destinations."""


class Application(Protocol):
    """Something that acts on endpoints: traffic generators, recorders, probes."""

    def get_timer(self) -> float | None:
        """When ``step`` must run next at the latest, or None."""

    def step(self, *, now: float) -> bool:
        """Act at ``now``; called at every instant the clock stops at. Returns True when
        it may have given an endpoint something to send (the engine then asks them)."""


class Simulator:
    """Endpoints joined by links, driven on a virtual clock starting at ``now``."""

    def __init__(self, *, now: float = 0.0) -> None:
        self.now = now
        """Current virtual time, seconds."""
        self.steps = 0
        """Instants the clock has stopped at so far."""
        self.unroutable = 0
        """Datagrams sent to an address no link leads to (dropped)."""
        self._endpoints: dict[Address, Endpoint] = {}
        self._links: dict[tuple[Address, Address], Link] = {}
        self._apps: list[Application] = []
        self._calls: list[tuple[float, int, Callable[[float], None]]] = []
        self._call_seq = 0
        # endpoint timers read by next_time(), reused by the step that follows it
        self._ep_timers: dict[Address, float | None] = {}

    # ------------------------------------------------------------------ building

    def add_endpoint(self, addr: Address, endpoint: Endpoint) -> None:
        """Place ``endpoint`` at ``addr``."""
        if addr in self._endpoints:
            raise LocalProtocolError(f"an endpoint is already at {addr}")
        self._endpoints[addr] = endpoint

    def connect(self, a: Address, b: Address, a_to_b: Link, b_to_a: Link) -> None:
        """Join ``a`` and ``b`` with one link per direction."""
        for key in ((a, b), (b, a)):
            if key in self._links:
                raise LocalProtocolError(f"{key[0]} and {key[1]} are already connected")
        self._links[(a, b)] = a_to_b
        self._links[(b, a)] = b_to_a

    def add_application(self, app: Application) -> None:
        """Run ``app.step`` at every instant, and at its own timers."""
        self._apps.append(app)

    def call_at(self, when: float, callback: Callable[[float], None]) -> None:
        """Run ``callback(now)`` at virtual time ``when`` (scenario events)."""
        if when < self.now:
            raise LocalProtocolError(f"cannot schedule at {when} s, the clock is at {self.now} s")
        self._call_seq += 1
        heapq.heappush(self._calls, (when, self._call_seq, callback))

    def link(self, src: Address, dst: Address) -> Link:
        """The link carrying datagrams from ``src`` to ``dst``."""
        try:
            return self._links[(src, dst)]
        except KeyError:
            raise LocalProtocolError(f"no link from {src} to {dst}") from None

    # ------------------------------------------------------------------ running

    def next_time(self) -> float | None:
        """The earliest instant anything is due, or None when all is idle."""
        times = [self._calls[0][0]] if self._calls else []
        for link in self._links.values():
            if (t := link.get_timer()) is not None:
                times.append(t)
        ep_timers = self._ep_timers
        for addr, ep in self._endpoints.items():
            t = ep_timers[addr] = ep.get_timer()
            if t is not None:
                times.append(t)
        for app in self._apps:
            if (t := app.get_timer()) is not None:
                times.append(t)
        return min(times) if times else None

    def run(self, until: float, *, progress: Callable[[float], None] | None = None,
            progress_every: float = 1.0) -> None:
        """Advance the clock to ``until``, processing everything due on the way.

        ``progress(now)`` is called about every ``progress_every`` virtual seconds.
        """
        if until < self.now:
            raise LocalProtocolError(f"cannot run back to {until} s from {self.now} s")
        self._transmit(self._endpoints)
        next_report = self.now + progress_every
        same_time_steps = 0
        while True:
            t = self.next_time()
            if t is None or t > until:
                break
            if t <= self.now:
                same_time_steps += 1
                if same_time_steps > K_MAX_STEPS_AT_ONE_TIME:
                    raise SimulationStuckError(f"virtual clock stuck at {self.now:.6f} s")
            else:
                same_time_steps = 0
                self.now = t
            self._step()
            if progress is not None and self.now >= next_report:
                progress(self.now)
                next_report = self.now + progress_every
        self.now = until
        self.next_time()
        self._step()

    def _step(self) -> None:
        """Process the instant ``self.now``; ``next_time()`` has just read the timers."""
        now = self.now
        self.steps += 1
        calls = self._calls
        acted = False
        while calls and calls[0][0] <= now:
            _, _, callback = heapq.heappop(calls)
            callback(now)
            acted = True
        endpoints = self._endpoints
        # only endpoints that received something or whose timer fired can have new
        # datagrams, unless an application acted on them: asking aioquic for datagrams
        # costs as much as a step, so the others are skipped
        touched: dict[Address, Endpoint] = {}
        for (src, dst), link in self._links.items():
            if (t := link.get_timer()) is None or t > now:
                continue
            target = endpoints.get(dst)
            for delivery in link.receive(now=now):
                if target is not None:
                    target.receive_datagram(delivery.data, src, now=now)
                    touched[dst] = target
        for addr, t in self._ep_timers.items():
            if t is not None and t <= now:
                ep = endpoints[addr]
                ep.handle_timer(now=now)
                touched[addr] = ep
        for app in self._apps:
            acted = app.step(now=now) or acted
        self._transmit(endpoints if acted else touched)

    def _transmit(self, endpoints: dict[Address, Endpoint]) -> None:
        now = self.now
        links = self._links
        for addr, ep in endpoints.items():
            for data, dst in ep.datagrams_to_send(now=now):
                link = links.get((addr, tuple(dst)))  # type: ignore[arg-type]
                if link is None:
                    self.unroutable += 1
                    continue
                link.send(data, now=now)
