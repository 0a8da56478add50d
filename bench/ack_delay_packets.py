"""Packets and realtime factor of the 60 s netsim audio call with delayed ACKs (25 ms,
the default) against aioquic's own 1 ms, alternating, two runs each, in one process.

Run: ``.venv/bin/python bench/ack_delay_packets.py`` (docs/NETSIM.md, "Speed").
"""

from __future__ import annotations

import dataclasses
import time

from edgewire.cli.bench_netsim import _call
from edgewire.netsim.run import run_scenario


def main() -> None:
    """Print ack delay, packets offered to both links, realtime factor, audio on time."""
    for ms in (25.0, 1.0, 25.0, 1.0):
        sc = _call(False, 60)
        sc = dataclasses.replace(sc, transport=dataclasses.replace(sc.transport,
                                                                   ack_delay_ms=ms))
        r = run_scenario(sc, wall_clock=time.perf_counter)
        packets = sum(r["links"][d]["packets_offered"] for d in ("uplink", "downlink"))
        print(f"ack_delay_ms {ms:5.1f}  packets {packets:6d}  "
              f"realtime factor {r['realtime_factor']:6.2f}  "
              f"audio on time {r['channels']['up']['audio']['on_time_ratio']}")


if __name__ == "__main__":
    main()
