"""One direction of a simulated link, sans-I/O: packets in with ``send(now=)``, out with
``receive(now=)``, and ``get_timer()`` saying when the next one leaves.

A packet offered at ``now`` meets, in order (netem's order):

1. a blackout (``down``): lost;
2. duplication (a second copy follows the packet), then the loss model; as in netem, a
   duplicated packet that the model loses still delivers one copy;
3. the bottleneck queue (only with a rate or a trace): dropped when over the drop-tail
   limit, or by CoDel when it waited too long;
4. the bottleneck: served first-come first-served at ``rate_kbps``, or in the delivery
   opportunities of a Mahimahi trace (1500 bytes each; a packet may use the rest of an
   opportunity another one started; unused opportunities are lost);
5. propagation delay plus jitter; without ``reorder`` a packet never leaves before the
   one ahead of it.

Everything is exact in virtual time: a packet's departure is computed, not sampled from a
clock. Randomness comes only from the ``random.Random`` given to the link, in a fixed order
(duplication, loss, then jitter when a packet starts service, or, where packets may
be reordered, when it leaves the bottleneck), so a seed replays the same fates.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.loss import LossProcess, make_loss_process
from edgewire.netsim.stats import LinkStats
from edgewire.netsim.trace import K_OPPORTUNITY_BYTES, CapacityTrace

if TYPE_CHECKING:  # the generator is injected; only its type is needed here
    from random import Random

__all__ = ["Delivery", "Link", "Tap"]

#: Shape of the Pareto distribution behind the "pareto" jitter (netem's table uses 3).
K_PARETO_ALPHA = 3.0
#: Mean and standard deviation of Pareto(alpha=3, x_min=1), to standardize it.
_PARETO_MEAN = K_PARETO_ALPHA / (K_PARETO_ALPHA - 1.0)
_PARETO_STD = math.sqrt(K_PARETO_ALPHA / ((K_PARETO_ALPHA - 1.0) ** 2 * (K_PARETO_ALPHA - 2.0)))
#: Largest packet a link accepts (a UDP datagram over IPv4).
K_MAX_PACKET_BYTES = 65_507

#: Called with (now, data) for each packet entering or leaving the link (pcap taps).
Tap = Callable[[float, bytes], None]


class Delivery:
    """A packet leaving the link at ``time`` (seconds, virtual)."""

    __slots__ = ("data", "meta", "time")

    def __init__(self, time: float, data: bytes, meta: Any) -> None:
        self.time = time
        """When the packet arrives at the far end."""
        self.data = data
        """The packet, unchanged."""
        self.meta = meta
        """Whatever the sender passed to ``send`` (addresses, for the engine)."""


class _Packet:
    __slots__ = ("arrival", "data", "meta", "seq", "size")

    def __init__(self, data: bytes, arrival: float, seq: int, meta: Any) -> None:
        self.data = data
        self.size = len(data)
        self.arrival = arrival
        self.seq = seq  # offer index; -1 for a duplicate copy
        self.meta = meta


def _jitter_sampler(config: LinkConfig, rng: Random) -> Callable[[], float]:
    """A function returning one jitter draw in seconds (may be negative)."""
    j = config.jitter_ms / 1000.0
    if j == 0.0:
        return lambda: 0.0
    dist = config.jitter_distribution
    if dist == "uniform":
        return lambda: rng.uniform(-j, j)
    if dist == "normal":
        return lambda: rng.gauss(0.0, j)

    def pareto() -> float:
        return (rng.paretovariate(K_PARETO_ALPHA) - _PARETO_MEAN) / _PARETO_STD

    if dist == "pareto":
        return lambda: j * pareto()
    # paretonormal: netem's mix, a quarter normal and three quarters Pareto
    return lambda: j * (0.25 * rng.gauss(0.0, 1.0) + 0.75 * pareto())


class Link:
    """One direction of a link. ``rng`` must be this link's own generator."""

    def __init__(self, config: LinkConfig, *, rng: Random, name: str = "link",
                 now: float = 0.0) -> None:
        self.name = name
        """Label used in statistics and errors ("uplink", "downlink")."""
        self._rng = rng
        self.stats = LinkStats(start=now)
        """Counters and delay samples (see :class:`~edgewire.netsim.stats.LinkStats`)."""
        self.on_enter: Tap | None = None
        """Called for every packet offered to the link."""
        self.on_leave: Tap | None = None
        """Called for every packet delivered by the link."""
        self._queue: deque[_Packet] = deque()
        self._queue_bytes = 0
        self._serving: _Packet | None = None
        self._busy_until = 0.0
        self._serving_arrival: float | None = None  # fixed at service start when in order
        self._in_flight: list[tuple[float, int, _Packet]] = []
        self._flight_seq = 0
        self._last_delivery = -math.inf
        self._offered = 0
        # trace service position: next opportunity index and bytes left in it
        self._trace_origin = now
        self._opp_index = 0
        self._opp_left = K_OPPORTUNITY_BYTES
        # CoDel state (RFC 8289 names)
        self._first_above = 0.0
        self._dropping = False
        self._drop_next = 0.0
        self._codel_count = 0
        self._codel_lastcount = 0
        # the receiving process (``LinkConfig.read_*``): (read time, packet) waiting in
        # its socket buffer, first in first out (used once a reader was configured)
        self._reading: deque[tuple[float, _Packet]] = deque()
        self._reading_bytes = 0
        self._reader_free_at = -math.inf
        self._read_since_stall = 0
        self.reader_drops: int | None = None
        """Arrivals the receiving socket's buffer dropped so far (what a kernel counts
        for the socket); None while no reader was ever configured."""
        self.config = config
        if config.has_reader:
            self.reader_drops = 0
        self._loss: LossProcess = make_loss_process(config.loss, rng)
        self._jitter = _jitter_sampler(config, rng)
        self._rate_bps = (config.rate_kbps or 0.0) * 1000.0
        self.stats.capacity_segment(now, config)

    # ------------------------------------------------------------------ configuration

    def reconfigure(self, config: LinkConfig, *, now: float) -> None:
        """Apply new parameters from ``now`` on. A new loss model starts in its initial
        state; a new trace starts from its beginning; queued packets stay queued."""
        self._advance(now)
        old = self.config
        self.config = config
        if config.has_reader and self.reader_drops is None:
            self.reader_drops = 0
        if config.loss != old.loss:
            self._loss = make_loss_process(config.loss, self._rng)
        if (config.jitter_ms, config.jitter_distribution) != (old.jitter_ms,
                                                             old.jitter_distribution):
            self._jitter = _jitter_sampler(config, self._rng)
        if config.trace is not None and config.trace is not old.trace:
            self._trace_origin = now
            self._opp_index = 0
            self._opp_left = K_OPPORTUNITY_BYTES
        self._rate_bps = (config.rate_kbps or 0.0) * 1000.0
        self.stats.capacity_segment(now, config)
        if not config.has_bottleneck:
            # no bottleneck any more: what was in service and what waited leave now
            if self._serving is not None:
                pkt, self._serving = self._serving, None
                self._depart(pkt, now, self._serving_arrival)
            while self._queue:
                pkt = self._queue.popleft()
                self._queue_bytes -= pkt.size
                self._depart(pkt, now)
        self._start_service(now)

    # ------------------------------------------------------------------ sans-I/O API

    def send(self, data: bytes, *, now: float, meta: Any = None) -> None:
        """Offer one packet to the link at ``now``."""
        if len(data) > K_MAX_PACKET_BYTES:
            raise LocalProtocolError(f"{self.name}: packet of {len(data)} bytes is larger "
                                     f"than a UDP datagram")
        self._advance(now)
        seq = self._offered
        self._offered += 1
        stats = self.stats
        stats.packets_offered += 1
        stats.bytes_offered += len(data)
        if self.on_enter is not None:
            self.on_enter(now, data)
        cfg = self.config
        if cfg.down:
            stats.lost_down += 1
            stats.fate(seq, lost=True)
            return
        copies = 1
        if cfg.duplicate > 0.0 and self._rng.random() < cfg.duplicate:
            copies = 2
        if self._loss.lose():
            copies -= 1
            if copies == 0:
                stats.lost_by_model += 1
                stats.fate(seq, lost=True)
                return
        if copies == 2:
            stats.duplicated += 1
        self._enqueue(_Packet(data, now, seq, meta), now)
        if copies == 2:
            self._enqueue(_Packet(data, now, -1, meta), now)

    def get_timer(self) -> float | None:
        """When the next packet leaves the link (or, where packets may be reordered, when
        the bottleneck finishes one, or the receiving process reads one)."""
        t = self._in_flight[0][0] if self._in_flight else None
        if self._reading and (t is None or self._reading[0][0] < t):
            t = self._reading[0][0]
        if self._serving is not None:
            # In order, nothing behind the packet in service can arrive before it, so the
            # link need not wake up when it finishes; its arrival (fixed when its service
            # began) is the next event. That saves one engine step per packet.
            wake = self._busy_until if self._serving_arrival is None else self._serving_arrival
            if t is None or wake < t:
                t = wake
        return t

    def receive(self, *, now: float) -> list[Delivery]:
        """Packets that reached the far end by ``now`` (and, with a receiving process
        configured, that it read by then), in arrival order."""
        self._advance(now)
        out: list[Delivery] = []
        flight = self._in_flight
        reader = self.reader_drops is not None
        while flight and flight[0][0] <= now:
            t, _, pkt = heapq.heappop(flight)
            if reader:
                self._read_until(t, out)
                self._to_reader(pkt, t)
                continue
            # inline (once per packet of every run): what _deliver does
            self.stats.on_delivered(pkt.size, t - pkt.arrival)
            if self.on_leave is not None:
                self.on_leave(t, pkt.data)
            out.append(Delivery(t, pkt.data, pkt.meta))
        if reader:
            self._read_until(now, out)
        return out

    def _deliver(self, pkt: _Packet, t: float, out: list[Delivery]) -> None:
        self.stats.on_delivered(pkt.size, t - pkt.arrival)
        if self.on_leave is not None:
            self.on_leave(t, pkt.data)
        out.append(Delivery(t, pkt.data, pkt.meta))

    def _read_until(self, t: float, out: list[Delivery]) -> None:
        """Hand over what the receiving process has read by ``t``."""
        reading = self._reading
        while reading and reading[0][0] <= t:
            at, pkt = reading.popleft()
            self._reading_bytes -= pkt.size
            self._deliver(pkt, at, out)

    def _to_reader(self, pkt: _Packet, t: float) -> None:
        """``pkt`` reached the receiving socket at ``t``: dropped if its buffer is full,
        else read once the process has read what came before it (at its rate, after its
        stalls). Reconfigured without a reader, what is buffered is still read first."""
        cfg = self.config
        if cfg.has_reader and self._reading_bytes + pkt.size > cfg.read_buffer_bytes:
            self.stats.dropped_by_reader += 1
            assert self.reader_drops is not None
            self.reader_drops += 1
            return
        at = max(t, self._reader_free_at)
        if cfg.read_kbps is not None:
            at += pkt.size * 8.0 / (cfg.read_kbps * 1000.0)
        free = at
        if cfg.read_stall_ms > 0:
            self._read_since_stall += pkt.size
            if self._read_since_stall >= cfg.read_stall_bytes:
                self._read_since_stall = 0
                free = at + cfg.read_stall_ms / 1000.0
        self._reader_free_at = free
        self._reading.append((at, pkt))
        self._reading_bytes += pkt.size

    @property
    def queue_packets(self) -> int:
        """Packets waiting in the bottleneck queue (not counting the one in service)."""
        return len(self._queue)

    @property
    def queue_bytes(self) -> int:
        """Bytes waiting in the bottleneck queue."""
        return self._queue_bytes

    @property
    def in_flight(self) -> int:
        """Packets past the bottleneck, still propagating."""
        return len(self._in_flight)

    # ------------------------------------------------------------------ internals

    def _enqueue(self, pkt: _Packet, now: float) -> None:
        cfg = self.config
        if not cfg.has_bottleneck:
            self._depart(pkt, now)
            return
        if self._queue_full(pkt.size, cfg):
            self.stats.dropped_by_queue += 1
            self.stats.fate(pkt.seq, lost=True)
            return
        self._queue.append(pkt)
        self._queue_bytes += pkt.size
        if self._serving is None:
            self._start_service(now)

    def _queue_full(self, size: int, cfg: LinkConfig) -> bool:
        limit = cfg.queue_limit_packets
        if limit is not None:
            return len(self._queue) >= limit
        if cfg.queue_bytes is not None:
            return self._queue_bytes + size > cfg.queue_bytes
        assert cfg.queue_ms is not None
        rate = cfg.mean_rate_bps() or 0.0
        return rate > 0 and self._queue_bytes * 8.0 / rate * 1000.0 > cfg.queue_ms

    def _advance(self, now: float) -> None:
        """Finish every service that completes by ``now``, each at its exact time."""
        while self._serving is not None and self._busy_until <= now:
            pkt, done = self._serving, self._busy_until
            self._serving = None
            self._depart(pkt, done, self._serving_arrival)
            self._start_service(done)

    def _start_service(self, t: float) -> None:
        if self._serving is not None or not self._queue or self.config.down:
            return
        if not self.config.has_bottleneck:
            return
        pkt = self._dequeue(t)
        if pkt is None:
            return
        self._serving = pkt
        self._busy_until = self._finish_time(pkt.size, t)
        self._serving_arrival = (None if self.config.reorder
                                 else self._arrival_time(self._busy_until))

    def _finish_time(self, size: int, t: float) -> float:
        trace = self.config.trace
        if trace is None:
            return t + size * 8.0 / self._rate_bps
        idx = trace.first_index_at_or_after(t - self._trace_origin)
        if idx <= self._opp_index:
            idx, left = self._opp_index, self._opp_left
        else:
            left = K_OPPORTUNITY_BYTES
        need = size
        while need > left:
            need -= left
            idx += 1
            left = K_OPPORTUNITY_BYTES
        left -= need
        # never before the packet arrived (the index search tolerates float round-off)
        finish = max(t, self._trace_origin + trace.opportunity_time(idx))
        if left == 0:
            idx += 1
            left = K_OPPORTUNITY_BYTES
        self._opp_index, self._opp_left = idx, left
        return finish

    def _trace_wait(self, pkt: _Packet, trace: CapacityTrace) -> float:
        """What ``trace`` alone would have made ``pkt`` wait, offered to an empty queue:
        the time to its next delivery opportunity (seconds). (At a fixed rate the link
        imposes the packet's transmission: ``_depart``.)"""
        since = max(pkt.arrival - self._trace_origin, 0.0)
        first = trace.opportunity_time(trace.first_index_at_or_after(since))
        return max(0.0, self._trace_origin + first - pkt.arrival)

    def _pop(self) -> _Packet | None:
        if not self._queue:
            return None
        pkt = self._queue.popleft()
        self._queue_bytes -= pkt.size
        return pkt

    def _dequeue(self, now: float) -> _Packet | None:
        if self.config.aqm != "codel":
            return self._pop()
        return self._codel_dequeue(now)

    def _codel_ok_to_drop(self, pkt: _Packet | None, now: float) -> bool:
        cfg = self.config
        if pkt is None:
            self._first_above = 0.0
            return False
        sojourn = now - pkt.arrival
        if sojourn < cfg.codel_target_ms / 1000.0 or self._queue_bytes <= K_OPPORTUNITY_BYTES:
            self._first_above = 0.0
            return False
        if self._first_above == 0.0:
            self._first_above = now + cfg.codel_interval_ms / 1000.0
            return False
        return now >= self._first_above

    def _codel_drop(self, pkt: _Packet) -> None:
        self.stats.dropped_by_queue += 1
        self.stats.dropped_by_aqm += 1
        self.stats.fate(pkt.seq, lost=True)

    def _control_law(self, t: float) -> float:
        return t + self.config.codel_interval_ms / 1000.0 / math.sqrt(self._codel_count)

    def _codel_dequeue(self, now: float) -> _Packet | None:
        interval = self.config.codel_interval_ms / 1000.0
        pkt = self._pop()
        ok = self._codel_ok_to_drop(pkt, now)
        if self._dropping:
            if not ok:
                self._dropping = False
            while self._dropping and now >= self._drop_next and pkt is not None:
                self._codel_drop(pkt)
                self._codel_count += 1
                pkt = self._pop()
                if not self._codel_ok_to_drop(pkt, now):
                    self._dropping = False
                else:
                    self._drop_next = self._control_law(self._drop_next)
        elif ok and pkt is not None:
            self._codel_drop(pkt)
            pkt = self._pop()
            self._codel_ok_to_drop(pkt, now)
            self._dropping = True
            delta = self._codel_count - self._codel_lastcount
            recent = now - self._drop_next < 16 * interval
            self._codel_count = delta if delta > 1 and recent else 1
            self._drop_next = self._control_law(now)
            self._codel_lastcount = self._codel_count
        return pkt

    def _arrival_time(self, t: float) -> float:
        """Arrival at the far end of a packet leaving the bottleneck at ``t``."""
        arrive = t + max(0.0, self.config.delay_ms / 1000.0 + self._jitter())
        if not self.config.reorder and arrive < self._last_delivery:
            arrive = self._last_delivery
        self._last_delivery = max(self._last_delivery, arrive)
        return arrive

    def _depart(self, pkt: _Packet, t: float, arrive: float | None = None) -> None:
        """The packet left the bottleneck at ``t``: put it in flight until ``arrive``
        (drawn now unless its service start fixed it already)."""
        trace = self.config.trace
        if trace is None:  # inline: every packet of a fixed-rate link
            imposed = pkt.size * 8.0 / self._rate_bps if self._rate_bps > 0 else 0.0
        else:
            imposed = self._trace_wait(pkt, trace)
        self.stats.on_departed(t - pkt.arrival, imposed)
        if pkt.seq >= 0:
            self.stats.fate(pkt.seq, lost=False)
        if arrive is None:
            arrive = self._arrival_time(t)
        self._flight_seq += 1
        heapq.heappush(self._in_flight, (arrive, self._flight_seq, pkt))
