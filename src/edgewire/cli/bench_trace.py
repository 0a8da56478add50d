"""``edgewire bench trace``: capture analysis speed against scapy, and its memory.

A plain-UDP pcap of ``--packets`` packets (Ethernet/IPv4/UDP, 8 flows, 200-byte payloads,
10 kpps)
is written with numpy in blocks (building it with scapy would take longer than the run).
edgewire's full analysis runs over it in a child process, so that the child's peak RSS is
the analysis's own; scapy's ``rdpcap`` reads a ``--scapy-slice``-packet prefix of the same
capture in the same run (over Ethernet, so scapy dissects Ether/IP/UDP as it does for real
captures; with raw-IP link type 101 it hands back undissected ``Raw`` packets).
Memory independence: the analysis is also run on a capture a
quarter as long and both peak RSS figures are reported.

The same packets are also written as pcapng (one Enhanced Packet Block each, as dumpcap
writes) and measured the same way: edgewire's analysis of the whole file, scapy's
``rdpcap`` of a slice (``pcapng`` in the JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_bench_trace_arguments", "main_bench_trace", "run_bench_trace",
           "write_udp_pcap", "write_udp_pcapng"]

_PAYLOAD = 200
_FRAME = 14 + 28 + _PAYLOAD  # Ethernet, IPv4, UDP, payload
# Peak RSS: VmHWM of the child's own address space. ru_maxrss is not used where VmHWM
# exists: Linux carries it over from the parent at fork, so the child would report the
# parent's peak (the generator's buffers, scapy's packets) instead of its own.
_CHILD = r"""
import json, resource, sys, time
from edgewire.traces.analyze import analyze_capture
t0 = time.perf_counter()
a = analyze_capture(sys.argv[1])
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration, ValueError):
    pass
print(json.dumps({"records": a.records, "seconds": dt, "flows": len(a.flows),
                  "peak_rss_mb": peak}))
"""


def _udp_packets(start: int, n: int, flows: int, rate_pps: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Packets ``start`` .. ``start + n - 1``: (time in s, uint8 array of n Ethernet frames)."""
    i = np.arange(start, start + n, dtype=np.int64)
    buf = np.zeros((n, _FRAME), dtype=np.uint8)
    buf[:, 0:6] = [2, 0, 0, 0, 0, 2]
    buf[:, 6:12] = [2, 0, 0, 0, 0, 1]
    buf[:, 12:14] = [8, 0]  # IPv4
    ip = buf[:, 14:]
    ip[:, 0] = 0x45
    ip[:, 2:4] = np.array([(28 + _PAYLOAD) >> 8, (28 + _PAYLOAD) & 255])
    ip[:, 8] = 64
    ip[:, 9] = 17
    ip[:, 12:16] = [10, 0, 0, 1]
    ip[:, 16:19] = [10, 0, 1]
    ip[:, 19] = 1 + i % flows
    sport = 5000 + i % flows
    ip[:, 20] = sport >> 8
    ip[:, 21] = sport & 255
    ip[:, 22:24] = [0x17, 0x70]  # 6000
    ip[:, 24:26] = [0, 8 + _PAYLOAD]
    ip[:, 28:36] = (i.astype(">u8").view(np.uint8)).reshape(n, 8)  # a counter
    return i / rate_pps, buf


def write_udp_pcap(path: str | Path, packets: int, *, flows: int = 8, rate_pps: float = 1e4,
                   block: int = 100_000) -> None:
    """Write a pcap (Ethernet) of ``packets`` IPv4/UDP packets in ``flows`` flows."""
    rec = 16 + _FRAME
    with open(path, "wb") as f:
        f.write(np.array([0xA1B2C3D4], "<u4").tobytes()
                + np.array([2, 4], "<u2").tobytes()
                + np.array([0, 0, 65535, 1], "<u4").tobytes())
        for start in range(0, packets, block):
            n = min(block, packets - start)
            t, frames = _udp_packets(start, n, flows, rate_pps)
            buf = np.zeros((n, rec), dtype=np.uint8)
            sec = t.astype(np.int64)
            usec = ((t - sec) * 1e6).astype(np.int64)
            hdr = np.stack([sec, usec, np.full(n, _FRAME), np.full(n, _FRAME)], axis=1)
            buf[:, :16] = hdr.astype("<u4").view(np.uint8).reshape(n, 16)
            buf[:, 16:] = frames
            f.write(buf.tobytes())


