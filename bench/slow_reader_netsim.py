"""A bulk transfer to a receiving process that falls behind, in virtual time: what its
socket buffer drops, what it reads and the one-way delay, for edgewire's controller as it
is, for the same controller with the receiver's drop reports ignored (the estimators'
``on_receiver_drops`` replaced by a no-op for those runs: what the code did before the
reports), and for aioquic's Reno and CUBIC.

The link is 100 Mbit/s with 10 ms each way and a 1000-packet queue; the downlink's
receiving process (``LinkConfig.read_*``, docs/NETSIM.md) reads behind Linux's default
socket buffer of 208 KiB in one of these ways:

* ``steady-30``: 30 Mbit/s, steadily;
* ``stall-5ms``: at once, then 5 ms of other work after every 32 KiB;
* ``stall-20ms``: at once, then 20 ms after every 256 KiB;
* ``stall-50ms``: at once, then 50 ms after every 256 KiB (it can take 42 Mbit/s, but
  a 50 ms stall at more than about 34 overflows the buffer).

Run: ``.venv/bin/python bench/slow_reader_netsim.py [--seconds S] [--seed N] [--json]``
(seconds of each run; default 10). Every figure is the same for a seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgewire.cli.bench_bwe import _bulk_down, scheme_transport
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport.bwe.common import FeedbackEstimator

#: The receiving processes (``LinkConfig`` keys of the downlink).
READERS: dict[str, dict[str, Any]] = {
    "steady-30": {"read_kbps": 30_000},
    "stall-5ms": {"read_stall_ms": 5, "read_stall_bytes": 32_768},
    "stall-20ms": {"read_stall_ms": 20, "read_stall_bytes": 262_144},
    "stall-50ms": {"read_stall_ms": 50, "read_stall_bytes": 262_144},
}
#: (name, scheme, whether the receiver's drop reports are ignored)
CONTENDERS = (("edgewire", "edgewire", False), ("edgewire-deaf", "edgewire", True),
              ("reno", "reno", False), ("cubic", "cubic", False))


def run_one(reader: dict[str, Any], scheme: str, *, deaf: bool, seconds: float,
            seed: int) -> dict[str, Any]:
    """One run: the downlink's figures."""
    table = {"name": "slow-reader", "duration_s": seconds, "seed": seed,
             "uplink": {"delay_ms": 10},
             "downlink": {"delay_ms": 10, "rate_kbps": 100_000, "queue_packets": 1000,
                          "read_buffer_bytes": 212_992, **reader},
             "traffic": {"down": _bulk_down()},
             "transport": scheme_transport(scheme)}
    original = FeedbackEstimator.on_receiver_drops
    if deaf:
        FeedbackEstimator.on_receiver_drops = (  # type: ignore[method-assign]
            lambda self, dropped, *, now: None)
    try:
        res = run_scenario(parse_scenario(table))
    finally:
        FeedbackEstimator.on_receiver_drops = original  # type: ignore[method-assign]
    link = res["links"]["downlink"]
    offered = link["packets_offered"]
    return {"reader_drop_percent": round(100.0 * link["dropped_by_reader"] / offered, 3)
            if offered else 0.0,
            "dropped_by_reader": link["dropped_by_reader"],
            "read_kbps": link["throughput_kbps"],
            "delay_p95_ms": link["delay_ms"]["p95"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, dict[str, Any]] = {}
    for rname, reader in READERS.items():
        out[rname] = {}
        for name, scheme, deaf in CONTENDERS:
            print(f"slow reader: {rname}, {name}", file=sys.stderr)
            out[rname][name] = run_one(reader, scheme, deaf=deaf, seconds=args.seconds,
                                       seed=args.seed)
    result = {"params": {"seconds": args.seconds, "seed": args.seed, "readers": READERS},
              "runs": out}
    if args.json:
        print(json.dumps(result))
        return 0
    for rname, rows in out.items():
        print(rname)
        print(f"  {'contender':<16}{'dropped':>10}{'read kbit/s':>13}{'delay p95 ms':>14}")
        for name, row in rows.items():
            print(f"  {name:<16}{row['reader_drop_percent']:>9.2f}%{row['read_kbps']:>13.0f}"
                  f"{row['delay_p95_ms']:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
