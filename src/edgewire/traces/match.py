"""Two vantage points of the same traffic: one-way delay, delay variation and where the
loss happened.

Packets seen at the sender side are matched to packets seen at the receiver side: in two
captures by a hash of the UDP payload (addresses may differ across a NAT or relay), in two
edgewire endpoint logs by (channel, sequence number). Both inputs are streamed together in
time order; a sent packet still unmatched ``max_delay_s`` after it was sent is final as
lost, so the pending table is bounded by rate x ``max_delay_s`` and by ``max_pending``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewire.traces.capture import iter_chunks
from edgewire.traces.decode import decode_udp
from edgewire.traces.problems import Problems
from edgewire.traces.series import BinnedSeries, LossTracker

__all__ = ["MatchConfig", "capture_packets", "match_streams"]

#: one observation: time, matching key, flow name, size in bytes.
Obs = tuple[float, Hashable, str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchConfig:
    """Parameters of a two-point comparison."""

    max_delay_s: float = 10.0
    """A sent packet not seen at the receiver within this long is lost."""
    skew_s: float = 1.0
    """How far the receiver's clock may run behind the sender's."""
    max_pending: int = 1_000_000
    """Sent packets awaiting their match; the oldest are dropped past this (counted)."""
    bin_s: float = 1.0
    """Initial bin width of the delay series, seconds."""
    max_flows: int = 256
    """Sender-side flows reported; packets of further flows are counted only."""


def capture_packets(path: str | Path, problems: Problems) -> Iterator[Obs]:
    """The UDP packets of a capture as ``(time, payload hash, flow, size)`` in file order."""
    noise: dict[str, int] = {}
    for chunk in iter_chunks(path, problems):
        pk = decode_udp(chunk, problems, noise)
        raw = chunk.data.tobytes()
        names: dict[bytes, str] = {}
        keys = pk.key
        for i, (t, a, n, size) in enumerate(zip(pk.ts.tolist(), pk.poff.tolist(),
                                                pk.pcap.tolist(), pk.plen.tolist(),
                                                strict=True)):
            k = keys[i].tobytes()
            name = names.get(k)
            if name is None:
                name = names[k] = _flow_name(k)
            yield t, (size, hash(raw[a:a + n])), name, size


def _flow_name(key: bytes) -> str:
    import ipaddress

    src = ipaddress.IPv6Address(key[0:16])
    dst = ipaddress.IPv6Address(key[16:32])
    return (f"{src.ipv4_mapped or src}:{int.from_bytes(key[32:34], 'big')} -> "
            f"{dst.ipv4_mapped or dst}:{int.from_bytes(key[34:36], 'big')}")


class _FlowStats:
    def __init__(self, origin: float, bin_s: float) -> None:
        self.sent = 0
        self.matched = 0
        self.top = -1
        self.loss = LossTracker(start=0)
        self.delay = BinnedSeries(origin, bin_s, 512)
        self.ipdv = BinnedSeries(origin, bin_s, 512)
        self.d_min = float("inf")
        self.d_max = float("-inf")
        self.d_sum = 0.0
        self.hist = np.zeros(_DELAY_BINS, dtype=np.int64)
        self.prev: float | None = None
        self.ipdv_abs_sum = 0.0
        self.ipdv_max = 0.0
        self._t: list[float] = []
        self._d: list[float] = []
        self._v: list[float] = []

    def add(self, t_sent: float, delay: float, index: int) -> None:
        self.matched += 1
        self.top = max(self.top, index)
        self.loss.add(index)
        self.d_min = min(self.d_min, delay)
        self.d_max = max(self.d_max, delay)
        self.d_sum += delay
        v = 0.0 if self.prev is None else abs(delay - self.prev)
        if self.prev is not None:
            self.ipdv_abs_sum += v
            self.ipdv_max = max(self.ipdv_max, v)
        self.prev = delay
        self._t.append(t_sent)
        self._d.append(delay)
        self._v.append(v)
        if len(self._t) >= 4096:  # numpy per batch, not per packet
            self.flush()

    def flush(self) -> None:
        if self._t:
            t, d = np.array(self._t), np.array(self._d)
            self.delay.add(t, d * 1000.0)
            self.ipdv.add(t, np.array(self._v) * 1000.0)
            b = np.clip(np.floor((np.log10(np.maximum(d, 1e-9)) + 6) * 50), 0,
                        _DELAY_BINS - 1).astype(np.int64)
            self.hist += np.bincount(b, minlength=_DELAY_BINS)
            self._t.clear()
            self._d.clear()
            self._v.clear()

    def summary(self) -> dict[str, Any]:
        self.flush()
        # unmatched packets sent after the last one that arrived may still have been in
        # flight when the receiver's capture stopped: unresolved, neither lost nor received
        unresolved = self.sent - 1 - self.top
        self.loss.flush(end=self.top + 1)
        bursts = self.loss.summary()
        resolved = self.sent - unresolved
        lost = resolved - self.matched
        out: dict[str, Any] = {
            "sent": self.sent, "received": self.matched, "lost_on_path": lost,
            "unresolved_at_end": unresolved,
            "loss_rate": lost / resolved if resolved else 0.0,
            "burst_mean": bursts["burst_mean"], "burst_max": bursts["burst_max"],
            "burst_hist": bursts["burst_hist"], "gilbert": bursts["gilbert"],
            "delay_ms": None, "ipdv_ms": None,
        }
        if self.matched:
            cdf = np.cumsum(self.hist) / self.hist.sum()
            edges = 10.0 ** ((np.arange(_DELAY_BINS) + 1) / 50 - 6) * 1000.0
            out["delay_ms"] = {
                "min": self.d_min * 1000.0, "mean": self.d_sum / self.matched * 1000.0,
                "max": self.d_max * 1000.0,
                # a bin's upper edge, within the exact extremes
                **{f"p{q}": min(max(float(edges[np.searchsorted(cdf, q / 100)]),
                                    self.d_min * 1000.0), self.d_max * 1000.0)
                   for q in (50, 95, 99)}}
            if self.matched > 1:
                out["ipdv_ms"] = {"mean_abs": self.ipdv_abs_sum / (self.matched - 1) * 1000.0,
                                  "max": self.ipdv_max * 1000.0}
        return out


_DELAY_BINS = 400  # 50 per decade from 1 µs to 100 s: percentiles within 5 %


def match_streams(sender: Iterator[Obs], receiver: Iterator[Obs],
                  cfg: MatchConfig | None = None) -> dict[str, Any]:
    """Match two time-ordered observation streams; per sender flow: sent, received, lost
    on the path between the two vantage points, burst lengths, one-way delay and IPDV."""
    cfg = cfg or MatchConfig()
    pending: dict[Hashable, deque[tuple[float, str, int]]] = {}
    order: deque[tuple[float, Hashable]] = deque()
    flows: dict[str, _FlowStats] = {}
    counters = {"unmatched_received": 0, "pending_overflow": 0, "untracked_sent": 0}
    n_pending = 0
    nxt = next(sender, None)
    origin: float | None = None
    for t_r, key_r, _name_r, _size_r in receiver:
        while nxt is not None and nxt[0] <= t_r + cfg.skew_s:
            t_s, key_s, name, _size = nxt
            if origin is None:
                origin = t_s
            fs = flows.get(name)
            if fs is None:
                if len(flows) >= cfg.max_flows:
                    counters["untracked_sent"] += 1
                    nxt = next(sender, None)
                    continue
                fs = flows[name] = _FlowStats(origin, cfg.bin_s)
            pending.setdefault(key_s, deque()).append((t_s, name, fs.sent))
            order.append((t_s, key_s))
            fs.sent += 1
            n_pending += 1
            nxt = next(sender, None)
        # expire: oldest first; a popped entry may already be matched (then it is skipped)
        while order and (order[0][0] < t_r - cfg.max_delay_s or n_pending > cfg.max_pending):
            t_old, k_old = order.popleft()
            q = pending.get(k_old)
            if q and q[0][0] == t_old:
                q.popleft()
                n_pending -= 1
                if t_old >= t_r - cfg.max_delay_s:
                    counters["pending_overflow"] += 1
                if not q:
                    del pending[k_old]
        q = pending.get(key_r)
        if not q:
            counters["unmatched_received"] += 1
            continue
        t_s, name, index = q.popleft()
        n_pending -= 1
        if not q:
            del pending[key_r]
        flows[name].add(t_s, t_r - t_s, index)
    rest = itertools.chain([nxt] if nxt is not None else [], sender)
    for t_s, _key, name, _size in rest:  # sent after the receiver's capture ended
        fs = flows.get(name)
        if fs is None and len(flows) < cfg.max_flows:
            fs = flows[name] = _FlowStats(origin if origin is not None else t_s, cfg.bin_s)
        if fs is None:
            counters["untracked_sent"] += 1
        else:
            fs.sent += 1
    return {"flows": {name: fs.summary() for name, fs in flows.items()}, **counters,
            "_series": {name: (fs.delay, fs.ipdv) for name, fs in flows.items()}}
