"""``edgewire bench recovery``: what each loss-recovery mode buys, and what it costs.

Every run is a full edgewire session in netsim (virtual time, seeded): 60 s of 32 kbit/s
audio in 20 ms frames with a 150 ms deadline over a link with 40 ms one-way delay, lossy in
both directions (so NACKs, reports and parity are lost too). For each loss condition and
each mode: the audio on-time ratio, the recovery overhead (parity + retransmitted bytes ÷
media bytes) and the latency p99. Then 1.5 Mbit/s video (30 fps, 300 ms deadline) at 5 %
Bernoulli loss: the share of frames complete by their deadline, per mode.

The goals (with ``auto``): audio on time >= 99.5 % at 10 % loss, >= 99 % under bursty
loss (5 % mean, bursts of 4), >= 98 % at 20 % loss; video >= 99 % at 5 % loss.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport.recovery import RECOVERY_MODES

__all__ = ["CONDITIONS", "add_bench_recovery_arguments", "main_bench_recovery",
           "run_bench_recovery"]

#: Loss conditions of the audio runs: (name, loss table of the scenario, on-time goal).
CONDITIONS: tuple[tuple[str, dict[str, Any], float | None], ...] = (
    ("bernoulli-2%", {"model": "bernoulli", "rate": 0.02}, None),
    ("bernoulli-10%", {"model": "bernoulli", "rate": 0.10}, 0.995),
    ("bernoulli-20%", {"model": "bernoulli", "rate": 0.20}, 0.98),
    ("gilbert-5%-burst-4", {"model": "gilbert", "rate": 0.05, "burst": 4}, 0.99),
)
#: The video run's loss and goal (share of frames complete by the deadline).
VIDEO_CONDITION: tuple[str, dict[str, Any], float] = (
    "video-bernoulli-5%", {"model": "bernoulli", "rate": 0.05}, 0.99)
#: SRT's published rule of thumb for FEC overhead under steady loss: about 1.65 x loss.
K_SRT_OVERHEAD_PER_LOSS = 1.65


def _scenario(loss: dict[str, Any], mode: str, *, seconds: float, seed: int,
              video: bool) -> Any:
    up: dict[str, Any] = (
        {"video": {"bitrate_kbps": 1500, "fps": 30, "deadline_ms": 300, "adapt": False}}
        if video
        else {"audio": {"bitrate_kbps": 32, "frame_ms": 20, "deadline_ms": 150}})
    return parse_scenario({
        "name": f"recovery-{mode}", "duration_s": seconds, "seed": seed,
        "link": {"delay_ms": 40, "rate_kbps": 10_000, "queue_packets": 200, "loss": loss},
        "traffic": {"up": up},
        "transport": {"recovery": mode},
    })


def _row(result: dict[str, Any], kind: str) -> dict[str, Any]:
    ch = result["channels"]["up"][kind]
    rec = ch.get("recovery") or {}
    sender = rec.get("sender") or {}
    return {
        "on_time_ratio": ch["on_time_ratio"],
        "overhead": rec.get("overhead", 0.0),
        "latency_p99_ms": ch["latency_ms"]["p99"],
        "sent": ch["sent"],
        "on_time": ch["on_time"],
        "loss_before_recovery": result["links"]["uplink"]["loss_rate"],
        "fec": [sender.get("k", 0), sender.get("m", 0)],
        "arq": sender.get("arq", False),
    }


def run_bench_recovery(*, seconds: float = 60.0, seed: int = 1,
                       modes: tuple[str, ...] = RECOVERY_MODES,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every condition x mode; one JSON-ready dict."""
    audio: dict[str, Any] = {}
    for name, loss, goal in CONDITIONS:
        rows: dict[str, Any] = {}
        for mode in modes:
            if progress:
                progress(f"bench recovery: audio, {name}, {mode}")
            rows[mode] = _row(run_scenario(_scenario(loss, mode, seconds=seconds, seed=seed,
                                                     video=False)), "audio")
        rate = float(loss["rate"])
        audio[name] = {
            "loss": loss, "goal_on_time": goal, "modes": rows,
            "srt_overhead_guide": round(K_SRT_OVERHEAD_PER_LOSS * rate, 4),
            "ok": None if goal is None or "auto" not in rows
            else rows["auto"]["on_time_ratio"] >= goal,
        }
    vname, vloss, vgoal = VIDEO_CONDITION
    vrows: dict[str, Any] = {}
    for mode in modes:
        if progress:
            progress(f"bench recovery: video, {vname}, {mode}")
        vrows[mode] = _row(run_scenario(_scenario(vloss, mode, seconds=seconds, seed=seed,
                                                  video=True)), "video")
    video = {vname: {"loss": vloss, "goal_complete": vgoal, "modes": vrows,
                     "srt_overhead_guide": round(K_SRT_OVERHEAD_PER_LOSS * vloss["rate"], 4),
                     "ok": None if "auto" not in vrows
                     else vrows["auto"]["on_time_ratio"] >= vgoal}}
    oks = [c["ok"] for c in (*audio.values(), *video.values()) if c["ok"] is not None]
    return {"params": {"seconds": seconds, "seed": seed, "delay_ms": 40,
                       "audio": "32 kbit/s, 20 ms frames, 150 ms deadline",
                       "video": "1.5 Mbit/s, 30 fps, 300 ms deadline"},
            "audio": audio, "video": video, "all_ok": all(oks)}


def add_bench_recovery_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench recovery``."""
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="simulated seconds per run (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(RECOVERY_MODES),
                        help="comma-separated modes (default: all)")
    parser.add_argument("--json", action="store_true")


def main_bench_recovery(args: argparse.Namespace, *,
                        progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: a table per condition, or JSON with ``--json``."""
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in RECOVERY_MODES]
    if bad or not modes:
        print(f"edgewire: error: unknown recovery mode(s) {bad}; "
              f"choose from {', '.join(RECOVERY_MODES)}")
        return 2
    result = run_bench_recovery(seconds=args.seconds, seed=args.seed, modes=modes,
                                progress=progress)
    if args.json:
        print(json.dumps(result))
        return 0
    for part, label in (("audio", "on time"), ("video", "complete")):
        for name, cond in result[part].items():
            goal = cond.get("goal_on_time", cond.get("goal_complete"))
            print(f"{part} {name} (goal with auto: {goal}; SRT overhead guide "
                  f"{cond['srt_overhead_guide']:.3f})")
            print(f"  {'mode':<8}{label:>10}{'overhead':>10}{'p99 ms':>9}  fec(k,m) arq")
            for mode, row in cond["modes"].items():
                print(f"  {mode:<8}{row['on_time_ratio']:>10.4f}{row['overhead']:>10.3f}"
                      f"{row['latency_p99_ms'] or 0:>9.1f}  {row['fec']} {row['arq']}")
    return 0
