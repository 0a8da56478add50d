"""``edgewire netsim run`` and ``edgewire netsim probe``: scenarios in virtual time."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from edgewire.errors import LocalProtocolError
from edgewire.netsim.bwe_report import plot_timeline
from edgewire.netsim.multi import seeded_failover
from edgewire.netsim.run import RunOptions, run_probe, run_scenario
from edgewire.netsim.scenario import RECOVERY_MODES, load_scenario
from edgewire.transport.bwe import DEFAULT_ESTIMATOR, estimator_names, parse_setting

__all__ = ["ProgressBar", "add_netsim_parsers", "format_links", "parse_seeds", "run_netsim"]

LINK_COLUMNS = ("packets_offered", "packets_delivered", "lost_by_model", "dropped_by_queue",
                "loss_rate", "mean_burst_length", "throughput_kbps", "capacity_kbps")
CHANNEL_COLUMNS = ("sent", "delivered", "on_time_ratio", "p50", "p95", "p99", "goodput_kbps")


class ProgressBar:
    """A progress bar on stderr: redrawn in place on a terminal, a line per 10 % otherwise.
    Silent for runs that finish within ``min_wall_s`` of wall time."""

    def __init__(self, label: str, *, stream: TextIO | None = None,
                 min_wall_s: float = 1.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.min_wall_s = min_wall_s
        self._start = time.perf_counter()
        self._last_tenth = -1
        self._drawn = False

    def __call__(self, done: float, total: float) -> None:
        """Report ``done`` of ``total`` simulated seconds."""
        if time.perf_counter() - self._start < self.min_wall_s:
            return
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        if self.stream.isatty():
            width = 30
            filled = int(frac * width)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done:6.1f}/{total:.1f} s")
            self._drawn = True
        else:
            tenth = int(frac * 10)
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(f"{self.label}: {done:.1f}/{total:.1f} simulated s\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _cell(value: Any, width: int = 14) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text:>{width}}"


def format_links(links: dict[str, dict[str, Any]]) -> str:
    """The per-direction link table."""
    lines = [f"{'link':<10}" + "".join(_cell(c.replace('packets_', ''), 14)
                                       for c in LINK_COLUMNS)]
    for name, row in links.items():
        lines.append(f"{name:<10}" + "".join(_cell(row.get(c)) for c in LINK_COLUMNS))
        d = row.get("delay_ms") or {}
        q = row.get("queue_delay_ms") or {}
        lines.append(f"{'':<10}  delay ms p50 {d.get('p50')} p95 {d.get('p95')} "
                     f"p99 {d.get('p99')}; queue delay p95 {q.get('p95')} ms")
    return "\n".join(lines)


def format_channels(channels: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The per-channel table of both directions."""
    lines = [f"{'channel':<16}" + "".join(_cell(c, 12) for c in CHANNEL_COLUMNS)]
    for direction, rows in channels.items():
        for kind, row in rows.items():
            lat = row.get("latency_ms") or {}
            cells = {**row, **{k: lat.get(k) for k in ("p50", "p95", "p99")}}
            lines.append(f"{direction + ' ' + kind:<16}"
                         + "".join(_cell(cells.get(c), 12) for c in CHANNEL_COLUMNS))
    lines.append("latency in ms (capture to delivery); goodput in kbit/s")
    return "\n".join(lines)


def bwe_setting(text: str) -> tuple[str, object]:
    """argparse type of ``--bwe KEY=VALUE`` (the key is checked when the run starts)."""
    try:
        return parse_setting(text)
    except LocalProtocolError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_netsim_parsers(sub: Any) -> None:
    """Add ``run`` and ``probe`` to the ``netsim`` sub-command's subparsers."""
    r = sub.add_parser("run", help="run a scenario's traffic over an edgewire session in "
                                   "virtual time")
    r.add_argument("scenario", help="scenario TOML file (see docs/NETSIM.md)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--pcap", metavar="PREFIX",
                   help="write PREFIX-{uplink,downlink}-{in,out}.pcap")
    r.add_argument("--endpoint-log", metavar="PREFIX",
                   help="write PREFIX-client.log and PREFIX-server.log: every message each "
                        "endpoint sent and received (compare them with `edgewire trace "
                        "analyze PREFIX-client.log PREFIX-server.log`)")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--seeds", type=parse_seeds, metavar="A-B",
                   help="multi-endpoint scenarios: run once per seed (\"1-20\" or "
                        "\"1,5,9\") and report the p95 switch gap and token integrity "
                        "against the failover goal")
    r.add_argument("--cc", help="congestion controller (edgewire, reno, cubic, ...)")
    r.add_argument("--estimator", choices=estimator_names(),
                   help="bandwidth estimator (default: the scenario's, else "
                        f"{DEFAULT_ESTIMATOR})")
    r.add_argument("--bwe", action="append", type=bwe_setting, metavar="KEY=VALUE",
                   help="an estimator setting over the scenario's [transport.bwe] (a "
                        "BweConfig field, parts by dotted key: delivery.queue_target=0.02); "
                        "repeatable")
    r.add_argument("--plot", metavar="DIR",
                   help="write DIR/<scenario>-bwe.png: estimate, capacity and queueing "
                        "delay over time (needs matplotlib)")
    r.add_argument("--recovery", choices=RECOVERY_MODES,
                   help="loss recovery mode (default: the scenario's, else auto)")
    r.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("probe", help="raw probe packets through the scenario's links "
                                     "(no QUIC)")
    p.add_argument("scenario")
    p.add_argument("--packets", type=int, default=10_000, help="packets per direction")
    p.add_argument("--rate", type=float, default=1000.0, help="packets per second")
    p.add_argument("--size", type=int, default=1200, help="bytes per packet")
    p.add_argument("--seed", type=int)
    p.add_argument("--pcap", metavar="PREFIX")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")


