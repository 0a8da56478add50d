"""The ``bwe`` part of a netsim run: the sender's estimate against the link's capacity.

A :class:`BweSampler` looks at both directions every sample interval of virtual time: the
sending session's bandwidth estimate, the capacity the link offered and the bytes it
delivered in the interval, and the queueing delay of the packets that left its bottleneck.
``summary`` turns that into the run JSON's ``bwe`` table (docs/NETSIM.md) and ``plot``
draws it (matplotlib, imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgewire.netsim.stats import LinkStats
from edgewire.transport import Session

__all__ = ["BweSampler", "plot_timeline", "pyplot", "save_figure"]

#: Interval between two timeline samples, at least (longer runs sample less often so a
#: timeline never exceeds K_MAX_SAMPLES rows).
K_SAMPLE_INTERVAL = 0.1  # seconds
K_MAX_SAMPLES = 2000


class BweSampler:
    """Samples one link direction (its statistics: netsim's ``Link.stats``, or the real-time
    relay's ``link_stats``) and the session sending into it."""

    def __init__(self, stats: LinkStats, sender: Callable[[], Session | None], *,
                 duration_s: float) -> None:
        self.stats = stats
        self._sender = sender
        self.interval = max(K_SAMPLE_INTERVAL, duration_s / K_MAX_SAMPLES)
        self.rows: list[dict[str, float | None]] = []
        self._last_t = 0.0
        self._last_cap = 0.0
        self._last_bytes = 0
        self.capacity_bits_at_stop: float | None = None

    def sample(self, now: float) -> None:
        """Record one row (call every ``interval`` of virtual time)."""
        stats = self.stats
        dt = now - self._last_t
        cap = stats.capacity_bits_until(now)
        delivered = stats.bytes_delivered
        qd_mean, qd_max = stats.take_recent_queue_delay()
        session = self._sender()
        estimate = (session.bandwidth_estimate_bps
                    if session is not None and session.ready else None)
        if dt > 0:
            self.rows.append({
                "t": round(now, 3),
                "estimate_kbps": None if estimate is None else round(estimate / 1000, 1),
                "capacity_kbps": (None if cap is None
                                  else round((cap - self._last_cap) / dt / 1000, 1)),
                "throughput_kbps": round((delivered - self._last_bytes) * 8 / dt / 1000, 1),
                "queue_delay_ms": None if qd_mean is None else round(qd_mean * 1000, 2),
                "queue_delay_max_ms": None if qd_max is None else round(qd_max * 1000, 2),
            })
        self._last_t = now
        self._last_cap = cap or 0.0
        self._last_bytes = delivered

    def mark_stop(self, now: float) -> None:
        """The traffic stops: capacity up to here is what utilization is measured against."""
        self.capacity_bits_at_stop = self.stats.capacity_bits_until(now)

    def summary(self, *, media_bytes: int, start_s: float, stop_s: float,
                state: dict[str, Any] | None) -> dict[str, Any]:
        """The ``bwe`` figures of this direction: estimate percentiles over the traffic,
        utilization (``media_bytes`` delivered ÷ capacity up to ``stop_s``), queueing
        delay percentiles, the estimator's final state and the timeline."""
        values = [float(r["estimate_kbps"]) for r in self.rows
                  if r["estimate_kbps"] is not None and r["t"] is not None
                  and start_s <= float(r["t"]) <= stop_s]
        est = np.asarray(values, dtype=np.float64)
        cap = self.capacity_bits_at_stop
        return {
            "estimate_kbps": ({"mean": round(float(est.mean()), 1),
                               "p5": round(float(np.percentile(est, 5)), 1),
                               "p95": round(float(np.percentile(est, 95)), 1)}
                              if est.size else None),
            "utilization": (round(media_bytes * 8 / cap, 4) if cap else None),
            "queue_delay_ms": self.stats.queue_delay.percentiles_ms((50, 95)),
            "state": state,
            "timeline": self.rows,
        }


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend; a clear error without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the message is the point
        from edgewire.errors import LocalProtocolError
        raise LocalProtocolError(
            "plots need matplotlib: pip install 'edgewire[plot]'") from None
    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (PNG by the suffix, 110 dpi; folders made) and close ``fig``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_timeline(bwe: dict[str, Any], path: Path, *, title: str) -> Path:
    """Draw one direction's timeline: estimate, capacity and throughput over time above,
    queueing delay below. Needs matplotlib (the ``plot`` extra)."""
    plt = pyplot()
    rows = bwe["timeline"]
    t = [r["t"] for r in rows]

    def col(key: str) -> list[float]:
        return [np.nan if r[key] is None else r[key] for r in rows]

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6),
                                      gridspec_kw={"height_ratios": [2, 1]})
    top.plot(t, col("capacity_kbps"), label="capacity", color="0.6", drawstyle="steps-post")
    top.plot(t, col("throughput_kbps"), label="delivered", color="tab:green", alpha=0.7)
    top.plot(t, col("estimate_kbps"), label="estimate", color="tab:blue")
    top.set_ylabel("kbit/s")
    top.legend(loc="upper right")
    top.set_title(title)
    top.grid(alpha=0.3)
    bottom.plot(t, col("queue_delay_ms"), label="mean", color="tab:red")
    bottom.plot(t, col("queue_delay_max_ms"), label="max", color="tab:red", alpha=0.35)
    bottom.set_ylabel("queueing delay (ms)")
    bottom.set_xlabel("time (s)")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    return save_figure(fig, path)
