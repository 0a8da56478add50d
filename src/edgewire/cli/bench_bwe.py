"""``edgewire bench bwe``: edgewire's congestion control against reno and cubic.

Every run is a full session in netsim (virtual time, seeded) with the same scenario run
once per scheme in one invocation: "edgewire" (edgewire's controller with the default
"delivery" estimator), "edgewire-gcc" (the same controller with the "gcc" estimator),
and aioquic's "reno" and "cubic". The sender (the server, towards the client) carries
32 kbit/s audio plus a bulk embeddings transfer that always has data waiting, so the
congestion controller alone decides how fast it goes. Scenarios (RTT 50 ms, bottleneck
queue 100 packets): a constant 2 Mbit/s link; a step 2 → 0.5 → 2 Mbit/s; three real
cellular traces (Mahimahi format, ../shared/data/traces); and a competition on 2 Mbit/s
where tokens and adaptive video share the link with the bulk transfer.

Per run: throughput (delivered payload), utilization, p95 queueing delay, p95
self-inflicted queueing delay (less what the link imposed on each packet alone: a trace's
outages are not the sender's), p95 one-way delay; for the step, how fast the estimate and
the queue follow each step; for the competition, the token latency p95. ``--plot DIR``
draws Pantheon's chart (throughput against p95 one-way delay, one point per scheme and
scenario) and each edgewire run's estimate/capacity/queue timeline.

A 40 s run of a trace is one sample of it. ``--windows 0,20,40`` runs each trace once per
start (seconds into it, both directions, wrapping around: netsim's ``trace_start_ms``) and
the JSON's ``trace_windows`` says, per edgewire scheme and trace, on how many runs every
goal held, and lists every run beside reno's utilization and its trace window's profile
(``trace_profile``: how long each direction is dark, the share of the downlink's capacity
that falls while the uplink is dark, when no feedback can come back, and the share in the
first two seconds); ``--plot`` then also draws utilization against p95 queueing delay for
every run.

``--rtt-ms`` runs every scenario over a longer (or shorter) round trip: the goals are set
at 50 ms, and ``--rtt-ms 200 --only constant,step,competition`` asks how the controller
holds up on an intercontinental path (the token goal follows the round trip).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from edgewire.cli.netsim import bwe_setting
from edgewire.errors import LocalProtocolError
from edgewire.netsim.bwe_report import plot_timeline, pyplot, save_figure
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.netsim.trace import load_mahimahi
from edgewire.transport.bwe import BweConfig, config_changes, config_with

__all__ = ["SCHEMES", "add_bench_bwe_arguments", "main_bench_bwe", "run_bench_bwe"]

#: "edgewire" is edgewire's controller with the default estimator (delivery);
#: "edgewire-<estimator>" the same controller with another registered estimator.
SCHEMES = ("edgewire", "edgewire-gcc", "reno", "cubic")
#: Cellular traces (file stem) the benchmark replays, downlink and uplink.
TRACES = ("Verizon-LTE-short", "ATT-LTE-driving-2016", "TMobile-UMTS-driving")
#: Round trip (half each way; ``--rtt-ms`` changes it) and bottleneck queue of every
#: scenario.
K_RTT_MS = 50.0
K_QUEUE_PACKETS = 100
#: Round trips ``--rtt-ms`` accepts (ms).
K_RTT_RANGE_MS = (1.0, 2000.0)
#: Step scenario: capacity before, during and after the step, and when it steps.
K_STEP_KBPS = (2000, 500, 2000)
#: Goals of the issue, checked in the JSON.
K_CONSTANT_UTILIZATION = 0.90
K_CONSTANT_QUEUE_MS = 50.0
K_TRACE_UTILIZATION = 0.70
K_TRACE_QUEUE_MS = 100.0
K_STEP_ESTIMATE_S = 2.0
K_STEP_QUEUE_S = 3.0
K_STEP_UP_S = 5.0
K_THROUGHPUT_SLACK = 0.15
#: A trace's dark spell (no delivery opportunity) counts from this long: longer than the
#: window the edgewire sender has in flight at this RTT (min RTT + 80 ms), so a dark
#: uplink stalls it and a dark downlink strands what it had sent.
K_DARK_GAP_S = 0.2
#: The trace profile's startup span: a sender starting low learns the capacity over it.
K_STARTUP_S = 2.0


def _trace_dir() -> Path | None:
    here = Path(__file__).resolve()
    for base in (*here.parents, Path.cwd(), *Path.cwd().parents):
        cand = base / "shared" / "data" / "traces"
        if (cand / f"{TRACES[0]}.down").exists():
            return cand
    return None


def _bulk_down(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    # 768-dim float32 vectors in batches of 16: ~49 kB per message, offered far faster
    # than any link here carries, so the queue in edgewire always holds data
    down: dict[str, Any] = {"audio": {"bitrate_kbps": 32},
                            "embeddings": {"rate_per_s": 400, "dim": 768, "batch": 16}}
    down.update(extra or {})
    return down


def check_rtt_ms(rtt_ms: object) -> float:
    """``rtt_ms`` as a float; ValueError unless it is a number within K_RTT_RANGE_MS."""
    low, high = K_RTT_RANGE_MS
    if (isinstance(rtt_ms, bool) or not isinstance(rtt_ms, (int, float))
            or not (math.isfinite(rtt_ms) and low <= rtt_ms <= high)):
        raise ValueError(f"rtt must be {low:g}..{high:g} ms, got {rtt_ms!r}")
    return float(rtt_ms)


def trace_scenario_name(stem: str, start_s: float) -> str:
    """Name of the trace scenario of ``stem`` started ``start_s`` seconds in."""
    return f"trace-{stem}" if start_s == 0 else f"trace-{stem}@{start_s:g}s"


def scenarios(seconds: float, traces: Path | None,
              starts: tuple[float, ...] = (0.0,),
              rtt_ms: float = K_RTT_MS) -> list[dict[str, Any]]:
    """The scenario tables (TOML shape) of the benchmark; each trace is run once per
    start in ``starts`` (seconds into the trace, both directions; the trace wraps), and
    every link has ``rtt_ms`` of round-trip propagation delay (half each way)."""
    link = {"delay_ms": rtt_ms / 2, "queue_packets": K_QUEUE_PACKETS}
    out: list[dict[str, Any]] = [
        {"name": "constant-2mbps", "duration_s": seconds,
         "link": {**link, "rate_kbps": 2000}, "traffic": {"down": _bulk_down()}},
        {"name": "step-2-0.5-2mbps", "duration_s": 2 * seconds,
         "link": {**link, "rate_kbps": K_STEP_KBPS[0]},
         "events": [{"at_s": round(2 * seconds / 3, 3),
                     "downlink": {"rate_kbps": K_STEP_KBPS[1]}},
                    {"at_s": round(4 * seconds / 3, 3),
                     "downlink": {"rate_kbps": K_STEP_KBPS[2]}}],
         "traffic": {"down": _bulk_down()}},
    ]
    if traces is not None:
        for stem in TRACES:
            for start in starts:
                at = {"trace_start_ms": round(start * 1000)}
                out.append({"name": trace_scenario_name(stem, start),
                            "duration_s": 2 * seconds,
                            "uplink": {**link, "trace": str(traces / f"{stem}.up"), **at},
                            "downlink": {**link, "trace": str(traces / f"{stem}.down"),
                                         **at},
                            "traffic": {"down": _bulk_down()}})
    out.append({"name": "competition-2mbps", "duration_s": seconds,
                "link": {**link, "rate_kbps": 2000},
                "traffic": {"down": _bulk_down({
                    "tokens": {"rate_per_s": 50, "batch": 1},
                    "video": {"bitrate_kbps": 1500, "fps": 30}})}})
    return out


def _first_time(rows: list[dict[str, Any]], start: float, end: float,
                ok: Callable[[dict[str, Any]], bool]) -> float | None:
    """Seconds after ``start`` until the first row (before ``end``) that is ``ok``."""
    for r in rows:
        if start <= r["t"] < end and ok(r):
            return round(float(r["t"]) - start, 2)
    return None


def _settle_time(rows: list[dict[str, Any]], start: float, end: float,
                 limit_ms: float) -> float | None:
    """Seconds after ``start`` from which the p95 of the per-sample maximum queueing delay
    over the rest of [start, end) stays within ``limit_ms``."""
    window = [r for r in rows if start <= r["t"] < end]
    for i, r in enumerate(window):
        rest = [x["queue_delay_max_ms"] for x in window[i:]
                if x["queue_delay_max_ms"] is not None]
        if rest and float(np.percentile(rest, 95)) <= limit_ms:
            return round(float(r["t"]) - start, 2)
    return None


def _step_figures(result: dict[str, Any], seconds: float) -> dict[str, Any]:
    rows = result["bwe"]["timeline"]
    down_at, up_at = 2 * seconds / 3, 4 * seconds / 3
    low, high = K_STEP_KBPS[1], K_STEP_KBPS[2]

    def near_low(r: dict[str, Any]) -> bool:
        est = r["estimate_kbps"]
        return est is not None and abs(est - low) <= 0.2 * low

    def near_high(r: dict[str, Any]) -> bool:
        est = r["estimate_kbps"]
        return est is not None and est >= 0.8 * high

    return {
        "down_estimate_within_20pct_s": _first_time(rows, down_at, up_at, near_low),
        "down_queue_p95_under_50ms_s": _settle_time(rows, down_at, up_at, 50.0),
        "up_estimate_80pct_s": _first_time(rows, up_at, 2 * seconds, near_high),
    }


def scheme_transport(scheme: str) -> dict[str, str]:
    """The ``[transport]`` table of a scheme: a congestion controller registered with
    aioquic ("reno"), or "edgewire-<estimator>" (edgewire's with that estimator)."""
    from edgewire.transport.bwe import estimator_names
    from edgewire.transport.quicstats import congestion_control_names

    if scheme in congestion_control_names():
        return {"cc": scheme}
    cc, _, estimator = scheme.partition("-")
    if cc == "edgewire" and estimator in estimator_names():
        return {"cc": "edgewire", "estimator": estimator}
    raise ValueError(f"unknown scheme {scheme!r}: a congestion controller "
                     f"({', '.join(congestion_control_names())}) or edgewire-<estimator> "
                     f"({', '.join(estimator_names())})")


def _row(result: dict[str, Any]) -> dict[str, Any]:
    bwe = result["bwe"]
    link = result["links"]["downlink"]
    est = bwe.get("estimate_kbps") or {}
    return {
        "throughput_kbps": bwe["media_kbps"],
        "utilization": bwe["utilization"],
        "queue_delay_p95_ms": link["queue_delay_ms"]["p95"],
        "self_inflicted_p95_ms": link["self_inflicted_delay_ms"]["p95"],
        "delay_p95_ms": link["delay_ms"]["p95"],
        "estimate_mean_kbps": est.get("mean"),
        "capacity_kbps": link["capacity_kbps"],
        "loss_rate": link["loss_rate"],
    }


def _run_one(table: dict[str, Any], scheme: str, seed: int, seconds: float,
             plot_dir: Path | None,
             bwe: dict[str, object] | None = None) -> tuple[dict[str, Any], str | None]:
    """One scenario with one scheme: its row, and its timeline chart when drawn.
    ``bwe``: estimator settings for edgewire's schemes (``[transport.bwe]``)."""
    name = table["name"]
    transport: dict[str, Any] = dict(scheme_transport(scheme))
    if bwe and scheme.startswith("edgewire"):
        transport["bwe"] = bwe
    result = run_scenario(parse_scenario({**table, "seed": seed, "transport": transport}))
    row = _row(result)
    if name.startswith("step"):
        row.update(_step_figures(result, seconds))
    if name.startswith("competition"):
        row["tokens_latency_p95_ms"] = result["channels"]["down"]["tokens"]["latency_ms"]["p95"]
        row["video"] = result["channels"]["down"]["video"].get("ladder")
    plot = None
    if plot_dir is not None and scheme.startswith("edgewire") and "@" not in name:
        suffix = scheme.removeprefix("edgewire")
        plot = str(plot_timeline(result["bwe"], plot_dir / f"bwe-{name}{suffix}.png",
                                 title=f"{name}: {scheme} (downlink)"))
    return row, plot


def run_bench_bwe(*, seconds: float = 30.0, seed: int = 1,
                  schemes: tuple[str, ...] = SCHEMES, only: tuple[str, ...] = (),
                  plot_dir: Path | None = None, starts: tuple[float, ...] = (0.0,),
                  jobs: int = 1, bwe: Mapping[str, object] | None = None,
                  rtt_ms: float = K_RTT_MS,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every scenario x scheme; one JSON-ready dict (see the module docstring).
    ``starts``: seconds into each trace its runs start at (one run per start); ``jobs``:
    processes to run them in (the figures do not depend on it); ``bwe``: estimator
    settings for edgewire's schemes (``config_with`` keys: ``{"delivery.gain": 0.5}``),
    for trying a change of them on every scenario at once; ``rtt_ms``: the round-trip
    propagation delay of every scenario's link (the token goal follows it)."""
    rtt_ms = check_rtt_ms(rtt_ms)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    settings = dict(bwe or {})
    try:
        changed = config_changes(config_with(BweConfig(), settings))
    except LocalProtocolError as exc:
        raise ValueError(f"--bwe: {exc}") from None
    if not starts or any(not (math.isfinite(x) and x >= 0) for x in starts):
        raise ValueError(f"trace starts must be seconds >= 0, got {starts!r}")
    starts = tuple(dict.fromkeys(starts))  # in order, once each
    traces = _trace_dir()
    out: dict[str, Any] = {}
    plots: list[str] = []
    tables = [t for t in scenarios(seconds, traces, starts, rtt_ms)
              if not only or any(o in t["name"] for o in only)]
    if not tables:
        known = ", ".join(t["name"] for t in scenarios(seconds, traces))
        raise ValueError(f"--only {','.join(only)!r} matches no scenario (scenarios: {known})")
    runs = [(table, scheme) for table in tables for scheme in schemes]
    done: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}
    if jobs <= 1 or len(runs) <= 1:
        for table, scheme in runs:
            if progress:
                progress(f"bench bwe: {table['name']}, {scheme}")
            done[(table["name"], scheme)] = _run_one(table, scheme, seed, seconds, plot_dir,
                                                     settings)
    else:
        # every run is its own seeded virtual-time simulation: the same figures whatever
        # the number of processes, in the same order
        with ProcessPoolExecutor(max_workers=min(jobs, len(runs))) as pool:
            futures = {pool.submit(_run_one, table, scheme, seed, seconds, plot_dir,
                                   settings):
                       (table["name"], scheme) for table, scheme in runs}
            for count, future in enumerate(as_completed(futures), 1):
                key = futures[future]
                done[key] = future.result()
                if progress:
                    progress(f"bench bwe: {count}/{len(runs)} done ({key[0]}, {key[1]})")
    for table in tables:
        name = table["name"]
        rows: dict[str, Any] = {}
        for scheme in schemes:
            rows[scheme], plot = done[(name, scheme)]
            if plot is not None:
                plots.append(plot)
        out[name] = {"schemes": rows,
                     "goals": {s: _goals(name, rows, s, rtt_ms) for s in rows
                               if s.startswith("edgewire")}}
        if traces is not None and "trace_start_ms" in table.get("downlink", {}):
            stem = Path(table["downlink"]["trace"]).name.removesuffix(".down")
            out[name]["trace_profile"] = trace_profile(
                traces, stem, table["downlink"]["trace_start_ms"] / 1000,
                table["duration_s"])
    report: dict[str, Any] = {
        "params": {"seconds": seconds, "seed": seed, "rtt_ms": rtt_ms,
                   "queue_packets": K_QUEUE_PACKETS, "traces": str(traces) if traces else None,
                   "trace_starts_s": list(starts), "bwe": changed},
        "scenarios": out,
    }
    if traces is None:
        report["skipped"] = "cellular traces not found (../shared/data/traces)"
    elif len(starts) > 1:
        report["trace_windows"] = trace_windows(out, starts)
    if plot_dir is not None:
        first = {n: v for n, v in out.items() if "@" not in n}
        if first:
            plots.insert(0, str(pantheon_chart(first, plot_dir / "bwe-pantheon.png")))
        if "trace_windows" in report:
            plots.append(str(windows_chart(out, plot_dir / "bwe-windows.png")))
        report["plots"] = plots
    return report


def trace_profile(traces: Path, stem: str, start_s: float,
                  seconds: float) -> dict[str, Any]:
    """What the first ``seconds`` of trace ``stem``, read from ``start_s`` in (both
    directions, as the bench runs it), hold that a sender cannot see coming: seconds of
    dark spells (``K_DARK_GAP_S`` or longer) on each direction; the share of the
    downlink's capacity that falls while the uplink is dark (no feedback or ACK can come
    back then: a sender only uses it by sending blind, into a downlink that may be dark
    too); and the share in the first ``K_STARTUP_S`` seconds, which a sender starting at
    a few hundred kbit/s spends finding the capacity."""
    start_ms = round(start_s * 1000)
    down = load_mahimahi(traces / f"{stem}.down").starting_at(start_ms)
    up = load_mahimahi(traces / f"{stem}.up").starting_at(start_ms)
    total = down.opportunities_between(0.0, seconds)
    up_dark = up.dark_spells(0.0, seconds, K_DARK_GAP_S)
    down_dark = down.dark_spells(0.0, seconds, K_DARK_GAP_S)
    hidden = sum(down.opportunities_between(a, b) for a, b in up_dark)
    first = down.opportunities_between(0.0, min(K_STARTUP_S, seconds))
    return {
        "uplink_dark_s": round(sum(b - a for a, b in up_dark), 3),
        "downlink_dark_s": round(sum(b - a for a, b in down_dark), 3),
        "capacity_while_uplink_dark": round(hidden / total, 4) if total else None,
        "capacity_first_2s": round(first / total, 4) if total else None,
    }


def _window_runs(out: dict[str, Any], stem: str) -> list[tuple[str, dict[str, Any]]]:
    prefix = trace_scenario_name(stem, 0)
    return [(n, v) for n, v in out.items() if n == prefix or n.startswith(prefix + "@")]


def trace_windows(out: dict[str, Any], starts: tuple[float, ...]) -> dict[str, Any]:
    """Per edgewire scheme and trace: on how many of the runs (one per start) every goal
    of the scenario holds, which, and the mean utilization and the medians of the p95
    queueing delay and of its self-inflicted part over them; ``per_run`` lists each run
    with reno's utilization and its ``trace_profile`` when the run has one. A trace's 40 s
    is one sample of it: a small change to timing moves one run's p95 by tens of ms, so
    goals are judged over several."""
    summary: dict[str, Any] = {"starts_s": list(starts), "schemes": {}}
    schemes = sorted({s for v in out.values() for s in v["goals"]})
    for scheme in schemes:
        per: dict[str, Any] = {}
        for stem in TRACES:
            runs = [(n, v) for n, v in _window_runs(out, stem) if scheme in v["goals"]]
            if not runs:
                continue
            met = [n for n, v in runs if all(v["goals"][scheme].values())]
            rows = [v["schemes"][scheme] for _, v in runs]
            qds = [r["queue_delay_p95_ms"] for r in rows if r["queue_delay_p95_ms"] is not None]
            own = [r["self_inflicted_p95_ms"] for r in rows
                   if r.get("self_inflicted_p95_ms") is not None]
            detail = []
            for n, v in runs:
                row = v["schemes"][scheme]
                reno = v["schemes"].get("reno")
                detail.append({
                    "name": n, "met": n in met, "utilization": row["utilization"],
                    "queue_delay_p95_ms": row["queue_delay_p95_ms"],
                    "reno_utilization": reno["utilization"] if reno else None,
                    **v.get("trace_profile", {})})
            per[stem] = {
                "runs": len(runs), "all_goals_met": len(met), "met": met,
                "per_run": detail,
                "utilization_mean": round(float(np.mean([r["utilization"] or 0
                                                         for r in rows])), 4),
                "queue_delay_p95_ms_median": (round(float(np.median(qds)), 1)
                                              if qds else None),
                "self_inflicted_p95_ms_median": (round(float(np.median(own)), 1)
                                                 if own else None),
            }
        summary["schemes"][scheme] = per
    return summary


def windows_chart(out: dict[str, Any], path: Path) -> Path:
    """Utilization against p95 queueing delay, one point per scheme and trace start, one
    panel per trace, with the goal's corner (utilization >= 0.7, p95 <= 100 ms) shaded."""
    plt = pyplot()
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(TRACES), figsize=(4.6 * len(TRACES), 4.0), squeeze=False)
    colors = {"edgewire": "tab:blue", "edgewire-gcc": "tab:purple",
              "reno": "tab:orange", "cubic": "tab:green"}
    for ax, stem in zip(axes.flat, TRACES, strict=False):
        seen: set[str] = set()
        for name, v in _window_runs(out, stem):
            start = name.partition("@")[2].removesuffix("s") or "0"
            for scheme, row in v["schemes"].items():
                qd = row["queue_delay_p95_ms"]
                if qd is None:
                    continue
                ax.scatter([qd], [row["utilization"] or 0], color=colors.get(scheme, "k"),
                           s=36, label=None if scheme in seen else scheme)
                seen.add(scheme)
                ax.annotate(start, (qd, row["utilization"] or 0), fontsize=7,
                            textcoords="offset points", xytext=(4, 3))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        x0 = min(ax.get_xlim()[0], K_TRACE_QUEUE_MS / 2)
        y1 = max(ax.get_ylim()[1], 1.0)
        ax.fill_between([x0, K_TRACE_QUEUE_MS], K_TRACE_UTILIZATION, y1,
                        color="tab:green", alpha=0.08, lw=0)
        ax.set_xlim(left=x0)
        ax.set_ylim(top=y1)
        ax.axvline(K_TRACE_QUEUE_MS, color="grey", ls="--", lw=0.8)
        ax.axhline(K_TRACE_UTILIZATION, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{stem} (labels: start, s)", fontsize=9)
        ax.set_xlabel("p95 queueing delay (ms, log)")
        ax.set_ylabel("utilization")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def _goals(name: str, rows: dict[str, Any], scheme: str = "edgewire",
           rtt_ms: float = K_RTT_MS) -> dict[str, Any]:
    """The issue's goals for ``scheme`` in scenario ``name`` (links of ``rtt_ms``): True
    when met."""
    ew = rows.get(scheme)
    if ew is None:
        return {}
    goals: dict[str, Any] = {}
    qd = ew["queue_delay_p95_ms"]
    if name.startswith("constant"):
        goals["utilization>=0.90"] = (ew["utilization"] or 0) >= K_CONSTANT_UTILIZATION
        goals["queue_p95<=50ms"] = qd is not None and qd <= K_CONSTANT_QUEUE_MS
    if name.startswith("step"):
        for key, limit in (("down_estimate_within_20pct_s", K_STEP_ESTIMATE_S),
                           ("down_queue_p95_under_50ms_s", K_STEP_QUEUE_S),
                           ("up_estimate_80pct_s", K_STEP_UP_S)):
            goals[f"{key}<={limit}"] = ew.get(key) is not None and ew[key] <= limit
    if name.startswith("trace"):
        goals["utilization>=0.70"] = (ew["utilization"] or 0) >= K_TRACE_UTILIZATION
        goals["queue_p95<=100ms"] = qd is not None and qd <= K_TRACE_QUEUE_MS
    if name.startswith("competition"):
        tok = ew.get("tokens_latency_p95_ms")
        goals["tokens_p95<=2rtt+50ms"] = tok is not None and tok <= 2 * rtt_ms + 50
    for other in ("reno", "cubic"):
        o = rows.get(other)
        if o is None or o["delay_p95_ms"] is None or ew["delay_p95_ms"] is None:
            continue
        goals[f"lower_delay_than_{other}"] = ew["delay_p95_ms"] < o["delay_p95_ms"]
        goals[f"throughput>=85%_of_{other}"] = (
            ew["throughput_kbps"] >= (1 - K_THROUGHPUT_SLACK) * o["throughput_kbps"])
    return goals


def pantheon_chart(scenarios_out: dict[str, Any], path: Path) -> Path:
    """Throughput against p95 one-way delay, one point per scheme and scenario; the delay
    axis runs right to left, so better is up and to the right (Pantheon's convention)."""
    plt = pyplot()

    names = list(scenarios_out)
    cols = min(3, len(names))
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.6 * rows_n), squeeze=False)
    colors = {"edgewire": "tab:blue", "edgewire-gcc": "tab:purple",
              "reno": "tab:orange", "cubic": "tab:green"}
    for ax, name in zip(axes.flat, names, strict=False):
        for scheme, row in scenarios_out[name]["schemes"].items():
            if row["delay_p95_ms"] is None:
                continue
            ax.scatter([row["delay_p95_ms"]], [row["throughput_kbps"] / 1000],
                       color=colors.get(scheme, "k"), s=60, label=scheme)
            ax.annotate(scheme, (row["delay_p95_ms"], row["throughput_kbps"] / 1000),
                        textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.invert_xaxis()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("95th percentile one-way delay (ms)")
        ax.set_ylabel("throughput (Mbit/s)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return save_figure(fig, path)


def add_bench_bwe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench bwe``."""
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="simulated seconds of the constant and competition runs; the "
                             "step and trace runs take twice as long (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    add_schemes_argument(parser)
    parser.add_argument("--only", default="",
                        help="comma-separated substrings of scenario names to run")
    parser.add_argument("--windows", default="0", metavar="S,S,...",
                        help="seconds into each cellular trace its runs start at, one run "
                             "per start (the trace wraps around); with more than one, a "
                             "summary says on how many runs every goal holds (default 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="processes to run the scenarios in (default: one per CPU; "
                             "the figures are the same for any N)")
    parser.add_argument("--bwe", action="append", type=bwe_setting, metavar="KEY=VALUE",
                        help="an estimator setting for edgewire's schemes (a BweConfig "
                             "field, parts by dotted key: delivery.queue_target=0.02); "
                             "repeatable; reno and cubic run as they are")
    add_rtt_argument(parser)
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts into DIR")
    parser.add_argument("--json", action="store_true")


def add_schemes_argument(parser: argparse.ArgumentParser) -> None:
    """``--schemes``: the congestion controllers to run (every bwe bench)."""
    parser.add_argument("--schemes", default=",".join(SCHEMES),
                        help="comma-separated schemes: congestion controllers registered "
                             "with aioquic, or edgewire-<estimator> (default: "
                             f"{','.join(SCHEMES)})")


def add_rtt_argument(parser: argparse.ArgumentParser) -> None:
    """``--rtt-ms``: the round trip of every scenario's link."""
    parser.add_argument("--rtt-ms", type=float, default=K_RTT_MS, metavar="MS",
                        help="round-trip propagation delay of every scenario's link, half "
                             f"each way (default {K_RTT_MS:g}; the issue's goals are set "
                             "at 50)")


def _print_runs(runs: list[dict[str, Any]]) -> None:
    """One line per trace run: the figures, reno's utilization, the trace's profile."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    print(f"  {'run':<36}{'goals':>6}{'util':>6}{'qd p95':>8}{'reno':>6}"
          f"{'up dark':>9}{'down dark':>10}{'cap up dark':>12}{'cap 0-2s':>9}")
    for r in runs:
        print(f"  {r['name']:<36}{'met' if r['met'] else '-':>6}"
              f"{num(r['utilization'], '.2f'):>6}{num(r['queue_delay_p95_ms'], '.0f'):>8}"
              f"{num(r['reno_utilization'], '.2f'):>6}"
              f"{num(r.get('uplink_dark_s'), '.1f'):>9}"
              f"{num(r.get('downlink_dark_s'), '.1f'):>10}"
              f"{num(r.get('capacity_while_uplink_dark'), '.0%'):>12}"
              f"{num(r.get('capacity_first_2s'), '.0%'):>9}")


def print_goals(scenario: dict[str, Any]) -> None:
    """The text lines of one scenario's goals: each edgewire scheme's reaction times and
    token latency, then every goal, met or not."""
    for scheme, goals in scenario["goals"].items():
        extra = {k: v for k, v in scenario["schemes"][scheme].items()
                 if k.endswith("_s") or k.startswith("tokens")}
        if extra:
            print(f"  {scheme}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
        if goals:
            print(f"  {scheme} goals: " + ", ".join(f"{k} {'ok' if v else 'NOT MET'}"
                                                    for k, v in goals.items()))


def main_bench_bwe(args: argparse.Namespace, *,
                   progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: a table per scenario, or JSON with ``--json``."""
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    if not schemes:
        print("edgewire: error: --schemes names no scheme")
        return 2
    for scheme in schemes:
        try:
            scheme_transport(scheme)
        except ValueError as exc:
            print(f"edgewire: error: {exc}")
            return 2
    only = tuple(o.strip() for o in args.only.split(",") if o.strip())
    try:
        starts = tuple(float(x) for x in args.windows.split(",") if x.strip())
    except ValueError:
        print(f"edgewire: error: --windows wants seconds, comma-separated: {args.windows!r}")
        return 2
    try:
        result = run_bench_bwe(seconds=args.seconds, seed=args.seed, schemes=schemes,
                               only=only, plot_dir=Path(args.plot) if args.plot else None,
                               starts=starts, jobs=args.jobs,
                               bwe=dict(args.bwe) if args.bwe else None,
                               rtt_ms=args.rtt_ms, progress=progress)
    except ValueError as exc:
        print(f"edgewire: error: {exc}")
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    if result["params"]["rtt_ms"] != K_RTT_MS:
        print(f"every link: {result['params']['rtt_ms']:g} ms round trip")
    if result["params"]["bwe"]:
        print("edgewire's estimator settings: " + ", ".join(
            f"{k}={v}" for k, v in result["params"]["bwe"].items()))
    for name, sc in result["scenarios"].items():
        print(name)
        print(f"  {'scheme':<19}{'kbit/s':>9}{'util':>7}{'qd p95':>9}{'own p95':>9}"
              f"{'owd p95':>9}{'estimate':>10}")
        for scheme, row in sc["schemes"].items():
            print(f"  {scheme:<19}{row['throughput_kbps']:>9.0f}"
                  f"{(row['utilization'] or 0):>7.2f}{(row['queue_delay_p95_ms'] or 0):>9.1f}"
                  f"{(row['self_inflicted_p95_ms'] or 0):>9.1f}"
                  f"{(row['delay_p95_ms'] or 0):>9.1f}{(row['estimate_mean_kbps'] or 0):>10.0f}")
        print_goals(sc)
    for scheme, per in result.get("trace_windows", {}).get("schemes", {}).items():
        for stem, w in per.items():
            print(f"{scheme}: every goal met on {w['all_goals_met']} of {w['runs']} runs of "
                  f"{stem} (mean utilization {w['utilization_mean']:.2f}, median p95 "
                  f"queueing delay {w['queue_delay_p95_ms_median']} ms, of it "
                  f"self-inflicted {w['self_inflicted_p95_ms_median']} ms)")
            _print_runs(w["per_run"])
    for p in result.get("plots", []):
        print(f"plot: {p}")
    if result.get("skipped"):
        print(result["skipped"])
    return 0
