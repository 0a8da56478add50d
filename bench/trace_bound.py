"""What a cellular trace allows: a sender that knows the downlink exactly, but late.

``python bench/trace_bound.py [--delay 0.05] [--window 0.1,0.5] [--seconds 40]``

For each trace of ``edgewire bench bwe`` (Mahimahi format, ../shared/data/traces), this
replays the downlink's delivery opportunities against a sender that, every millisecond,
sends ``f`` x the capacity the link offered over the last ``window`` seconds, learnt
``delay`` seconds late (0.05 s: one RTT of the bench's scenarios, the earliest any
feedback could tell). Packets wait in a drop-tail queue of 100 packets, as in the bench.
It prints, per trace, window and ``f``: utilization (packets delivered / opportunities)
and the p95 per-packet queueing delay.

No real sender does this well: it sees the opportunities it did not use too, which a
sender learns only by filling the link. So the figures are an upper bound on what the
bench's goal (utilization >= 0.7 with p95 queueing delay <= 100 ms) asks, and they show
that the goal is not ruled out by the traces themselves.
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import numpy as np

TRACES = ("Verizon-LTE-short", "ATT-LTE-driving-2016", "TMobile-UMTS-driving")
QUEUE_PACKETS = 100


def trace_dir() -> Path:
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        for cand in (base / ".." / "shared" / "data" / "traces",
                     base / "shared" / "data" / "traces"):
            if (cand / f"{TRACES[0]}.down").exists():
                return cand.resolve()
    raise SystemExit("trace_bound: ../shared/data/traces not found")


def replay(opportunities: np.ndarray, f: float, window: float, delay: float
           ) -> tuple[float, float]:
    """(utilization, p95 queueing delay in ms) of the late-knowing sender."""
    n = len(opportunities)
    cum = np.concatenate([[0], np.cumsum(opportunities)])
    win, lag = max(1, round(window * 1000)), round(delay * 1000)
    queue: deque[int] = deque()
    delays: list[int] = []
    credit = 0.0
    for ms in range(n):
        hi = max(ms - lag, 0)
        lo = max(hi - win, 0)
        credit += f * (cum[hi] - cum[lo]) / max(hi - lo, 1)
        while credit >= 1.0:
            credit -= 1.0
            if len(queue) < QUEUE_PACKETS:
                queue.append(ms)
        for _ in range(int(opportunities[ms])):
            if not queue:
                break
            delays.append(ms - queue.popleft())
    total = int(opportunities.sum())
    util = len(delays) / total if total else 0.0
    p95 = float(np.percentile(delays, 95)) if delays else 0.0
    return util, p95


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05, help="knowledge lag, s")
    ap.add_argument("--window", default="0.1,0.5", help="capacity windows, s (comma list)")
    ap.add_argument("--seconds", type=int, default=40, help="trace seconds replayed")
    args = ap.parse_args()
    base = trace_dir()
    print("| trace | window s | f | utilization | p95 queueing delay ms |")
    print("|---|---|---|---|---|")
    for stem in TRACES:
        t = np.loadtxt(base / f"{stem}.down", dtype=np.int64)
        opp = np.bincount(t[t < args.seconds * 1000], minlength=args.seconds * 1000)
        for window in (float(w) for w in args.window.split(",")):
            for f in (0.7, 0.8, 0.9, 1.0):
                util, p95 = replay(opp, f, window, args.delay)
                print(f"| {stem} | {window} | {f} | {util:.2f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
