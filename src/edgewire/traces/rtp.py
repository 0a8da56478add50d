"""RTP stream statistics: sequence loss, RFC 3550 jitter, deltas, duplicates, RFC 4737
reordering and loss bursts.

One :class:`RtpStream` per SSRC of a flow; packets are fed in arrival order. The work is
per packet in Python: RTP streams run at tens to thousands of packets per second, so this
is never the bottleneck (plain UDP takes the vectorised path in ``flows``).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

from edgewire.traces.series import BinnedSeries, LossTracker

__all__ = ["STATIC_CLOCK_RATES", "RtpStream", "looks_like_rtcp", "looks_like_rtp"]

#: RTP clock rates of the static payload types (RFC 3551, table 4 and 5).
STATIC_CLOCK_RATES = {0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000,
                      9: 8000, 10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000,
                      15: 8000, 16: 11025, 17: 22050, 18: 8000, 25: 90000, 26: 90000,
                      28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000}


def looks_like_rtp(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Version 2 and a payload type outside the RTCP range (RFC 5761 section 4)."""
    out: np.ndarray = ((b0 >> 6) == 2) & ~(((b1 & 0x7F) >= 72) & ((b1 & 0x7F) <= 76))
    return out


def looks_like_rtcp(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Version 2 and an RTCP packet type (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR)."""
    out: np.ndarray = ((b0 >> 6) == 2) & (b1 >= 200) & (b1 <= 207)
    return out


class RtpStream:
    """Statistics of one RTP stream (one SSRC in one flow), fed in arrival order."""

    def __init__(self, ssrc: int, payload_type: int, *, clock_rate: int | None,
                 origin: float, reorder_window: int = 4096, series_bin_s: float = 1.0) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        """RTP clock rate (Hz); None for a dynamic payload type nobody named."""
        self.packets = 0
        self.base: int | None = None
        self.top = 0
        """Highest extended sequence number."""
        self.reordered = 0
        self.extents: list[int] = []
        self._extent_sum = 0
        self._extent_max = 0
        self.extent_unknown = 0
        self._arrival = 0
        # RFC 4737 extent: arrival index where the running maximum first passed each value
        self._runmax_idx: list[int] = []
        self._runmax_val: list[int] = []
        self._runmax_start = 0
        self._window = reorder_window
        self.loss = LossTracker(window=reorder_window)
        self._last_t: float | None = None
        self.max_delta_s = 0.0
        self._ts_ext = 0
        self._last_ts_raw = 0
        self._transit: float | None = None
        self.jitter = 0.0
        """RFC 3550 interarrival jitter, RTP timestamp units."""
        self.jitter_max = 0.0
        self._jitter_sum = 0.0
        self._jitter_n = 0
        self.jitter_series = BinnedSeries(origin, series_bin_s, 512)
        self.first_t: float | None = None
        self.last_t = 0.0
        self._jbuf_t: list[float] = []
        self._jbuf_v: list[float] = []

    def _flush_series(self) -> None:
        self.jitter_series.add(np.array(self._jbuf_t), np.array(self._jbuf_v))
        self._jbuf_t.clear()
        self._jbuf_v.clear()

    def add(self, t: float, seq: int, ts: int) -> None:
        """One packet arrived at ``t`` (seconds) with sequence number ``seq`` and RTP
        timestamp ``ts``."""
        self.packets += 1
        if self.base is None:
            self.base = self.top = seq
            ext = seq
            self._ts_ext = ts
            self.first_t = t
        else:
            # unwrap against the highest number seen: within +-32768 of it
            ext = self.top + ((seq - self.top + 32768) & 0xFFFF) - 32768
            self._ts_ext += ((ts - self._last_ts_raw + 2**31) & 0xFFFFFFFF) - 2**31
        self._last_ts_raw = ts
        self.last_t = t
        if self._last_t is not None:
            self.max_delta_s = max(self.max_delta_s, t - self._last_t)
        self._last_t = t
        if self.clock_rate:
            # RFC 3550 A.8, in RTP timestamp units; arrival converted without truncation
            transit = t * self.clock_rate - self._ts_ext
            if self._transit is not None:
                d = abs(transit - self._transit)
                self.jitter += (d - self.jitter) / 16.0
                # the mean is over packets that updated the estimate (as tshark reports it)
                self._jitter_sum += self.jitter
                self._jitter_n += 1
            self._transit = transit
            self.jitter_max = max(self.jitter_max, self.jitter)
            ms = self.jitter * 1000.0 / self.clock_rate
            self._jbuf_t.append(t)
            self._jbuf_v.append(ms)
            if len(self._jbuf_t) >= 1024:  # numpy once per batch, not per packet
                self._flush_series()
        duplicate = self.loss.is_duplicate(ext)
        self.loss.add(ext)
        if not duplicate:
            if ext <= self.top and self.packets > 1:
                self._reordered(ext)
            elif ext > self.top or self.packets == 1:
                self.top = ext
                self._runmax_idx.append(self._arrival)
                self._runmax_val.append(ext)
                if len(self._runmax_idx) - self._runmax_start > 2 * self._window:
                    self._runmax_start = len(self._runmax_idx) - self._window
                    if self._runmax_start > 4 * self._window:  # compact now and then
                        del self._runmax_idx[:self._runmax_start]
                        del self._runmax_val[:self._runmax_start]
                        self._runmax_start = 0
        self._arrival += 1

    def _reordered(self, ext: int) -> None:
        # RFC 4737 3.3: reordered when below NextExp; extent = i - j, j the first arrival
        # whose number exceeded this one
        self.reordered += 1
        vals = self._runmax_val
        k = bisect_right(vals, ext, lo=self._runmax_start)
        if k == self._runmax_start and (self._runmax_start > 0):
            self.extent_unknown += 1
            return
        if k >= len(vals):
            return
        extent = self._arrival - self._runmax_idx[k]
        self._extent_sum += extent
        self._extent_max = max(self._extent_max, extent)

    def summary(self) -> dict[str, Any]:
        """The figures of ``trace analyze --json`` for this stream (flushes the tracker)."""
        self.loss.flush()
        self._flush_series()
        assert self.base is not None
        expected = self.top - self.base + 1
        lost = expected - self.packets  # RFC 3550 A.3: duplicates make this smaller
        rate = self.clock_rate
        bursts = self.loss.summary()
        known = self.reordered - self.extent_unknown
        return {
            "ssrc": self.ssrc, "payload_type": self.payload_type, "clock_rate": rate,
            "packets": self.packets, "expected": expected, "lost": lost,
            "loss_rate": lost / expected if expected > 0 else 0.0,
            "duplicates": self.loss.duplicates,
            "max_delta_ms": self.max_delta_s * 1000.0,
            "jitter_ms_max": self.jitter_max * 1000.0 / rate if rate else None,
            "jitter_ms_mean": (self._jitter_sum / self._jitter_n * 1000.0 / rate
                               if rate and self._jitter_n else (0.0 if rate else None)),
            "jitter_ms_last": self.jitter * 1000.0 / rate if rate else None,
            "reordered": self.reordered,
            "reordered_ratio": self.reordered / self.packets,
            "reorder_extent_mean": self._extent_sum / known if known > 0 else None,
            "reorder_extent_max": self._extent_max,
            "burst_mean": bursts["burst_mean"], "burst_max": bursts["burst_max"],
            "burst_hist": bursts["burst_hist"], "gilbert": bursts["gilbert"],
            "late": self.loss.late,
        }
