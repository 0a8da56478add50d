"""How far could a reactive sender get on a capacity trace? An idealised reference.

edgewire's estimators learn the path from feedback: they see what the bottleneck
delivered and how much queue the packets met, about one feedback round trip late, and set
a rate from that. ``edgewire bench bwe`` measures how well they do; this module answers
the question that comes next: how well could a sender of that kind do at all, if it
measured perfectly?

It replays a Mahimahi trace through a fluid model of the bottleneck (steps of 1 ms; a
FIFO of ``queue_packets`` x ``packet_bytes``, the excess dropped; capacity unused in a
millisecond is lost, as in netsim) and drives it with an idealised sender that knows,
exactly and ``lag`` seconds late,

* ``knowledge="delivered"``: what the bottleneck delivered over the last ``span``, and
  the queue: everything feedback can tell, without noise, loss or clock error;
* ``knowledge="capacity"``: what the bottleneck could have delivered over the last
  ``span`` (an oracle of the past, never of the future), and the queue.

It sends at ``max(0, gain x known rate - known queue / drain)``, after a startup that
doubles the known rate until a queue of ``K_STARTUP_QUEUE`` shows (the law of the
``delivery`` estimator, with its ``queue_target`` folded into ``gain``). Sweeping
``gain``, ``span`` and ``drain`` (:data:`K_GAINS`, :data:`K_SPANS`, :data:`K_DRAINS`)
gives a frontier: the best utilisation reached at each p95 queueing delay.

It is a reference, not a proof: a sender that forecasts the capacity, or keeps sending
while the feedback path alone is dark (the model's knowledge never stops), can do better;
and netsim's packets, pacing, ACKs and feedback cost some of what the fluid gets. The
distance from edgewire's measured point to the ``delivered`` frontier is what better
measurement and control could still gain; the distance between the two frontiers is what
seeing only delivered bytes costs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgewire.netsim.trace import K_OPPORTUNITY_BYTES, CapacityTrace

__all__ = [
    "K_DRAINS",
    "K_GAINS",
    "K_SPANS",
    "BoundPoint",
    "ReactiveBound",
    "bound_summary",
    "reactive_bound",
    "run_policies",
]

#: Swept parameters of the idealised sender's law (see the module docstring).
K_GAINS = (0.9, 1.0, 1.1, 1.25, 1.5)
K_SPANS = (0.02, 0.05, 0.1)  # seconds
K_DRAINS = (0.05, 0.1, 0.2)  # seconds
#: Startup ends once the known queue holds this long at the known rate (seconds).
K_STARTUP_QUEUE = 0.01
#: Rate before any knowledge (bits/s): edgewire's start rate.
K_START_BPS = 300_000.0
#: Byte quantiles over which the delay percentiles are taken.
K_DELAY_SAMPLES = 20_000

Knowledge = Literal["delivered", "capacity"]


@dataclass(frozen=True, slots=True)
class BoundPoint:
    """One law of the sweep and what it reached."""

    gain: float
    span_s: float
    drain_s: float
    utilization: float
    """Delivered bytes / capacity bytes over the run."""
    queue_delay_p95_ms: float
    """95th percentile of the queueing delay over delivered bytes."""
    queue_delay_p50_ms: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {"gain": self.gain, "span_s": self.span_s, "drain_s": self.drain_s,
                "utilization": round(self.utilization, 4),
                "queue_delay_p95_ms": round(self.queue_delay_p95_ms, 1),
                "queue_delay_p50_ms": round(self.queue_delay_p50_ms, 1)}


@dataclass(frozen=True, slots=True)
class ReactiveBound:
    """The sweep's result for one trace and one kind of knowledge."""

    knowledge: str
    lag_s: float
    points: tuple[BoundPoint, ...]
    """Every law of the sweep."""

    def frontier(self) -> list[BoundPoint]:
        """The points no other point beats in both utilisation and p95 delay, by delay."""
        out: list[BoundPoint] = []
        for p in sorted(self.points, key=lambda p: (p.queue_delay_p95_ms, -p.utilization)):
            if not out or p.utilization > out[-1].utilization:
                out.append(p)
        return out

    def best_within(self, p95_ms: float) -> BoundPoint | None:
        """The highest utilisation with a p95 queueing delay of at most ``p95_ms``."""
        ok = [p for p in self.points if p.queue_delay_p95_ms <= p95_ms]
        return max(ok, key=lambda p: p.utilization) if ok else None


def _capacity_per_ms(trace: CapacityTrace, seconds: float) -> np.ndarray:
    """Bytes the bottleneck can deliver in each millisecond of ``[0, seconds)``."""
    n = round(seconds * 1000)
    times = np.asarray(trace.times_ms, dtype=np.int64)
    reps = n // trace.period_ms + 1
    allt = (times[None, :] + trace.period_ms * np.arange(reps)[:, None]).ravel()
    allt = allt[allt < n]
    return np.bincount(allt, minlength=n)[:n].astype(np.float64) * K_OPPORTUNITY_BYTES


