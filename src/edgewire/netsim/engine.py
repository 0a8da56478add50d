"""The discrete-event loop: endpoints, links and applications on one virtual clock.

The clock never ticks: each step jumps to the earliest of the endpoints' timers, the links'
next departures, the applications' timers and the scheduled callbacks, then at that instant
delivers what arrived, fires due timers, lets the applications act and hands what the
endpoints want to send to the links. Nothing reads a real clock, so a run is as fast as the
Python it executes and, for a seed, the same every time.

Endpoints are anything with aioquic's sans-I/O shape (an edgewire
:class:`~edgewire.transport.Session` is one): ``receive_datagram(data, addr, now=)``,
``handle_timer(now=)``, ``get_timer()``, ``datagrams_to_send(now=)``. Behind a link that
models the receiving process (``LinkConfig.read_*``), ``receive_datagram`` also gets
``socket_drops=``, the running count of what its socket buffer dropped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection
from typing import Protocol

from edgewire.errors import LocalProtocolError
from edgewire.netsim.link import Link

__all__ = ["Address", "Application", "Endpoint", "SimulationStuckError", "Simulator"]

Address = tuple[str, int]

#: Steps at one instant after which the clock is declared stuck (a timer that never moves).
K_MAX_STEPS_AT_ONE_TIME = 100_000
#: Steps at one instant after which the clock is moved on by K_CLOCK_NUDGE.
K_NUDGE_AFTER_STEPS = 3
K_CLOCK_NUDGE = 1e-6  # seconds


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
    """Something that acts on endpoints: traffic generators, recorders, probes.

    ``address`` names the one endpoint the application reads (None: it may read any);
    the engine then skips ``step`` at instants where neither that endpoint was called
    nor the application's own timer is due.
    """

    @property
    def address(self) -> Address | None:
        """The endpoint this application reads, or None."""

    def get_timer(self) -> float | None:
        """When ``step`` must run next at the latest, or None."""

    def step(self, *, now: float) -> Collection[Address]:
        """Act at ``now``; called at every instant the clock stops at. Returns the
        addresses of the endpoints it called (the engine then asks them for datagrams)."""


class Simulator:
    """Endpoints joined by links, driven on a virtual clock starting at ``now``."""

    def __init__(self, *, now: float = 0.0) -> None:
        self.now = now
        """Current virtual time, seconds."""
        self.steps = 0
        """Instants the clock has stopped at so far."""
        self.nudges = 0
        """Times the clock was moved on by K_CLOCK_NUDGE because a timer did not advance."""
        self.unroutable = 0
        """Datagrams sent to an address no link leads to (dropped)."""
        self._endpoints: dict[Address, Endpoint] = {}
        self._links: dict[tuple[Address, Address], Link] = {}
        self._link_list: list[Link] = []
        self._link_items: list[tuple[tuple[Address, Address], Link]] = []
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
        self._ep_timers[addr] = None  # read at the first transmit, after connect()

    def connect(self, a: Address, b: Address, a_to_b: Link, b_to_a: Link) -> None:
        """Join ``a`` and ``b`` with one link per direction."""
        for key in ((a, b), (b, a)):
            if key in self._links:
                raise LocalProtocolError(f"{key[0]} and {key[1]} are already connected")
        self._links[(a, b)] = a_to_b
        self._links[(b, a)] = b_to_a
        self._link_list = list(self._links.values())
        self._link_items = list(self._links.items())

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
        # the hot loop of every run: plain comparisons, no temporary list
        best = self._calls[0][0] if self._calls else None
        for link in self._link_list:
            t = link.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        # endpoint timers are cached: only an endpoint that was called can change its own
        for t in self._ep_timers.values():
            if t is not None and (best is None or t < best):
                best = t
        for app in self._apps:
            t = app.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def run(self, until: float, *, progress: Callable[[float], None] | None = None,
            progress_every: float = 1.0) -> None:
        """Advance the clock to ``until``, processing everything due on the way.

        ``progress(now)`` is called about every ``progress_every`` virtual seconds.
        """
        if until < self.now:
            raise LocalProtocolError(f"cannot run back to {until} s from {self.now} s")
        self._transmit(dict(self._endpoints))
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
                if same_time_steps >= K_NUDGE_AFTER_STEPS:
                    # A timer that fired and did not move: aioquic's loss timer compares
                    # sent_time + delay with now - delay, and float rounding can leave a
                    # packet one ulp short of "lost" forever at the exact instant. A
                    # real clock would have moved on; so does this one, by 1 us.
                    self.now += K_CLOCK_NUDGE
                    self.nudges += 1
            else:
                same_time_steps = 0
                self.now = t
            self._step()
            if progress is not None and self.now >= next_report:
                progress(self.now)
                next_report = self.now + progress_every
        self.now = until
        self._step()

    def _step(self) -> None:
        """Process the instant ``self.now``."""
        now = self.now
        self.steps += 1
        calls = self._calls
        acted = False
        while calls and calls[0][0] <= now:
            _, _, callback = heapq.heappop(calls)
            callback(now)
            acted = True
        endpoints = self._endpoints
        # only endpoints that received something, whose timer fired or that an application
        # called can have new datagrams (a scheduled callback may touch anything): asking
        # aioquic for datagrams costs about as much as the rest of a step, so the others
        # are skipped
        touched: dict[Address, Endpoint] = {}
        for (src, dst), link in self._link_items:
            if (t := link.get_timer()) is None or t > now:
                continue
            target = endpoints.get(dst)
            deliveries = link.receive(now=now)
            if target is None or not deliveries:
                continue
            drops = link.reader_drops
            for delivery in deliveries:
                if drops is None:
                    target.receive_datagram(delivery.data, src, now=now)
                else:  # the receiving socket's drop count, as a kernel keeps it
                    target.receive_datagram(delivery.data, src, now=now,  # type: ignore[call-arg]
                                            socket_drops=drops)
            touched[dst] = target
        for addr, t in self._ep_timers.items():
            if t is not None and t <= now:
                ep = endpoints[addr]
                ep.handle_timer(now=now)
                touched[addr] = ep
        for app in self._apps:
            own = app.address
            if own is not None and own not in touched and not acted:
                t = app.get_timer()
                if t is None or t > now:
                    continue
            for addr in app.step(now=now):
                if addr in endpoints:
                    touched[addr] = endpoints[addr]
        self._transmit(endpoints if acted else touched)

    def _transmit(self, endpoints: dict[Address, Endpoint]) -> None:
        now = self.now
        links = self._links
        timers = self._ep_timers
        for addr, ep in endpoints.items():
            for data, dst in ep.datagrams_to_send(now=now):
                link = links.get((addr, tuple(dst)))  # type: ignore[arg-type]
                if link is None:
                    self.unroutable += 1
                    continue
                link.send(data, now=now)
            timers[addr] = ep.get_timer()
