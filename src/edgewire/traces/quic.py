"""QUIC header facts visible in clear: long/short header, version, connection ids,
spin bit (RFC 9000 17, RFC 9312 for spin-bit RTT), handshake timing."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["QuicState", "is_known_version", "parse_long_header"]

_V2 = 0x6B3343CF


def is_known_version(version: np.ndarray) -> np.ndarray:
    """QUIC v1, v2, IETF drafts (0xff0000xx) and version negotiation (0)."""
    out: np.ndarray = ((version == 1) | (version == _V2) | ((version >> 8) == 0xFF0000)
            | (version == 0))
    return out


def parse_long_header(payload: bytes) -> dict[str, Any] | None:
    """Version, packet type and connection ids of a long-header packet; None if malformed."""
    if len(payload) < 7 or not payload[0] & 0x80:
        return None
    version = int.from_bytes(payload[1:5], "big")
    dlen = payload[5]
    if dlen > 20 or len(payload) < 7 + dlen:
        return None
    dcid = payload[6:6 + dlen]
    slen = payload[6 + dlen]
    if slen > 20 or len(payload) < 7 + dlen + slen:
        return None
    scid = payload[7 + dlen:7 + dlen + slen]
    bits = (payload[0] >> 4) & 3
    if version == 0:
        kind = "version_negotiation"
    elif version == _V2:
        kind = ("retry", "initial", "0rtt", "handshake")[bits]
    else:
        kind = ("initial", "0rtt", "handshake", "retry")[bits]
    return {"version": version, "type": kind, "dcid": dcid.hex(), "scid": scid.hex()}


class QuicState:
    """What one direction of a QUIC connection showed: header counts, versions, connection
    ids, handshake packet times and spin-bit edges."""

    def __init__(self) -> None:
        self.long_packets = 0
        self.short_packets = 0
        self.versions: set[int] = set()
        self.dcids: set[str] = set()
        self.scids: set[str] = set()
        self.first_initial: float | None = None
        self.last_long: float | None = None
        self.first_short: float | None = None
        self._spin: int | None = None
        self._edge: float | None = None
        self.spin_edges = 0
        self.rtt_samples = 0
        self._rtt_sum = 0.0
        self._rtt_min = float("inf")
        self._rtt_max = 0.0

    def update(self, ts: np.ndarray, b0: np.ndarray, heads: list[bytes]) -> None:
        """Packets of this direction in capture order: times, first bytes, and the first
        bytes of each long-header packet (``heads``, same order as the long headers)."""
        long_mask = (b0 & 0x80) != 0
        n_long = int(long_mask.sum())
        self.long_packets += n_long
        if n_long:
            lt = ts[long_mask]
            for t, head in zip(lt.tolist(), heads, strict=False):
                info = parse_long_header(head)
                if info is None:
                    continue
                self.versions.add(info["version"])
                if len(self.dcids) < 16:  # bounded: ids are for display only
                    self.dcids.add(info["dcid"])
                if len(self.scids) < 16:
                    self.scids.add(info["scid"])
                if info["type"] == "initial" and self.first_initial is None:
                    self.first_initial = t
                self.last_long = t if self.last_long is None else max(self.last_long, t)
        short = ~long_mask & ((b0 & 0x40) != 0)
        if not short.any():
            return
        st = ts[short]
        self.short_packets += len(st)
        if self.first_short is None:
            self.first_short = float(st[0])
        spin = ((b0[short] >> 5) & 1).astype(np.int64)
        prev = spin[0] if self._spin is None else self._spin
        flips = np.flatnonzero(np.diff(np.concatenate(([prev], spin))) != 0)
        self._spin = int(spin[-1])
        if not flips.size:
            return
        edges = st[flips]
        self.spin_edges += len(edges)
        if self._edge is not None:
            edges = np.concatenate(([self._edge], edges))
        self._edge = float(edges[-1])
        rtts = np.diff(edges)
        if rtts.size:
            # a reordered packet can fake two edges in a row; RFC 9312 6.2 discards them
            rtts = rtts[rtts > 0]
            self.rtt_samples += len(rtts)
            self._rtt_sum += float(rtts.sum())
            self._rtt_min = min(self._rtt_min, float(rtts.min(initial=np.inf)))
            self._rtt_max = max(self._rtt_max, float(rtts.max(initial=0.0)))

    def summary(self) -> dict[str, Any]:
        """Header counts, versions, connection ids and spin-bit RTT (ms) of this direction."""
        used = self.rtt_samples > 0
        return {
            "long_packets": self.long_packets, "short_packets": self.short_packets,
            "versions": [f"0x{v:08x}" for v in sorted(self.versions)],
            "dcids": sorted(self.dcids), "scids": sorted(self.scids),
            "spin_bit_used": used,
            "spin_rtt_ms": ({"samples": self.rtt_samples,
                             "mean": self._rtt_sum / self.rtt_samples * 1000.0,
                             "min": self._rtt_min * 1000.0, "max": self._rtt_max * 1000.0}
                            if used else None),
        }
