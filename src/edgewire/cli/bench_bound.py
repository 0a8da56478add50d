"""``edgewire bench bound``: how far a reactive sender could get on the bench's traces.

For each cellular trace of ``edgewire bench bwe`` (downlink, the first ``--seconds``),
sweeps the idealised sender of :mod:`edgewire.netsim.bound` twice: knowing exactly what
the bottleneck delivered (what feedback can tell) and knowing what it could have delivered
(an oracle of the past), both ``--lag-ms`` late. Prints the best utilisation within the
p95 queueing-delay goal and the frontier; ``--measured FILE`` (the JSON of ``edgewire
bench bwe --json``) puts each scheme's measured point beside it, and ``--plot DIR`` draws
the frontiers with those points (``bound.png``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgewire.cli.bench_bwe import K_QUEUE_PACKETS, K_TRACE_QUEUE_MS, TRACES, _trace_dir
from edgewire.errors import LocalProtocolError
from edgewire.netsim.bound import bound_summary, reactive_bound
from edgewire.netsim.bwe_report import pyplot, save_figure
from edgewire.netsim.trace import load_mahimahi

__all__ = ["add_bench_bound_arguments", "main_bench_bound", "run_bench_bound"]

KNOWLEDGE = ("delivered", "capacity")


def run_bench_bound(*, traces: Path, names: tuple[str, ...] = TRACES, seconds: float = 40.0,
                    lag_ms: float = 75.0, goal_ms: float = K_TRACE_QUEUE_MS,
                    queue_packets: int = K_QUEUE_PACKETS,
                    measured: dict[str, Any] | None = None,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The sweep for each trace; JSON-ready."""
    out: dict[str, Any] = {"seconds": seconds, "lag_ms": lag_ms, "goal_ms": goal_ms,
                           "queue_packets": queue_packets, "traces": {}}
    for name in names:
        trace = load_mahimahi(traces / f"{name}.down")
        entry: dict[str, Any] = {}
        for knowledge in KNOWLEDGE:
            if progress:
                progress(f"bound: {name} ({knowledge})")
            bound = reactive_bound(trace, seconds=seconds, lag=lag_ms / 1000,
                                   knowledge=knowledge,  # type: ignore[arg-type]
                                   queue_packets=queue_packets)
            entry[knowledge] = bound_summary(bound, goal_ms)
        if measured is not None:
            sc = measured.get("scenarios", {}).get(f"trace-{name}")
            if isinstance(sc, dict):
                entry["measured"] = {
                    scheme: {"utilization": row.get("utilization"),
                             "queue_delay_p95_ms": row.get("queue_delay_p95_ms")}
                    for scheme, row in sc.get("schemes", {}).items() if isinstance(row, dict)}
        out["traces"][name] = entry
    return out


def bound_chart(result: dict[str, Any], path: Path) -> Path:
    """Utilisation against p95 queueing delay: the two frontiers per trace, the goal,
    and the measured schemes."""
    plt = pyplot()

    names = list(result["traces"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False)
    styles = {"delivered": ("tab:blue", "knows delivered bytes"),
              "capacity": ("tab:gray", "knows past capacity")}
    colors = {"edgewire": "tab:blue", "edgewire-gcc": "tab:purple",
              "reno": "tab:orange", "cubic": "tab:green"}
    goal = result["goal_ms"]
    for ax, name in zip(axes.flat, names, strict=True):
        entry = result["traces"][name]
        for knowledge, (color, label) in styles.items():
            front = entry[knowledge]["frontier"]
            ax.step([p["queue_delay_p95_ms"] for p in front],
                    [p["utilization"] for p in front], where="post", color=color,
                    label=f"ideal, {label}")
        for scheme, row in entry.get("measured", {}).items():
            if row["utilization"] is None or row["queue_delay_p95_ms"] is None:
                continue
            ax.scatter([row["queue_delay_p95_ms"]], [row["utilization"]],
                       color=colors.get(scheme, "k"), marker="o", s=40, zorder=3)
            ax.annotate(scheme, (row["queue_delay_p95_ms"], row["utilization"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.axvline(goal, color="tab:red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("p95 queueing delay (ms)")
        ax.set_ylabel("utilization")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"idealised reactive sender, {result['lag_ms']:.0f} ms late "
                 f"(goal: p95 <= {goal:.0f} ms, red)", fontsize=9)
    return save_figure(fig, path)


def add_bench_bound_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench bound``."""
    parser.add_argument("--traces", metavar="DIR",
                        help="folder with the Mahimahi traces (default: shared/data/traces)")
    parser.add_argument("--names", default=",".join(TRACES),
                        help="comma-separated trace stems (NAME.down is read; default: "
                             "the traces of bench bwe)")
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="seconds of each trace (default 40: bench bwe --seconds 20)")
    parser.add_argument("--lag-ms", type=float, default=75.0,
                        help="how late the sender learns: RTT + a feedback interval "
                             "(default 75)")
    parser.add_argument("--goal-ms", type=float, default=K_TRACE_QUEUE_MS,
                        help="p95 queueing delay goal (default 100)")
    parser.add_argument("--queue-packets", type=int, default=K_QUEUE_PACKETS)
    parser.add_argument("--measured", metavar="FILE",
                        help="JSON of `edgewire bench bwe --json` to compare with")
    parser.add_argument("--plot", metavar="DIR", help="write bound.png into DIR")
    parser.add_argument("--json", action="store_true")


def main_bench_bound(args: argparse.Namespace, *,
                     progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: a line per trace and knowledge, or JSON with ``--json``."""
    traces = Path(args.traces) if args.traces else _trace_dir()
    if traces is None:
        print("edgewire: error: no trace folder found; pass --traces DIR")
        return 2
    names = tuple(n.strip() for n in args.names.split(",") if n.strip())
    if not names:
        print("edgewire: error: --names names no trace")
        return 2
    measured = None
    if args.measured:
        try:
            measured = json.loads(Path(args.measured).read_text())
        except (OSError, ValueError) as exc:
            print(f"edgewire: error: --measured {args.measured}: {exc}")
            return 2
        if not isinstance(measured, dict):
            print(f"edgewire: error: --measured {args.measured}: not a bench bwe JSON object")
            return 2
    try:
        result = run_bench_bound(traces=traces, names=names, seconds=args.seconds,
                                 lag_ms=args.lag_ms, goal_ms=args.goal_ms,
                                 queue_packets=args.queue_packets, measured=measured,
                                 progress=progress)
    except (ValueError, LocalProtocolError) as exc:
        print(f"edgewire: error: {exc}")
        return 2
    if args.plot:
        result["plot"] = str(bound_chart(result, Path(args.plot) / "bound.png"))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"idealised sender, {args.lag_ms:.0f} ms late; best utilization with p95 "
          f"queueing delay <= {args.goal_ms:.0f} ms")
    for name, entry in result["traces"].items():
        print(name)
        for knowledge in KNOWLEDGE:
            best = entry[knowledge]["best_within_goal"]
            text = (f"{best['utilization']:.2f} at {best['queue_delay_p95_ms']:.0f} ms "
                    f"(gain {best['gain']}, span {best['span_s']} s, drain "
                    f"{best['drain_s']} s)") if best else "none within the goal"
            print(f"  knows {knowledge:<10} {text}")
        for scheme, row in entry.get("measured", {}).items():
            if row["utilization"] is not None and row["queue_delay_p95_ms"] is not None:
                print(f"  measured {scheme:<12} {row['utilization']:.2f} at "
                      f"{row['queue_delay_p95_ms']:.0f} ms")
    if args.plot:
        print(f"chart: {result['plot']}")
    return 0
