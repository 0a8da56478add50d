"""What a cellular trace allows: a sender that knows the downlink exactly, but late.

``python bench/trace_bound.py [--delay 0.05] [--window 0.1,0.5] [--seconds 40]
[--uplink [--report-every 0.025] [--holds 0.13,1]]``

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

``--uplink`` takes the feedback path into account: the receiver reports every
``report-every`` seconds, each report waits for a delivery opportunity of the trace's
uplink (first in, first out) and then half of ``delay``; the sender knows the downlink up
to the newest report it has, and its packets reach the bottleneck half of ``delay``
later. While no report comes (the uplink's outages: up to 4 s on ATT, 3.5 s on TMobile)
the sender either stops once ``hold`` seconds of its rate are beyond what the reports
cover (``--holds``; 0.13 s is edgewire's congestion window at this RTT), or keeps sending
blind at its last rate. These are policies, not bounds: a sender may do better than any
of them in a silence by guessing.
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


def summary(opportunities: np.ndarray, delays: list[int]) -> tuple[float, float]:
    """(utilization: packets delivered / opportunities, p95 queueing delay in ms)."""
    total = int(opportunities.sum())
    util = len(delays) / total if total else 0.0
    p95 = float(np.percentile(delays, 95)) if delays else 0.0
    return util, p95


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
    return summary(opportunities, delays)


def feedback_times(uplink: np.ndarray, n: int, every: int, one_way: int) -> np.ndarray:
    """For each millisecond, the latest receiver time whose feedback has reached the
    sender: the receiver reports every ``every`` ms, each report waits (FIFO) for the
    next delivery opportunity of the uplink trace, then ``one_way`` ms of propagation."""
    known = np.full(n, -1, dtype=np.int64)
    slots = np.repeat(np.arange(len(uplink)), uplink)  # one ms per opportunity
    j = 0
    arrivals: list[tuple[int, int]] = []
    for r in range(0, n, every):
        j = max(j, int(np.searchsorted(slots, r, side="left")))
        if j >= len(slots):
            break
        arrivals.append((int(slots[j]) + one_way, r))
        j += 1
    last, k = -1, 0
    for ms in range(n):
        while k < len(arrivals) and arrivals[k][0] <= ms:
            last = max(last, arrivals[k][1])
            k += 1
        known[ms] = last
    return known


def replay_uplink(opportunities: np.ndarray, known: np.ndarray, f: float, window: float,
                  hold: float | None) -> tuple[float, float]:
    """Like :func:`replay`, but the sender knows the downlink only up to the latest
    report the uplink has delivered (``known``). With ``hold`` (s) it stops once it has
    sent ``hold`` seconds of its rate beyond what the reports it has cover, as a window
    bounding what is in flight would; without, it keeps sending blind at the last rate."""
    n = len(opportunities)
    cum = np.concatenate([[0], np.cumsum(opportunities)])
    win = max(1, round(window * 1000))
    queue: deque[int] = deque()
    delays: list[int] = []
    credit, sent_at = 0.0, np.zeros(n, dtype=np.int64)
    sent = 0
    for ms in range(n):
        hi = int(known[ms])
        if hi >= 0:
            lo = max(hi - win, 0)
            rate = f * (cum[hi] - cum[lo]) / max(hi - lo, 1)
            credit += rate
            covered = int(sent_at[hi])
            room = None if hold is None else rate * hold * 1000 - (sent - covered)
            while credit >= 1.0 and (room is None or room >= 1.0):
                credit -= 1.0
                sent += 1
                if room is not None:
                    room -= 1.0
                if len(queue) < QUEUE_PACKETS:
                    queue.append(ms)
            credit = min(credit, 1.0)
        sent_at[ms] = sent
        for _ in range(int(opportunities[ms])):
            if not queue:
                break
            delays.append(ms - queue.popleft())
    return summary(opportunities, delays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05, help="knowledge lag, s")
    ap.add_argument("--window", default="0.1,0.5", help="capacity windows, s (comma list)")
    ap.add_argument("--seconds", type=int, default=40, help="trace seconds replayed")
    ap.add_argument("--uplink", action="store_true",
                    help="learn the downlink through reports carried by the uplink trace")
    ap.add_argument("--report-every", type=float, default=0.025, help="report interval, s")
    ap.add_argument("--holds", default="0.13",
                    help="with --uplink: seconds of rate sent beyond the reports before the "
                         "sender stops (comma list; 'sends blind' is always added)")
    args = ap.parse_args()
    try:
        args.hold_list = [float(h) for h in args.holds.split(",")]
    except ValueError:
        ap.error(f"--holds wants seconds, comma-separated: {args.holds!r}")
    if any(not h > 0 for h in args.hold_list):
        ap.error("--holds must be positive")
    base = trace_dir()
    if args.uplink:
        uplink_table(base, args)
        return
    print("| trace | window s | f | utilization | p95 queueing delay ms |")
    print("|---|---|---|---|---|")
    for stem in TRACES:
        t = np.loadtxt(base / f"{stem}.down", dtype=np.int64)
        opp = np.bincount(t[t < args.seconds * 1000], minlength=args.seconds * 1000)
        for window in (float(w) for w in args.window.split(",")):
            for f in (0.7, 0.8, 0.9, 1.0):
                util, p95 = replay(opp, f, window, args.delay)
                print(f"| {stem} | {window} | {f} | {util:.2f} | {p95:.0f} |")


def uplink_table(base: Path, args: argparse.Namespace) -> None:
    n = args.seconds * 1000
    print("| trace | window s | f | sender in silence | utilization | p95 queueing delay ms |")
    print("|---|---|---|---|---|---|")
    for stem in TRACES:
        down = np.loadtxt(base / f"{stem}.down", dtype=np.int64)
        up = np.loadtxt(base / f"{stem}.up", dtype=np.int64)
        opp = np.bincount(down[down < n], minlength=n)
        upp = np.bincount(up[up < n], minlength=n)
        half = round(args.delay * 500)
        known = feedback_times(upp, n, max(1, round(args.report_every * 1000)), half)
        # the downlink's deliveries reach the receiver half an RTT after the bottleneck
        known = np.where(known >= 0, np.maximum(known - half, 0), -1)
        for window in (float(w) for w in args.window.split(",")):
            for f in (0.7, 0.8, 0.9, 1.0):
                policies: list[tuple[str, float | None]] = [
                    (f"stops after {h:g} s", h) for h in args.hold_list]
                for label, hold in [*policies, ("sends blind", None)]:
                    util, p95 = replay_uplink(opp, known, f, window, hold)
                    print(f"| {stem} | {window} | {f} | {label} | {util:.2f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
