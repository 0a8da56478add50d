"""``edgewire bench bwe-rtt``: the bwe scenarios over a sweep of round trips.

The goals of ``edgewire bench bwe`` are set at a 50 ms round trip; a device talking to a
cloud region on another continent sees 150-300 ms, one behind a geostationary satellite
600 ms. This runs ``bench bwe``'s scenarios (by default the constant link, the step and
the competition) once per round trip in ``--rtt-ms`` (every link half each way, the token
goal following the round trip), with every scheme beside edgewire, and says at which
round trips every goal of a scenario holds. ``--plot DIR`` draws ``bwe-rtt.png``:
utilization and p95 queueing delay against the round trip, a line per scheme, a column
per scenario, the goals as dashed lines.

JSON: ``params``; ``rtts``: per round trip (ms, as a string key) ``bench bwe``'s
``scenarios`` object for it; ``all_goals_met``: per edgewire scheme and scenario, the
round trips at which every goal held.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgewire.cli.bench_bwe import (
    K_CONSTANT_QUEUE_MS,
    K_CONSTANT_UTILIZATION,
    K_TRACE_QUEUE_MS,
    K_TRACE_UTILIZATION,
    SCHEMES,
    add_schemes_argument,
    check_rtt_ms,
    run_bench_bwe,
    scheme_transport,
)
from edgewire.cli.netsim import bwe_setting
from edgewire.netsim.bwe_report import pyplot, save_figure

__all__ = ["DEFAULT_RTTS_MS", "add_bench_bwe_rtt_arguments", "main_bench_bwe_rtt",
           "parse_rtts", "rtt_chart", "run_rtt_sweep"]

#: Round trips swept by default (ms): the goals' own, then longer paths up to a
#: geostationary satellite's.
DEFAULT_RTTS_MS = (50.0, 100.0, 200.0, 300.0, 600.0)
#: Scenarios run by default (substrings of ``bench bwe``'s names).
DEFAULT_ONLY = ("constant", "step", "competition")
_COLORS = {"edgewire": "tab:blue", "edgewire-gcc": "tab:purple",
           "reno": "tab:orange", "cubic": "tab:green"}


def parse_rtts(text: str) -> tuple[float, ...]:
    """``"50,200,300"`` as round trips in ms, in the order given, each once; ValueError
    with the reason for anything else."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError("--rtt-ms names no round trip")
    rtts: list[float] = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--rtt-ms wants milliseconds, comma-separated: {part!r}") from None
        rtts.append(check_rtt_ms(value))
    return tuple(dict.fromkeys(rtts))


def run_rtt_sweep(rtts: tuple[float, ...], *, seconds: float = 20.0, seed: int = 1,
                  schemes: tuple[str, ...] = SCHEMES, only: tuple[str, ...] = DEFAULT_ONLY,
                  jobs: int = 1, bwe: dict[str, object] | None = None,
                  plot_dir: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``run_bench_bwe`` once per round trip in ``rtts`` (ms); one JSON-ready dict (see
    the module docstring). ``plot_dir``: write ``bwe-rtt.png`` there."""
    if not rtts:
        raise ValueError("no round trip to run")
    rtts = tuple(dict.fromkeys(check_rtt_ms(r) for r in rtts))
    per_rtt: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for i, rtt in enumerate(rtts, 1):
        def step(text: str, _i: int = i, _rtt: float = rtt) -> None:
            if progress:
                progress(f"bench bwe-rtt: {_rtt:g} ms ({_i}/{len(rtts)}): {text}")

        report = run_bench_bwe(seconds=seconds, seed=seed, schemes=schemes, only=only,
                               jobs=jobs, bwe=bwe, rtt_ms=rtt, progress=step)
        params = report["params"]
        per_rtt[f"{rtt:g}"] = report["scenarios"]
    met: dict[str, dict[str, list[float]]] = {}
    for key, scenarios in per_rtt.items():
        for name, sc in scenarios.items():
            for scheme, goals in sc["goals"].items():
                names = met.setdefault(scheme, {}).setdefault(name, [])
                if goals and all(goals.values()):
                    names.append(float(key))
    out: dict[str, Any] = {
        "params": {**{k: v for k, v in params.items() if k != "rtt_ms"},
                   "rtts_ms": list(rtts), "schemes": list(schemes), "only": list(only)},
        "rtts": per_rtt,
        "all_goals_met": met,
    }
    if plot_dir is not None:
        out["plots"] = [str(rtt_chart(out, plot_dir / "bwe-rtt.png"))]
    return out


def rtt_chart(sweep: dict[str, Any], path: Path) -> Path:
    """Utilization (top) and p95 queueing delay (bottom, log scale) against the round
    trip, a line per scheme and a column per scenario; the goals dashed."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    rtts = [float(k) for k in sweep["rtts"]]
    names = list(next(iter(sweep["rtts"].values())))
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.4), squeeze=False)
    for col, name in enumerate(names):
        util_ax, delay_ax = axes[0][col], axes[1][col]
        schemes = list(sweep["rtts"][f"{rtts[0]:g}"][name]["schemes"])
        for scheme in schemes:
            rows = [sweep["rtts"][f"{r:g}"][name]["schemes"][scheme] for r in rtts]
            color = _COLORS.get(scheme, "k")
            util_ax.plot(rtts, [r["utilization"] or 0 for r in rows], "o-", color=color,
                         label=scheme)
            delay_ax.plot(rtts, [max(r["queue_delay_p95_ms"] or 0, 0.1) for r in rows],
                          "o-", color=color, label=scheme)
        goal_util = goal_queue = None
        if name.startswith("constant"):
            goal_util, goal_queue = K_CONSTANT_UTILIZATION, K_CONSTANT_QUEUE_MS
        elif name.startswith("trace"):
            goal_util, goal_queue = K_TRACE_UTILIZATION, K_TRACE_QUEUE_MS
        if goal_util is not None:
            util_ax.axhline(goal_util, color="grey", linestyle="--", linewidth=1)
        if goal_queue is not None:
            delay_ax.axhline(goal_queue, color="grey", linestyle="--", linewidth=1)
        util_ax.set_title(name, fontsize=9)
        util_ax.set_ylabel("utilization")
        util_ax.set_ylim(0, 1.15)
        delay_ax.set_yscale("log")
        delay_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        delay_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        delay_ax.yaxis.set_minor_formatter(NullFormatter())
        delay_ax.set_ylabel("p95 queueing delay (ms)")
        delay_ax.set_xlabel("round trip (ms)")
        for ax in (util_ax, delay_ax):
            ax.grid(alpha=0.3)
        if col == 0:
            util_ax.legend(fontsize=8)
    fig.suptitle("bench bwe over round trips (netsim, seed "
                 f"{sweep['params'].get('seed')}, {sweep['params'].get('seconds'):g} s)",
                 fontsize=10)
    return save_figure(fig, path)