def run_policies(capacity: np.ndarray, *, gains: np.ndarray, spans_ms: np.ndarray,
                 drains_ms: np.ndarray, lag_ms: int, knowledge: Knowledge,
                 queue_bytes: float, rtt_ms: int = 50) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Run one idealised sender per entry of ``gains``/``spans_ms``/``drains_ms`` (equal
    lengths) over ``capacity`` (bytes per ms), each knowing the path ``lag_ms`` late.
    Returns utilisation, p95 and p50 queueing delay (ms), one per sender."""
    k_n = len(gains)
    n = len(capacity)
    if not (len(spans_ms) == len(drains_ms) == k_n) or k_n == 0:
        raise ValueError("gains, spans_ms and drains_ms must be non-empty and equally long")
    ccum = np.concatenate([[0.0], np.cumsum(capacity)])
    dcum = np.zeros((k_n, n + 1))
    qhist = np.zeros((k_n, n))
    arrived = np.zeros((k_n, n))
    rows = np.arange(k_n)
    rate = np.full(k_n, K_START_BPS / 8 / 1000)  # bytes per ms
    startup = np.ones(k_n, dtype=bool)
    q = np.zeros(k_n)
    spans = spans_ms.astype(np.int64)
    for t in range(n):
        k = t - lag_ms
        if k >= 1:
            lo = np.maximum(k - spans, 0)
            width = (k - lo).astype(np.float64)
            if knowledge == "capacity":
                known = (ccum[k] - ccum[lo]) / width
            else:
                known = (dcum[:, k] - dcum[rows, lo]) / width
            queue = qhist[:, k - 1]
            grown = np.maximum(rate, 2.0 * known)
            steady = np.maximum(0.0, gains * known - queue / drains_ms)
            rate = np.where(startup, grown, steady)
            startup &= ~(queue > K_STARTUP_QUEUE * 1000 * known)
        elif t and t % rtt_ms == 0:
            rate = rate * 2.0  # before any knowledge: double each round trip
        q = q + rate
        over = np.maximum(q - queue_bytes, 0.0)
        q = q - over
        arrived[:, t] = rate - over
        served = np.minimum(q, capacity[t])
        q = q - served
        qhist[:, t] = q
        dcum[:, t + 1] = dcum[:, t] + served
    total = capacity.sum()
    util = dcum[:, -1] / total if total > 0 else np.zeros(k_n)
    p95 = np.zeros(k_n)
    p50 = np.zeros(k_n)
    acum = np.cumsum(arrived, axis=1)
    for i in range(k_n):
        done = dcum[i, -1]
        if done <= 0:
            continue
        # the delay of a byte: when the departure curve reaches the level at which the
        # arrival curve put it (FIFO)
        levels = (np.arange(K_DELAY_SAMPLES) + 0.5) * (done / K_DELAY_SAMPLES)
        delay = (np.searchsorted(dcum[i, 1:], levels)
                 - np.searchsorted(acum[i], levels)).astype(np.float64)
        p95[i], p50[i] = np.percentile(delay, [95, 50])
    return util, p95, p50


def reactive_bound(trace: CapacityTrace, *, seconds: float = 40.0, lag: float = 0.075,
                   knowledge: Knowledge = "delivered", queue_packets: int = 100,
                   packet_bytes: int = 1200) -> ReactiveBound:
    """Sweep the idealised sender's law over ``seconds`` of ``trace`` (module docstring).

    ``lag``: how late the sender learns (the path's RTT plus a feedback interval);
    ``queue_packets`` x ``packet_bytes``: the bottleneck queue. The knowledge always
    arrives: a return path that goes dark (ATT's uplink, 10 of the bench's first 40 s) is
    not modelled, so on such a trace the reference is optimistic."""
    if not (np.isfinite(seconds) and 0 < seconds <= 3600):
        raise ValueError(f"seconds must be in (0, 3600], got {seconds!r}")
    if not (np.isfinite(lag) and 0 <= lag <= 10):
        raise ValueError(f"lag must be in [0, 10] s, got {lag!r}")
    if knowledge not in ("delivered", "capacity"):
        raise ValueError(f"knowledge must be 'delivered' or 'capacity', not {knowledge!r}")
    if queue_packets < 1 or packet_bytes < 1:
        raise ValueError("queue_packets and packet_bytes must be at least 1")
    capacity = _capacity_per_ms(trace, seconds)
    lag_ms = round(lag * 1000)
    grid = list(itertools.product(K_GAINS, K_SPANS, K_DRAINS))
    util, p95, p50 = run_policies(
        capacity,
        gains=np.array([g for g, _, _ in grid]),
        spans_ms=np.array([round(s * 1000) for _, s, _ in grid]),
        drains_ms=np.array([d * 1000 for _, _, d in grid]),
        lag_ms=lag_ms, knowledge=knowledge,
        queue_bytes=float(queue_packets * packet_bytes))
    points = tuple(BoundPoint(g, s, d, float(u), float(a), float(b))
                   for (g, s, d), u, a, b in zip(grid, util, p95, p50, strict=True))
    return ReactiveBound(knowledge=knowledge, lag_s=lag, points=points)


def bound_summary(bound: ReactiveBound, goal_ms: float) -> dict[str, Any]:
    """JSON-ready: the best point within ``goal_ms`` and the frontier."""
    best = bound.best_within(goal_ms)
    return {"knowledge": bound.knowledge, "lag_ms": round(bound.lag_s * 1000, 1),
            "best_within_goal": best.as_dict() if best else None,
            "frontier": [p.as_dict() for p in bound.frontier()]}