def parse_seeds(text: str) -> list[int]:
    """``"1-20"``, ``"3"`` or ``"1,4,9"`` -> a list of seeds (at most 1000)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first:
                raise ValueError(part)
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r} (e.g. 1-20 or 1,4,9)") \
            from None
    if not 0 < len(seeds) <= 1000:
        raise argparse.ArgumentTypeError("give 1..1000 seeds")
    return seeds


def _run_seeds(scenario: Any, args: argparse.Namespace) -> int:
    summary = seeded_failover(scenario, args.seeds,
                              RunOptions(cc=args.cc, estimator=args.estimator,
                                         recovery=args.recovery,
                                         bwe=dict(args.bwe) if args.bwe else None))
    if args.json:
        print(json.dumps(summary))
    else:
        gap, tok = summary["gap_ms"], summary["tokens"]
        print(f"scenario {summary['scenario']}: {len(summary['seeds'])} seeds, "
              f"{summary['switches']} switches")
        print(f"gap_ms p50 {gap['p50']} p95 {gap['p95']} max {gap['max']} "
              f"(goal p95 <= {summary['goal']['gap_p95_ms']:g})")
        print(f"tokens sent {tok['sent']}: lost {tok['lost']}, duplicated "
              f"{tok['duplicated']}, reordered {tok['reordered']}, foreign {tok['foreign']}")
        print("goal met" if summary["goal"]["met"] else "goal NOT met")
    return 0 if summary["goal"]["met"] else 1


def run_netsim(args: argparse.Namespace) -> int:
    """Execute ``edgewire netsim run|probe``."""
    scenario = load_scenario(args.scenario)
    if args.netsim == "run" and getattr(args, "seeds", None):
        return _run_seeds(scenario, args)
    bar = None if args.quiet else ProgressBar(f"netsim {args.netsim}")
    if args.netsim == "run":
        opts = RunOptions(seed=args.seed, cc=args.cc, estimator=args.estimator,
                          recovery=args.recovery, bwe=dict(args.bwe) if args.bwe else None,
                          pcap_prefix=args.pcap, endpoint_log_prefix=args.endpoint_log)
        result = run_scenario(scenario, opts, progress=bar, wall_clock=time.perf_counter)
        if args.plot:
            bwe = result["bwe"]
            png = plot_timeline(bwe, Path(args.plot) / f"{result['scenario']}-bwe.png",
                                title=f"{result['scenario']}: {bwe['direction']}, "
                                      f"cc {result['transport']['cc']}")
            result["plots"] = [str(png)]
    else:
        result = run_probe(scenario, packets=args.packets, rate_pps=args.rate,
                           size_bytes=args.size, seed=args.seed, pcap_prefix=args.pcap,
                           progress=bar, wall_clock=time.perf_counter)
    if bar is not None:
        bar.finish()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"scenario {result['scenario']} (seed {result['seed']}): "
          f"{result['simulated_s']:.1f} simulated s in {result['wall_s']:.2f} s wall, "
          f"realtime factor {result['realtime_factor']}")
    print(format_links(result["links"]))
    if "channels" in result:
        print()
        print(format_channels(result["channels"]))
        session = result["session"]
        print(f"session ready after {session['ready_ms']} ms; "
              f"closed: {session['closed'] or 'no'}")
    bwe = result.get("bwe")
    if bwe and bwe.get("estimate_kbps"):
        est = bwe["estimate_kbps"]
        qd = bwe["queue_delay_ms"]
        print(f"bandwidth estimate ({bwe['direction']}): mean {est['mean']} kbit/s "
              f"(p5 {est['p5']}, p95 {est['p95']}); utilization {bwe['utilization']}; "
              f"queueing delay p50 {qd['p50']} ms, p95 {qd['p95']} ms")
    if result.get("pcap"):
        print("pcap: " + ", ".join(result["pcap"]))
    if result.get("endpoint_logs"):
        print("endpoint logs: " + ", ".join(result["endpoint_logs"]))
    if result.get("plots"):
        print("plots: " + ", ".join(result["plots"]))
    return 0
