"""UDP flows: incremental per-flow aggregates, classification (QUIC, RTP, plain UDP).

A flow is one direction of a UDP 5-tuple. Per chunk, packets are grouped by flow with one
``np.unique`` and each flow's share is folded into its :class:`Flow` with array operations;
only RTP streams take a per-packet Python path. At most ``max_flows`` flows are tracked;
packets of further flows are counted, not analysed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewire.traces.decode import UdpPackets
from edgewire.traces.quic import QuicState, is_known_version
from edgewire.traces.rtp import STATIC_CLOCK_RATES, RtpStream, looks_like_rtcp, looks_like_rtp
from edgewire.traces.series import (
    K_IAT_BINS,
    K_SIZE_BINS,
    BinnedSeries,
    iat_bin,
    size_bin,
)

__all__ = ["AnalysisConfig", "Flow", "FlowTable"]

_HEAD = 12  # payload bytes gathered per packet: a full RTP fixed header


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisConfig:
    """Parameters of a capture analysis."""

    bin_s: float = 1.0
    """Initial width of throughput and jitter bins, seconds (doubles past ``max_bins``)."""
    max_bins: int = 1024
    """Bins per time series."""
    gap_s: float = 0.5
    """A silence longer than this inside a flow is reported as a gap (outage), seconds."""
    max_flows: int = 4096
    """Flows tracked; packets of further flows are only counted."""
    max_ssrc: int = 16
    """RTP streams (SSRCs) tracked per flow."""
    reorder_window: int = 4096
    """Sequence numbers a late packet may trail the highest one and still count."""
    classify_packets: int = 8
    """Packets looked at before a flow is classified."""
    clock_rates: dict[int, int] = field(default_factory=dict)
    """RTP clock rates (Hz) of dynamic payload types, by payload type."""
    max_gaps: int = 64
    """Gaps listed per flow (the longest kept); all are counted."""


class Flow:
    """One direction of a UDP 5-tuple and everything measured on it."""

    def __init__(self, key: bytes, origin: float, cfg: AnalysisConfig) -> None:
        src = ipaddress.IPv6Address(key[0:16])
        dst = ipaddress.IPv6Address(key[16:32])
        self.src = str(src.ipv4_mapped or src)
        self.dst = str(dst.ipv4_mapped or dst)
        self.sport = int.from_bytes(key[32:34], "big")
        self.dport = int.from_bytes(key[34:36], "big")
        self.cfg = cfg
        self.kind = "pending"
        self.packets = 0
        self.bytes = 0
        self.first = float("inf")
        self.last = float("-inf")
        self._prev_t: float | None = None
        self.size_hist = np.zeros(K_SIZE_BINS, dtype=np.int64)
        self.iat_hist = np.zeros(K_IAT_BINS, dtype=np.int64)
        self.gaps = 0
        self.gap_total_s = 0.0
        self.gap_list: list[tuple[float, float]] = []
        self.series = BinnedSeries(origin, cfg.bin_s, cfg.max_bins)
        self.quic = QuicState()
        self.rtp: dict[int, RtpStream] = {}
        self.rtp_other = 0
        """RTP packets of SSRCs past ``max_ssrc``."""
        self.rtcp_packets = 0
        self._origin = origin
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_n = 0

    def update(self, ts: np.ndarray, plen: np.ndarray, head: np.ndarray,
               hlen: np.ndarray, heads_long: list[bytes]) -> None:
        """Fold packets of this flow in (capture order). ``head``: their first payload
        bytes (n x 12), ``hlen``: how many of those were captured, ``heads_long``: the
        payload starts of packets that look like QUIC long headers."""
        n = len(ts)
        self.packets += n
        self.bytes += int(plen.sum())
        self.first = min(self.first, float(ts.min()))
        self.last = max(self.last, float(ts.max()))
        self.size_hist += np.bincount(size_bin(plen), minlength=K_SIZE_BINS)
        prev = ts[0] if self._prev_t is None else self._prev_t
        gaps = np.diff(ts, prepend=prev)
        if self._prev_t is None:
            gaps = gaps[1:]
        self._prev_t = float(ts[-1])
        if gaps.size:
            self.iat_hist += np.bincount(iat_bin(gaps), minlength=K_IAT_BINS)
            long_gaps = np.flatnonzero(gaps > self.cfg.gap_s)
            if long_gaps.size:
                self._add_gaps(ts, gaps, long_gaps, n)
        self.series.add(ts, plen.astype(np.float64))
        b0 = head[:, 0].astype(np.int64)
        if self.kind == "pending":
            self._pending.append((ts, head, hlen))
            self._pending_n += n
            quic = self._quic_mask(head, hlen)
            if quic.any():
                self.kind = "quic"
            elif self._pending_n >= self.cfg.classify_packets:
                self._classify()
            if self.kind == "pending":
                self.quic.update(ts, b0, heads_long)
                return
            pend, self._pending, self._pending_n = self._pending, [], 0
            if self.kind in ("rtp", "rtcp"):
                for p_ts, p_head, p_hlen in pend:
                    self._rtp(p_ts, p_head, p_hlen)
            else:  # the earlier pending chunks were already given to the QUIC state
                self.quic.update(ts, b0, heads_long)
            return
        self._by_kind(ts, head, hlen, heads_long)

    def _add_gaps(self, ts: np.ndarray, gaps: np.ndarray, idx: np.ndarray, n: int) -> None:
        self.gaps += len(idx)
        self.gap_total_s += float(gaps[idx].sum())
        shift = len(ts) - len(gaps)  # gaps[i] ends at ts[i + shift]
        for i in idx.tolist():
            self.gap_list.append((float(ts[i + shift] - gaps[i] - self._origin),
                                  float(gaps[i])))
        if len(self.gap_list) > self.cfg.max_gaps:
            self.gap_list.sort(key=lambda g: -g[1])
            del self.gap_list[self.cfg.max_gaps:]

    def _by_kind(self, ts: np.ndarray, head: np.ndarray, hlen: np.ndarray,
                 heads_long: list[bytes]) -> None:
        b0 = head[:, 0].astype(np.int64)
        if self.kind in ("udp", "quic"):
            if self.kind == "udp" and self._quic_mask(head, hlen).any():
                self.kind = "quic"  # a capture that began mid-connection
            self.quic.update(ts, b0, heads_long)
        elif self.kind in ("rtp", "rtcp"):
            self._rtp(ts, head, hlen)

    @staticmethod
    def _quic_mask(head: np.ndarray, hlen: np.ndarray) -> np.ndarray:
        b0 = head[:, 0].astype(np.int64)
        version = (head[:, 1:5].astype(np.int64) << np.array([24, 16, 8, 0])).sum(axis=1)
        out: np.ndarray = (hlen >= 7) & ((b0 & 0xC0) == 0xC0) & is_known_version(version)
        return out

    def _classify(self) -> None:
        head = np.concatenate([p[1] for p in self._pending])
        hlen = np.concatenate([p[2] for p in self._pending])
        b0, b1 = head[:, 0].astype(np.int64), head[:, 1].astype(np.int64)
        full = hlen >= _HEAD
        rtp = full & looks_like_rtp(b0, b1)
        rtcp = (hlen >= 8) & looks_like_rtcp(b0, b1)
        n = len(head)
        if n >= 2 and rtp.sum() >= 0.9 * n:
            ssrc = _be32(head[rtp, 8:12])
            _, counts = np.unique(ssrc, return_counts=True)
            self.kind = "rtp" if counts.max() >= 0.8 * rtp.sum() else "udp"
        elif n >= 2 and rtcp.sum() >= 0.9 * n:
            self.kind = "rtcp"
        else:
            self.kind = "udp"

    def _rtp(self, ts: np.ndarray, head: np.ndarray, hlen: np.ndarray) -> None:
        b0, b1 = head[:, 0].astype(np.int64), head[:, 1].astype(np.int64)
        rtcp = looks_like_rtcp(b0, b1)
        self.rtcp_packets += int(rtcp.sum())
        ok = (hlen >= _HEAD) & looks_like_rtp(b0, b1)
        seq = ((head[:, 2].astype(np.int64) << 8) | head[:, 3])[ok].tolist()
        rts = _be32(head[:, 4:8])[ok].tolist()
        ssrc = _be32(head[:, 8:12])[ok].tolist()
        pt = (b1 & 0x7F)[ok].tolist()
        streams = self.rtp
        for t, s, r, x, p in zip(ts[ok].tolist(), seq, rts, ssrc, pt, strict=True):
            st = streams.get(x)
            if st is None:
                if len(streams) >= self.cfg.max_ssrc:
                    self.rtp_other += 1
                    continue
                rate = self.cfg.clock_rates.get(p, STATIC_CLOCK_RATES.get(p))
                st = streams[x] = RtpStream(x, p, clock_rate=rate, origin=self._origin,
                                            reorder_window=self.cfg.reorder_window,
                                            series_bin_s=self.cfg.bin_s)
            st.add(t, s, r)

    def finish(self) -> None:
        """Classify a flow that ended before ``classify_packets`` packets."""
        if self.kind == "pending":
            if self._pending_n:
                self._classify()
            else:
                self.kind = "udp"
            pend, self._pending, self._pending_n = self._pending, [], 0
            if self.kind in ("rtp", "rtcp"):
                for p_ts, p_head, p_hlen in pend:
                    self._rtp(p_ts, p_head, p_hlen)

    def summary(self) -> dict[str, Any]:
        """The JSON object of this flow."""
        duration = max(self.last - self.first, 0.0)
        streams = sorted((s.summary() for s in self.rtp.values()),
                         key=lambda s: -int(s["packets"]))
        kind = "rtp" if self.kind == "rtcp" else self.kind
        out: dict[str, Any] = {
            "src": self.src, "dst": self.dst, "sport": self.sport, "dport": self.dport,
            "kind": kind, "packets": self.packets, "bytes": self.bytes,
            "start_s": self.first - self._origin, "duration_s": duration,
            "throughput_kbps": self.bytes * 8 / duration / 1000 if duration > 0 else 0.0,
            "size_bytes": _hist_stats(self.size_hist, (np.arange(K_SIZE_BINS) + 0.5) * 16),
            "gaps": {"count": self.gaps, "total_s": self.gap_total_s,
                     "longest": [{"start_s": a, "length_s": b}
                                 for a, b in sorted(self.gap_list, key=lambda g: -g[1])[:8]]},
            "rtp": _rtp_brief(streams[0]) if streams else None,
        }
        if streams:
            out["rtp_streams"] = streams
            out["rtp_untracked_packets"] = self.rtp_other
        if self.kind in ("rtp", "rtcp"):
            out["rtcp_packets"] = self.rtcp_packets
        if self.kind == "quic":
            out["quic"] = self.quic.summary()
        return out


def _rtp_brief(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("ssrc", "packets", "lost", "loss_rate", "max_delta_ms", "jitter_ms_max",
            "jitter_ms_mean", "burst_mean")
    return {k: s[k] for k in keys}


def _hist_stats(hist: np.ndarray, centres: np.ndarray) -> dict[str, float | None]:
    total = int(hist.sum())
    if not total:
        return {"mean": None, "p50": None, "p95": None}
    cdf = np.cumsum(hist) / total
    return {"mean": float((hist * centres).sum() / total),
            "p50": float(centres[np.searchsorted(cdf, 0.5)]),
            "p95": float(centres[np.searchsorted(cdf, 0.95)])}


def _be32(b: np.ndarray) -> np.ndarray:
    out: np.ndarray = (b.astype(np.int64) << np.array([24, 16, 8, 0])).sum(axis=1)
    return out


class FlowTable:
    """Every flow of one capture, fed chunk by chunk."""

    def __init__(self, cfg: AnalysisConfig) -> None:
        self.cfg = cfg
        self.flows: dict[bytes, Flow] = {}
        self.untracked_packets = 0
        self.untracked_bytes = 0
        self.origin: float | None = None
        self.total: BinnedSeries | None = None

    def add(self, pk: UdpPackets, data: np.ndarray) -> None:
        """Fold the UDP packets of one chunk (``data``: the chunk's buffer) in."""
        n = len(pk.ts)
        if not n:
            return
        if self.origin is None:
            self.origin = float(pk.ts.min())
            self.total = BinnedSeries(self.origin, self.cfg.bin_s, self.cfg.max_bins)
        assert self.total is not None
        self.total.add(pk.ts, pk.plen.astype(np.float64))
        cols = np.minimum(pk.poff[:, None] + np.arange(_HEAD), len(data) - 1)
        head = data[cols]
        head[np.arange(_HEAD)[None, :] >= pk.pcap[:, None]] = 0
        uniq, first, inv = np.unique(pk.key, return_index=True, return_inverse=True)
        if len(uniq) == 1:
            groups = [np.arange(n)]
        else:
            order = np.argsort(inv, kind="stable")
            bounds = np.cumsum(np.bincount(inv, minlength=len(uniq)))[:-1]
            groups = np.split(order, bounds)
        for j, idx in enumerate(groups):
            key = bytes(pk.key[first[j]].tobytes())
            flow = self.flows.get(key)
            if flow is None:
                if len(self.flows) >= self.cfg.max_flows:
                    self.untracked_packets += len(idx)
                    self.untracked_bytes += int(pk.plen[idx].sum())
                    continue
                flow = self.flows[key] = Flow(key, self.origin, self.cfg)
            fh = head[idx] if len(groups) > 1 else head
            hl = pk.pcap[idx] if len(groups) > 1 else pk.pcap
            long_idx = np.flatnonzero(Flow._quic_mask(fh, hl))
            heads_long = [bytes(data[int(pk.poff[idx[i]]):int(pk.poff[idx[i]])
                                     + min(int(hl[i]), 64)]) for i in long_idx.tolist()]
            flow.update(pk.ts[idx] if len(groups) > 1 else pk.ts,
                        pk.plen[idx] if len(groups) > 1 else pk.plen, fh, hl, heads_long)

    def finish(self) -> list[dict[str, Any]]:
        """Flow summaries, largest first; short-header flows answering a QUIC flow are QUIC."""
        for f in self.flows.values():
            f.finish()
        quic_pairs = {(f.src, f.sport, f.dst, f.dport) for f in self.flows.values()
                      if f.kind == "quic"}
        for f in self.flows.values():
            if (f.kind == "udp" and (f.dst, f.dport, f.src, f.sport) in quic_pairs
                    and f.quic.short_packets >= 0.9 * f.packets):
                f.kind = "quic"
        out = [f.summary() for f in self.flows.values()]
        self._handshakes(out)
        out.sort(key=lambda s: -int(s["bytes"]))
        return out

    def _handshakes(self, out: list[dict[str, Any]]) -> None:
        by_tuple = {(f.src, f.sport, f.dst, f.dport): f for f in self.flows.values()}
        for s, f in zip(out, self.flows.values(), strict=True):
            if f.kind != "quic":
                continue
            back = by_tuple.get((f.dst, f.dport, f.src, f.sport))
            states = [f.quic] + ([back.quic] if back is not None else [])
            inits = [q.first_initial for q in states if q.first_initial is not None]
            longs = [q.last_long for q in states if q.last_long is not None]
            s["quic"]["handshake_ms"] = ((max(longs) - min(inits)) * 1000.0
                                         if inits and longs else None)
