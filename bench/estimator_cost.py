"""CPU cost of each bandwidth estimator's per-packet bookkeeping.

``python bench/estimator_cost.py [--packets 100000] [--report 50] [--rounds 3]``

Feeds every registered estimator the same synthetic stream: a packet of 1200 bytes
sent every 0.1 ms (96 Mbit/s), all of them received 20 ms later, reported in batches of
``--report`` packets (one report per 5 ms at the default). It times ``on_sent`` for
every packet plus ``on_feedback`` for every report, the two calls a session makes per
packet, and prints microseconds per packet (the best of ``--rounds``). The session's
other per-packet costs (QUIC, the feedback datagrams themselves) are not in it.

To compare two versions, run it with each on ``PYTHONPATH`` in turn, one after the
other: the machine's speed drifts, so alternate and read the ratio, not the absolute
figure.
"""

from __future__ import annotations

import argparse
import time

from edgewire.transport.bwe import PacketResult, create_estimator, estimator_names


def cost(name: str, packets: int, report: int) -> float:
    """Seconds per packet for ``name`` over ``packets`` packets in reports of ``report``."""
    est = create_estimator(name)
    now = 0.0
    seq = 0
    start = time.perf_counter()
    while seq < packets:
        batch = []
        for _ in range(report):
            now += 0.0001
            est.on_sent(size_bytes=1200, now=now)
            batch.append(PacketResult(seq, now, 1200, now + 0.02))
            seq += 1
        est.on_feedback(batch, now=now + 0.03)
    return (time.perf_counter() - start) / seq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--report", type=int, default=50, help="packets per feedback report")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.packets < 1 or args.report < 1 or args.rounds < 1:
        ap.error("--packets, --report and --rounds must be at least 1")
    for name in estimator_names():
        best = min(cost(name, args.packets, args.report) for _ in range(args.rounds))
        print(f"{name:10s} {best * 1e6:6.2f} us per packet")


if __name__ == "__main__":
    main()