def add_bench_bwe_rtt_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench bwe-rtt``."""
    parser.add_argument("--rtt-ms", default=",".join(f"{r:g}" for r in DEFAULT_RTTS_MS),
                        metavar="MS,MS,...",
                        help="round trips to run every scenario at, half each way "
                             "(default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="simulated seconds of the constant and competition runs; the "
                             "step runs twice as long (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    add_schemes_argument(parser)
    parser.add_argument("--only", default=",".join(DEFAULT_ONLY),
                        help="comma-separated substrings of scenario names (default: "
                             "%(default)s; 'trace' adds the cellular traces)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="processes per round trip (default: one per CPU; the figures "
                             "are the same for any N)")
    parser.add_argument("--bwe", action="append", type=bwe_setting, metavar="KEY=VALUE",
                        help="an estimator setting for edgewire's schemes, as in bench bwe")
    parser.add_argument("--plot", metavar="DIR", help="write bwe-rtt.png into DIR")
    parser.add_argument("--json", action="store_true")


def _cell(row: dict[str, Any]) -> str:
    util = row["utilization"]
    qd = row["queue_delay_p95_ms"]
    return f"{'-' if util is None else f'{util:.2f}'} / {'-' if qd is None else f'{qd:.0f}'}"


def main_bench_bwe_rtt(args: argparse.Namespace, *,
                       progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: a table per scenario (a row per round trip), or JSON."""
    try:
        rtts = parse_rtts(args.rtt_ms)
        schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
        if not schemes:
            raise ValueError("--schemes names no scheme")
        for scheme in schemes:
            scheme_transport(scheme)
        only = tuple(o.strip() for o in args.only.split(",") if o.strip())
        result = run_rtt_sweep(rtts, seconds=args.seconds, seed=args.seed, schemes=schemes,
                               only=only, jobs=args.jobs,
                               bwe=dict(args.bwe) if args.bwe else None,
                               plot_dir=Path(args.plot) if args.plot else None,
                               progress=progress)
    except ValueError as exc:
        print(f"edgewire: error: {exc}")
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    first = next(iter(result["rtts"].values()))
    for name in first:
        print(f"{name}: utilization / p95 queueing delay (ms)")
        print(f"  {'RTT ms':>7}" + "".join(f"{s:>16}" for s in schemes))
        for key, scenarios in result["rtts"].items():
            rows = scenarios[name]["schemes"]
            print(f"  {key:>7}" + "".join(f"{_cell(rows[s]):>16}" for s in schemes))
        for scheme, per in result["all_goals_met"].items():
            good = per.get(name, [])
            print(f"  {scheme}: every goal met at "
                  + (", ".join(f"{r:g}" for r in good) + " ms" if good else "no round trip"))
    for p in result.get("plots", []):
        print(f"plot: {p}")
    return 0
