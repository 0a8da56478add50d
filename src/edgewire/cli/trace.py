"""``edgewire trace analyze``: packet captures, qlogs and endpoint logs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from edgewire.errors import LocalProtocolError

__all__ = ["add_trace_parsers", "format_endpoint_logs", "format_flows", "run_trace"]


def add_trace_parsers(sub: Any) -> None:
    """Register ``trace analyze`` under the ``trace`` subparsers ``sub``."""
    a = sub.add_parser("analyze", help="flows, RTP and QUIC metrics of a pcap/pcapng, qlog "
                                       "or endpoint log; with FILE2, path delay and loss")
    a.add_argument("file", help="capture (pcap, pcapng), qlog (.qlog, .sqlog) or edgewire "
                                "endpoint log")
    a.add_argument("file2", nargs="?", help="the same traffic seen at the receiver side")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.add_argument("--report", metavar="DIR", help="write an HTML report with PNG plots")
    a.add_argument("--bin", type=float, default=1.0, help="throughput bin, s (default 1)")
    a.add_argument("--gap", type=float, default=0.5,
                   help="silence reported as a gap, s (default 0.5)")
    a.add_argument("--clock-rate", action="append", default=[], metavar="PT=HZ",
                   help="RTP clock rate of a dynamic payload type (repeatable)")
    a.add_argument("--max-flows", type=int, default=4096)
    a.add_argument("--quiet", action="store_true", help="no progress bar")


def _progress_bar(enabled: bool) -> Callable[[int, int], None] | None:
    if not enabled:
        return None
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25 and done < total:
            return
        last[0] = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        print(f"\rreading [{bar:<30}] {frac * 100:5.1f} % of {total / 1e6:.1f} MB",
              end="", file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)

    return show


def _config(args: argparse.Namespace) -> Any:
    from edgewire.traces.flows import AnalysisConfig

    rates: dict[int, int] = {}
    for item in args.clock_rate:
        try:
            pt, hz = item.split("=")
            rates[int(pt)] = int(hz)
        except ValueError:
            raise LocalProtocolError(f"--clock-rate: expected PT=HZ, got {item!r}") from None
    if not args.bin > 0 or not args.gap > 0 or args.max_flows < 1:
        raise LocalProtocolError("--bin and --gap must be > 0 and --max-flows >= 1")
    return AnalysisConfig(bin_s=args.bin, gap_s=args.gap, clock_rates=rates,
                          max_flows=args.max_flows)


def format_flows(result: dict[str, Any]) -> str:
    """The terminal summary table."""
    head = (f"{'flow':<46}{'kind':>5}{'packets':>10}{'bytes':>12}{'dur s':>9}{'kbit/s':>10}"
            f"{'lost':>7}{'loss %':>8}{'jit ms':>8}{'burst':>7}")
    lines = [head, "-" * len(head)]
    for f in result.get("flows", []):
        name = f"{f['src']}:{f['sport']} > {f['dst']}:{f['dport']}"
        rtp = f.get("rtp") or {}
        jit = rtp.get("jitter_ms_max")
        lines.append(
            f"{name[:45]:<46}{f['kind']:>5}{f['packets']:>10}{f['bytes']:>12}"
            f"{f['duration_s']:>9.2f}{f['throughput_kbps']:>10.1f}"
            f"{rtp.get('lost', '-')!s:>7}"
            f"{(format(rtp['loss_rate'] * 100, '.2f') if rtp else '-'):>8}"
            f"{(format(jit, '.2f') if jit is not None else '-'):>8}"
            f"{(format(rtp['burst_mean'], '.2f') if rtp.get('burst_mean') else '-'):>7}")
    for name, p in result.get("path", {}).get("flows", {}).items():
        d = p.get("delay_ms") or {}
        lines.append(f"path {name}: sent {p['sent']} received {p['received']} lost on path "
                     f"{p['lost_on_path']} ({p['loss_rate'] * 100:.2f} %), delay p50 "
                     f"{d.get('p50', float('nan')):.2f} ms p99 {d.get('p99', float('nan')):.2f}"
                     " ms")
    for p in result.get("problems", []):
        lines.append(f"problem: {p['message']} ({p['count']} records, first at record "
                     f"{p['records'][0] if p['records'] else '-'})")
    if result.get("noise"):
        lines.append("not UDP: " + ", ".join(f"{k} {v}" for k, v in result["noise"].items()))
    return "\n".join(lines)


def format_endpoint_logs(result: dict[str, Any]) -> str:
    """The terminal summary of two endpoint logs: per channel and direction, messages sent,
    received and lost, and the one-way delay."""
    head = (f"{'direction':<10}{'channel':<22}{'sent':>9}{'received':>10}{'lost':>8}"
            f"{'loss %':>8}{'unres.':>8}{'delay ms':>10}{'p50':>9}{'p99':>9}{'max':>9}")
    lines = [head, "-" * len(head)]
    for direction, part in (("forward", result), ("reverse", result.get("reverse") or {})):
        for name, f in part.get("flows", {}).items():
            d = f.get("delay_ms") or {}

            def ms(key: str, d: dict[str, Any] = d) -> str:
                return f"{d[key]:.2f}" if d.get(key) is not None else "-"

            lines.append(
                f"{direction:<10}{name[:21]:<22}{f['sent']:>9}{f['received']:>10}"
                f"{f['lost_on_path']:>8}{f['loss_rate'] * 100:>8.2f}"
                f"{f['unresolved_at_end']:>8}{ms('mean'):>10}{ms('p50'):>9}{ms('p99'):>9}"
                f"{ms('max'):>9}")
    lines.append("forward: FILE's sends received in FILE2; reverse: FILE2's sends received "
                 "in FILE; delay ms: mean (p50/p99 from 5 % bins)")
    problems = [*result.get("problems", []), *(result.get("reverse") or {}).get("problems", [])]
    for p in problems:
        lines.append(f"problem: {p['message']} ({p['count']} lines, first at line "
                     f"{p['records'][0] if p['records'] else '-'})")
    return "\n".join(lines)


def _compare_logs(first: str, second: str) -> dict[str, Any]:
    from edgewire.traces.endpoint_log import compare_endpoint_logs

    result = compare_endpoint_logs(first, second)
    result.pop("_series", None)
    # each endpoint logs both directions: the second's sends, received by the first
    reverse = compare_endpoint_logs(second, first)
    reverse.pop("_series", None)
    if reverse["flows"]:
        result["reverse"] = reverse
    return result


def run_trace(args: argparse.Namespace) -> int:
    """Entry of ``edgewire trace analyze``."""
    from edgewire.traces.capture import sniff_format

    fmt = sniff_format(args.file)
    result: dict[str, Any]
    if fmt in ("qlog", "sqlog"):
        from edgewire.traces.qlog import analyze_qlog

        result = analyze_qlog(args.file)
        print(json.dumps(result) if args.json else json.dumps(result, indent=1))
        return 0
    if fmt == "endpoint-log":
        if not args.file2:
            raise LocalProtocolError("an endpoint log is compared with the other endpoint's "
                                     "log: give the sender's log and the receiver's log")
        result = _compare_logs(args.file, args.file2)
        print(json.dumps(result) if args.json else format_endpoint_logs(result))
        return 0
    from edgewire.traces.analyze import analyze_capture

    cfg = _config(args)
    size = os.path.getsize(args.file)
    show = not args.quiet and (sys.stderr.isatty() or size > 64 << 20)
    analysis = analyze_capture(args.file, cfg, progress=_progress_bar(show))
    result = analysis.as_dict()
    path_result = None
    if args.file2:
        from edgewire.traces.match import capture_packets, match_streams
        from edgewire.traces.problems import Problems

        second = analyze_capture(args.file2, cfg)
        result["receiver"] = second.as_dict()
        probs = Problems()
        path_result = match_streams(capture_packets(args.file, probs),
                                    capture_packets(args.file2, probs))
        result["path"] = {k: v for k, v in path_result.items() if k != "_series"}
    if args.report:
        from edgewire.traces.report import write_report

        index = write_report(analysis, args.report, path_result)
        print(f"report: {index}", file=sys.stderr)
    print(json.dumps(result) if args.json else format_flows(result))
    return 0