def write_udp_pcapng(path: str | Path, packets: int, *, flows: int = 8,
                     rate_pps: float = 1e4, block: int = 100_000) -> None:
    """The same packets as :func:`write_udp_pcap` as pcapng: a Section Header Block, one
    Ethernet Interface Description Block (microsecond timestamps), one Enhanced Packet
    Block per packet (what Wireshark and dumpcap write)."""
    padded = -(-_FRAME // 4) * 4
    rec = 28 + padded + 4
    with open(path, "wb") as f:
        f.write(np.array([0x0A0D0D0A, 28, 0x1A2B3C4D], "<u4").tobytes()
                + np.array([1, 0], "<u2").tobytes()
                + np.array([-1], "<i8").tobytes() + np.array([28], "<u4").tobytes())
        f.write(np.array([1, 20], "<u4").tobytes() + np.array([1, 0], "<u2").tobytes()
                + np.array([65535, 20], "<u4").tobytes())
        for start in range(0, packets, block):
            n = min(block, packets - start)
            t, frames = _udp_packets(start, n, flows, rate_pps)
            buf = np.zeros((n, rec), dtype=np.uint8)
            us = np.round(t * 1e6).astype(np.int64)
            hdr = np.stack([np.full(n, 6), np.full(n, rec), np.zeros(n, np.int64), us >> 32,
                            us & 0xFFFFFFFF, np.full(n, _FRAME), np.full(n, _FRAME)], axis=1)
            buf[:, :28] = hdr.astype("<u4").view(np.uint8).reshape(n, 28)
            buf[:, 28:28 + _FRAME] = frames
            buf[:, -4:] = np.array([rec], "<u4").view(np.uint8)
            f.write(buf.tobytes())


def _child(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                         text=True, check=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_bench_trace(*, packets: int = 1_000_000, scapy_slice: int = 20_000,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; the JSON object ``edgewire bench trace --json`` prints."""
    # the layers must be imported for rdpcap to dissect Ethernet (else it yields Raw)
    import scapy.layers.inet
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import rdpcap

    say = progress or (lambda _m: None)

    def scapy_read(path: Path) -> tuple[int, float]:
        t0 = time.perf_counter()
        got = len(rdpcap(str(path), count=scapy_slice))
        return got, time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="edgewire-bench-trace-") as tmp:
        big, small = Path(tmp) / "big.pcap", Path(tmp) / "small.pcap"
        say(f"bench trace: writing {packets} packets ...")
        write_udp_pcap(big, packets)
        write_udp_pcap(small, max(packets // 4, 1))
        say("bench trace: edgewire analysis (child process) ...")
        full = _child(big)
        quarter = _child(small)
        say(f"bench trace: scapy rdpcap of {scapy_slice} packets ...")
        got, scapy_s = scapy_read(big)
        big.unlink()  # one large file on disk at a time
        small.unlink()
        ng = Path(tmp) / "big.pcapng"
        say(f"bench trace: the same {packets} packets as pcapng ...")
        write_udp_pcapng(ng, packets)
        ng_full = _child(ng)
        ng_got, ng_scapy_s = scapy_read(ng)
    edgewire_pps = full["records"] / full["seconds"]
    scapy_pps = got / scapy_s
    ng_pps = ng_full["records"] / ng_full["seconds"]
    ng_scapy_pps = ng_got / ng_scapy_s
    return {
        "edgewire_pps": round(edgewire_pps), "scapy_pps": round(scapy_pps),
        "ratio": round(edgewire_pps / scapy_pps, 1),
        "peak_rss_mb": round(full["peak_rss_mb"], 1),
        "packets": full["records"], "scapy_packets": got,
        "memory": {"packets": [quarter["records"], full["records"]],
                   "peak_rss_mb": [round(quarter["peak_rss_mb"], 1),
                                   round(full["peak_rss_mb"], 1)]},
        "goals": {"edgewire_pps>=300k": edgewire_pps >= 300_000,
                  "ratio>=50": edgewire_pps / scapy_pps >= 50},
        "pcapng": {"edgewire_pps": round(ng_pps), "scapy_pps": round(ng_scapy_pps),
                   "ratio": round(ng_pps / ng_scapy_pps, 1),
                   "peak_rss_mb": round(ng_full["peak_rss_mb"], 1),
                   "packets": ng_full["records"], "scapy_packets": ng_got},
    }


def add_bench_trace_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench trace``."""
    parser.add_argument("--packets", type=int, default=1_000_000,
                        help="packets in the generated capture (default 1000000)")
    parser.add_argument("--scapy-slice", type=int, default=20_000,
                        help="packets scapy's rdpcap reads (default 20000)")
    parser.add_argument("--json", action="store_true")


def main_bench_trace(args: argparse.Namespace, *,
                     progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry."""
    from edgewire.errors import LocalProtocolError

    if args.packets < 4 or args.scapy_slice < 1:
        raise LocalProtocolError("--packets must be >= 4 and --scapy-slice >= 1")
    r = run_bench_trace(packets=args.packets, scapy_slice=args.scapy_slice,
                        progress=None if args.json else progress)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"pcap    edgewire {r['edgewire_pps']:>10} packets/s   scapy rdpcap "
              f"{r['scapy_pps']:>8} packets/s   ratio {r['ratio']}")
        ng = r["pcapng"]
        print(f"pcapng  edgewire {ng['edgewire_pps']:>10} packets/s   scapy rdpcap "
              f"{ng['scapy_pps']:>8} packets/s   ratio {ng['ratio']}")
        m = r["memory"]
        print(f"peak RSS {m['peak_rss_mb'][0]} MB at {m['packets'][0]} packets, "
              f"{m['peak_rss_mb'][1]} MB at {m['packets'][1]} packets")
    return 0
