"""Bounded accumulators: time series with self-coarsening bins, fixed histograms, and the
loss-burst tracker behind every sequence-numbered flow (RTP, endpoint logs, matched
captures)."""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

__all__ = [
    "K_IAT_BINS",
    "K_SIZE_BIN",
    "BinnedSeries",
    "LossTracker",
    "iat_bin",
    "iat_edges",
]

#: packet-size histogram bin width (bytes); the last bin collects everything larger.
K_SIZE_BIN = 16
K_SIZE_BINS = 97
#: inter-arrival histogram: 10 log-spaced bins per decade from 1 µs to 1000 s.
K_IAT_BINS = 91
K_IAT_PER_DECADE = 10


def iat_bin(gaps: np.ndarray) -> np.ndarray:
    """Inter-arrival histogram bin of each gap (seconds); bin 0 holds gaps of 1 µs or less."""
    with np.errstate(divide="ignore"):
        b = np.floor((np.log10(np.maximum(gaps, 1e-12)) + 6.0) * K_IAT_PER_DECADE) + 1
    out: np.ndarray = np.clip(b, 0, K_IAT_BINS - 1).astype(np.int64)
    return out


def iat_edges() -> np.ndarray:
    """Upper edge (seconds) of each inter-arrival bin."""
    out: np.ndarray = 10.0 ** (np.arange(K_IAT_BINS) / K_IAT_PER_DECADE - 6.0)
    return out


def size_bin(sizes: np.ndarray) -> np.ndarray:
    """Packet-size histogram bin of each size."""
    out: np.ndarray = np.minimum(sizes // K_SIZE_BIN, K_SIZE_BINS - 1)
    return out


class BinnedSeries:
    """Sum, count and maximum per time bin from ``origin``; at most ``max_bins`` bins.

    When a value lands past the last bin, neighbouring bins are merged in pairs and the
    bin width doubles, so a capture of any length keeps a fixed-size series.
    """

    def __init__(self, origin: float, bin_s: float, max_bins: int = 1024) -> None:
        self.origin = origin
        self.bin_s = bin_s
        """Current bin width, seconds (grows by doubling)."""
        self.max_bins = max_bins
        self.sum = np.zeros(max_bins)
        self.count = np.zeros(max_bins, dtype=np.int64)
        self.max = np.full(max_bins, -np.inf)
        self.used = 0
        """Bins in use."""

    def add(self, t: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` observed at times ``t`` (arrays of the same length)."""
        if len(t) == 0:
            return
        idx = np.maximum(((t - self.origin) / self.bin_s).astype(np.int64), 0)
        top = int(idx.max())
        while top >= self.max_bins:
            self._coarsen()
            idx >>= 1
            top >>= 1
        self.sum += np.bincount(idx, weights=values, minlength=self.max_bins)
        self.count += np.bincount(idx, minlength=self.max_bins)
        np.maximum.at(self.max, idx, values)
        self.used = max(self.used, top + 1)

    def _coarsen(self) -> None:
        half = self.max_bins // 2
        self.sum[:half] = self.sum.reshape(half, 2).sum(axis=1)
        self.count[:half] = self.count.reshape(half, 2).sum(axis=1)
        self.max[:half] = self.max.reshape(half, 2).max(axis=1)
        self.sum[half:] = 0
        self.count[half:] = 0
        self.max[half:] = -np.inf
        self.bin_s *= 2
        self.used = (self.used + 1) // 2

    def times(self) -> np.ndarray:
        """Start time of each used bin relative to the origin, seconds."""
        return np.arange(self.used) * self.bin_s


class LossTracker:
    """Loss bursts of a sequence-numbered flow, tolerant of reordering within ``window``.

    Received (extended) sequence numbers may arrive in any order; once the highest number
    seen is ``window`` past a number, that number is final: received or lost. Gaps between
    final received numbers are loss bursts. Memory is bounded by ``window``.
    """

    def __init__(self, window: int = 4096, max_burst: int = 256,
                 start: int | None = None) -> None:
        self.window = window
        self.max_burst = max_burst
        self._heap: list[int] = []
        self._pending: set[int] = set()
        # with a known first number, losses before the first arrival count too
        self._last_final: int | None = None if start is None else start - 1
        self.top: int | None = None
        """Highest sequence number seen."""
        self.received = 0
        """Distinct numbers finalised as received."""
        self.lost = 0
        """Numbers finalised as lost."""
        self.duplicates = 0
        self.late = 0
        """Packets that arrived more than ``window`` numbers behind (finalised as lost)."""
        self.bursts = np.zeros(max_burst + 1, dtype=np.int64)
        """``bursts[k]``: loss bursts of length k; the last entry: ``max_burst`` or longer."""

    def add(self, seq: int) -> bool:
        """Record ``seq`` received; False when it is a duplicate or too late to count."""
        if self._last_final is not None and seq <= self._last_final:
            self.late += 1
            return False
        if seq in self._pending:
            self.duplicates += 1
            return False
        self._pending.add(seq)
        heapq.heappush(self._heap, seq)
        if self.top is None or seq > self.top:
            self.top = seq
            self._finalise(self.top - self.window)
        return True

    def is_duplicate(self, seq: int) -> bool:
        """Whether ``seq`` was already received within the window."""
        return seq in self._pending

    def _finalise(self, upto: float) -> None:
        heap = self._heap
        while heap and heap[0] <= upto:
            s = heapq.heappop(heap)
            self._pending.discard(s)
            if self._last_final is not None:
                gap = s - self._last_final - 1
                if gap > 0:
                    self.lost += gap
                    self.bursts[min(gap, self.max_burst)] += 1
            self._last_final = s
            self.received += 1

    def flush(self, end: int | None = None) -> None:
        """Finalise everything (end of the capture); ``end``, one past the last number sent
        when known, makes losses after the last arrival count too."""
        self._finalise(float("inf"))
        if end is not None:
            last = -1 if self._last_final is None else self._last_final
            if end - 1 > last:
                gap = end - 1 - last
                self.lost += gap
                self.bursts[min(gap, self.max_burst)] += 1
                self._last_final = end - 1

    def summary(self) -> dict[str, Any]:
        """Burst statistics and the fitted simple Gilbert-Elliott model (call after flush).

        ``p`` = P(lost | previous received) and ``r`` = P(received | previous lost), the
        maximum-likelihood estimates from transition counts in sequence order.
        """
        n_bursts = int(self.bursts.sum())
        lengths = np.arange(self.max_burst + 1)
        burst_mean = (float((self.bursts * lengths).sum() / n_bursts) if n_bursts
                      else None)
        from_received = self.received - 1  # transitions out of a received state
        p = n_bursts / from_received if from_received > 0 else None
        r = n_bursts / self.lost if self.lost else None
        return {
            "lost": self.lost, "bursts": n_bursts, "burst_mean": burst_mean,
            "burst_max": int(lengths[self.bursts > 0].max()) if n_bursts else 0,
            "burst_hist": {int(k): int(v) for k, v in enumerate(self.bursts) if v},
            "gilbert": {"p": p, "r": r},
        }
