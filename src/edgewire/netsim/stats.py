"""What a link did: counters, loss bursts, delay samples and capacity, in bounded memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgewire.netsim.trace import K_OPPORTUNITY_BYTES
from edgewire.transport.stats import percentiles_ms

if TYPE_CHECKING:
    from edgewire.netsim.config import LinkConfig

__all__ = ["LinkStats", "Samples"]

#: Samples kept exactly before reservoir sampling takes over (8 bytes each).
K_SAMPLES_CAPACITY = 1 << 20
#: Fates kept waiting for an earlier packet's fate before burst counting gives up on order.
K_MAX_PENDING_FATES = 1 << 16


class Samples:
    """Up to ``capacity`` values exactly; beyond that a uniform reservoir of them
    (Vitter's algorithm R). The replacement slots come from a fixed 64-bit xorshift
    sequence of its own, so the link's injected generator is never drawn from here."""

    __slots__ = ("_buf", "_cap", "_count", "_rng")

    def __init__(self, capacity: int = K_SAMPLES_CAPACITY) -> None:
        self._buf: list[float] = []
        self._count = 0
        self._rng = 0x9E3779B97F4A7C15
        self._cap = capacity

    def add(self, value: float) -> None:
        """Record one value."""
        self._count += 1
        if len(self._buf) < self._cap:
            self._buf.append(value)
            return
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        self._rng = x
        j = x % self._count
        if j < self._cap:
            self._buf[j] = value

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def total(self) -> int:
        """Values ever added."""
        return self._count

    def percentiles_ms(self, qs: tuple[float, ...]) -> dict[str, float | None]:
        """``{"p50": ms, ...}`` of the values (seconds) kept; None when empty."""
        return percentiles_ms(self._buf, qs)


@dataclass(slots=True)
class LinkStats:
    """Counters of one link direction since ``start``."""

    start: float = 0.0
    """Virtual time the link was created."""
    packets_offered: int = 0
    """Packets given to ``send`` (duplicates not included)."""
    bytes_offered: int = 0
    """Bytes given to ``send``."""
    packets_delivered: int = 0
    """Packets that reached the far end (duplicate copies included)."""
    bytes_delivered: int = 0
    """Bytes that reached the far end."""
    lost_by_model: int = 0
    """Packets the loss model dropped."""
    lost_down: int = 0
    """Packets offered during a blackout."""
    dropped_by_queue: int = 0
    """Packets the bottleneck queue dropped (drop-tail limit or CoDel)."""
    dropped_by_aqm: int = 0
    """Of those, packets CoDel dropped."""
    duplicated: int = 0
    """Extra copies the link made."""
    dropped_by_reader: int = 0
    """Packets that reached the far end and found the receiving socket's buffer full
    (``LinkConfig.read_*``): the receiver's loss, not the path's (not in ``lost``)."""
    delay: Samples = field(default_factory=Samples)
    """One-way delay (offer to delivery) of delivered packets, seconds."""
    queue_delay: Samples = field(default_factory=Samples)
    """Time from offer to leaving the bottleneck (waiting plus transmission), seconds."""
    self_inflicted: Samples = field(default_factory=Samples)
    """The part of ``queue_delay`` the packets ahead caused: less what the link imposed
    on the packet alone (on an empty queue: its transmission at a fixed rate, or the wait
    for a trace's next delivery opportunity), seconds."""
    loss_runs: int = 0
    """Runs of consecutive lost packets (in offer order)."""
    lost_in_runs: int = 0
    """Packets in those runs."""
    lost_packets: int = 0
    """Offered packets (not duplicate copies) known never to arrive."""
    _in_run: bool = False
    _next_fate: int = 0
    _pending: dict[int, bool] = field(default_factory=dict)
    _capacity_bits: float = 0.0
    _cap_since: float = 0.0
    _cap_config: LinkConfig | None = None
    _cap_origin: float = 0.0
    _unlimited: bool = False
    _recent_qd_sum: float = 0.0
    _recent_qd_n: int = 0
    _recent_qd_max: float = 0.0

    # ------------------------------------------------------------------ recording

    def on_departed(self, queue_delay: float, imposed: float = 0.0) -> None:
        """A packet left the bottleneck ``queue_delay`` seconds after it was offered;
        ``imposed`` of them it would have waited on an empty queue."""
        self.queue_delay.add(queue_delay)
        self.self_inflicted.add(max(0.0, queue_delay - imposed))
        self._recent_qd_sum += queue_delay
        self._recent_qd_n += 1
        if queue_delay > self._recent_qd_max:
            self._recent_qd_max = queue_delay

    def take_recent_queue_delay(self) -> tuple[float | None, float | None]:
        """(mean, max) queueing delay of the packets that left the bottleneck since the
        last call, seconds (None when none did); for timelines."""
        n = self._recent_qd_n
        out = (self._recent_qd_sum / n, self._recent_qd_max) if n else (None, None)
        self._recent_qd_sum = 0.0
        self._recent_qd_n = 0
        self._recent_qd_max = 0.0
        return out

    def capacity_bits_until(self, now: float) -> float | None:
        """Bits the link could have carried from ``start`` to ``now`` (None when the rate
        is unlimited)."""
        bits = self._capacity_bits + self._segment_bits(now, inclusive=False)
        return None if self._unlimited and bits == 0 else bits

    def on_delivered(self, size: int, delay: float) -> None:
        """A packet of ``size`` bytes reached the far end ``delay`` seconds after offer."""
        self.packets_delivered += 1
        self.bytes_delivered += size
        self.delay.add(delay)

    def fate(self, seq: int, *, lost: bool) -> None:
        """The fate of offered packet ``seq`` is known; count loss runs in offer order."""
        if seq < 0:
            return
        if lost:
            self.lost_packets += 1
        if seq != self._next_fate:
            if len(self._pending) >= K_MAX_PENDING_FATES:
                # cannot happen with bounded queues; never grow without bound regardless
                self._pending.clear()
                self._next_fate = seq
            else:
                self._pending[seq] = lost
                return
        self._count_fate(lost)
        self._next_fate += 1
        pending = self._pending
        while pending:
            nxt = pending.pop(self._next_fate, None)
            if nxt is None:
                break
            self._count_fate(nxt)
            self._next_fate += 1

    def _count_fate(self, lost: bool) -> None:
        if lost:
            if not self._in_run:
                self.loss_runs += 1
                self._in_run = True
            self.lost_in_runs += 1
        else:
            self._in_run = False

    def capacity_segment(self, now: float, config: LinkConfig) -> None:
        """The link runs with ``config`` from ``now`` on (integrates the capacity so far)."""
        self._close_capacity(now)
        if config.trace is not None and (self._cap_config is None
                                         or config.trace is not self._cap_config.trace):
            self._cap_origin = now
        self._cap_config = config
        self._cap_since = now

    def _segment_bits(self, until: float, *, inclusive: bool) -> float:
        cfg = self._cap_config
        if cfg is None or until <= self._cap_since or cfg.down:
            return 0.0
        if cfg.rate_kbps is not None:
            return cfg.rate_kbps * 1000.0 * (until - self._cap_since)
        if cfg.trace is not None:
            # segments are [since, until); the last one also counts an opportunity at the
            # very end, as a packet delivered then counts in the throughput
            upto = until - self._cap_origin + (1e-9 if inclusive else 0.0)
            opp = cfg.trace.opportunities_between(self._cap_since - self._cap_origin, upto)
            return float(opp * K_OPPORTUNITY_BYTES * 8)
        self._unlimited = True
        return 0.0

    def _close_capacity(self, now: float) -> None:
        self._capacity_bits += self._segment_bits(now, inclusive=False)
        self._cap_since = max(self._cap_since, now)

    # ------------------------------------------------------------------ results

    @property
    def lost(self) -> int:
        """Offered packets that never arrived (model, blackout and queue); duplicate copies
        the queue dropped are not counted here."""
        return self.lost_packets

    def summary(self, *, end: float) -> dict[str, Any]:
        """JSON-ready figures for the interval from ``start`` to ``end``."""
        capacity_bits = self._capacity_bits + self._segment_bits(end, inclusive=True)
        duration = max(end - self.start, 1e-9)
        offered = self.packets_offered
        return {
            "packets_offered": offered,
            "bytes_offered": self.bytes_offered,
            "packets_delivered": self.packets_delivered,
            "bytes_delivered": self.bytes_delivered,
            "lost_by_model": self.lost_by_model,
            "lost_down": self.lost_down,
            "dropped_by_queue": self.dropped_by_queue,
            "dropped_by_aqm": self.dropped_by_aqm,
            "duplicated": self.duplicated,
            "dropped_by_reader": self.dropped_by_reader,
            "loss_rate": round(self.lost / offered, 6) if offered else 0.0,
            "mean_burst_length": (round(self.lost_in_runs / self.loss_runs, 4)
                                  if self.loss_runs else None),
            "delay_ms": self.delay.percentiles_ms((50, 95, 99)),
            "queue_delay_ms": self.queue_delay.percentiles_ms((50, 95)),
            "self_inflicted_delay_ms": self.self_inflicted.percentiles_ms((50, 95)),
            "throughput_kbps": round(self.bytes_delivered * 8 / duration / 1000.0, 3),
            "capacity_kbps": (None if self._unlimited and capacity_bits == 0
                              else round(capacity_bits / duration / 1000.0, 3)),
            "duration_s": round(duration, 6),
        }
