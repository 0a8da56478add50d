"""``edgewire bench netsim``: is the link model accurate, and is the simulator fast?

Accuracy: raw probes (``run_probe``, no QUIC) through links with known parameters, the
measured figure set against the configured one and its tolerance:

* Bernoulli loss inside its 99 % binomial interval;
* Gilbert-Elliott mean loss and mean burst length within 10 %;
* a saturated fixed-rate bottleneck delivers within 2 % of its rate;
* a saturated Mahimahi-trace bottleneck delivers within 2 % of the trace's capacity over
  the same interval;
* delays are exact in virtual time (propagation + serialization, to the microsecond).

Speed: the realtime factor (simulated ÷ wall seconds) of a full edgewire session for a
60 s audio-only call and a 60 s call with 2 Mbit/s of video plus audio.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgewire.netsim.run import run_probe, run_scenario
from edgewire.netsim.scenario import Scenario, parse_scenario

__all__ = ["main_bench_netsim", "run_bench_netsim"]

#: z for a two-sided 99 % normal interval.
K_Z99 = 2.5758
_TRACE_NAME = "ATT-LTE-driving-2016.up"


def _trace_path() -> Path | None:
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "scenarios" / "traces" / _TRACE_NAME,
                  here.parents[4] / "shared" / "data" / "traces" / _TRACE_NAME]
    return next((p for p in candidates if p.exists()), None)


def _probe_scenario(link: dict[str, Any], *, seed: int = 11) -> Scenario:
    return parse_scenario({"name": "bench", "duration_s": 1, "seed": seed, "link": link})


def _check(name: str, configured: float, measured: float | None, low: float, high: float,
           unit: str = "") -> dict[str, Any]:
    ok = measured is not None and low <= measured <= high
    return {"check": name, "configured": round(configured, 6),
            "measured": None if measured is None else round(measured, 6),
            "low": round(low, 6), "high": round(high, 6), "unit": unit, "ok": ok}


def accuracy(packets: int) -> list[dict[str, Any]]:
    """Probe each link model with ``packets`` packets; one check per figure."""
    out: list[dict[str, Any]] = []

    rate = 0.05
    r = run_probe(_probe_scenario({"loss": {"model": "bernoulli", "rate": rate}}),
                  packets=packets, rate_pps=1000, size_bytes=200)["links"]["uplink"]
    half = K_Z99 * math.sqrt(rate * (1 - rate) / packets)
    out.append(_check("bernoulli loss rate (99% binomial interval)", rate, r["loss_rate"],
                      rate - half, rate + half))

    burst = 4.0
    r = run_probe(_probe_scenario({"loss": {"model": "gilbert", "rate": rate,
                                            "burst": burst}}),
                  packets=packets, rate_pps=1000, size_bytes=200)["links"]["uplink"]
    out.append(_check("gilbert mean loss rate (+-10%)", rate, r["loss_rate"],
                      rate * 0.9, rate * 1.1))
    out.append(_check("gilbert mean burst length (+-10%)", burst, r["mean_burst_length"],
                      burst * 0.9, burst * 1.1, "packets"))

    rate_kbps = 2000.0
    size = 1200
    # offered at 1.5x capacity: the queue never empties, so the link is saturated
    pps = 1.5 * rate_kbps * 1000 / (size * 8)
    r = run_probe(_probe_scenario({"rate_kbps": rate_kbps, "queue_packets": 100}),
                  packets=packets, rate_pps=pps, size_bytes=size)["links"]["uplink"]
    out.append(_check("fixed-rate throughput (+-2%)", rate_kbps, r["throughput_kbps"],
                      rate_kbps * 0.98, rate_kbps * 1.02, "kbit/s"))

    trace = _trace_path()
    if trace is not None:
        link = {"trace": str(trace), "queue_packets": 1000}
        # saturated means the queue never runs dry: offer 1.5x the trace's busiest 100 ms
        cap = _probe_scenario(link).uplink.trace
        assert cap is not None
        peak = max(cap.opportunities_between(t / 10, (t + 1) / 10)
                   for t in range(int(cap.period_ms / 100)))
        pps = 1.5 * peak * 10
        r = run_probe(_probe_scenario(link), packets=packets, rate_pps=pps,
                      size_bytes=1500)["links"]["uplink"]
        cap = r["capacity_kbps"]
        out.append(_check(f"trace throughput vs capacity ({trace.name}, +-2%)", cap,
                          r["throughput_kbps"], cap * 0.98, cap * 1.02, "kbit/s"))

    # 1200 bytes at 2000 kbit/s: 4.8 ms of serialization; offered below capacity so
    # nothing waits, every packet takes exactly 30 + 4.8 ms
    r = run_probe(_probe_scenario({"delay_ms": 30, "rate_kbps": 2000}),
                  packets=min(packets, 20_000), rate_pps=100, size_bytes=1200)
    d = r["links"]["uplink"]["delay_ms"]
    out.append(_check("delay exact: p50 (30 ms + 4.8 ms serialization)", 34.8, d["p50"],
                      34.8 - 1e-3, 34.8 + 1e-3, "ms"))
    out.append(_check("delay exact: p99", 34.8, d["p99"], 34.8 - 1e-3, 34.8 + 1e-3, "ms"))
    return out


def _call(video: bool, seconds: float) -> Scenario:
    up: dict[str, Any] = {"audio": {"bitrate_kbps": 32}}
    if video:
        up["video"] = {"bitrate_kbps": 2000, "fps": 30}
    return parse_scenario({
        "name": "call-video" if video else "call-audio", "duration_s": seconds, "seed": 3,
        "link": {"delay_ms": 20, "rate_kbps": 10_000, "queue_packets": 200},
        "traffic": {"up": up, "down": {"audio": {"bitrate_kbps": 32}}},
    })


def speed(seconds: float, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Realtime factors of the two calls (targets: 50 audio-only, 10 with video)."""
    out = []
    for video, target in ((False, 50.0), (True, 10.0)):
        sc = _call(video, seconds)
        if progress:
            progress(f"bench netsim: {sc.name}, {seconds:g} s call")
        r = run_scenario(sc, wall_clock=time.perf_counter)
        up = r["channels"]["up"]
        out.append({"call": sc.name, "simulated_s": r["simulated_s"], "wall_s": r["wall_s"],
                    "realtime_factor": r["realtime_factor"], "target": target,
                    "ok": (r["realtime_factor"] or 0) >= target,
                    "on_time_ratio": {k: v["on_time_ratio"] for k, v in up.items()}})
    return out


def run_bench_netsim(*, packets: int = 500_000, seconds: float = 60.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both parts; one JSON-ready dict."""
    if progress:
        progress(f"bench netsim: accuracy probes, {packets} packets each")
    acc = accuracy(packets)
    spd = speed(seconds, progress)
    return {"accuracy": acc, "speed": spd,
            "all_ok": all(c["ok"] for c in acc) and all(s["ok"] for s in spd)}


def main_bench_netsim(args: argparse.Namespace, *,
                      progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: print a table, or JSON with ``--json``."""
    result = run_bench_netsim(packets=args.packets, seconds=args.seconds, progress=progress)
    if args.json:
        print(json.dumps(result))
        return 0
    for c in result["accuracy"]:
        mark = "ok  " if c["ok"] else "FAIL"
        print(f"{mark} {c['check']:<58} configured {c['configured']:<10} measured "
              f"{c['measured']} {c['unit']}")
    for s in result["speed"]:
        mark = "ok  " if s["ok"] else "FAIL"
        print(f"{mark} {s['call']:<12} realtime factor {s['realtime_factor']} "
              f"(target >= {s['target']:g}; {s['simulated_s']:.0f} s in {s['wall_s']} s)")
    return 0
