"""HTML report with PNG plots (matplotlib, Agg backend) of a capture analysis."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgewire.errors import LocalProtocolError
from edgewire.traces.analyze import CaptureAnalysis
from edgewire.traces.series import BinnedSeries, iat_edges

__all__ = ["write_report"]

K_TOP_FLOWS = 6


def _label(f: Any) -> str:
    return f"{f.src}:{f.sport} > {f.dst}:{f.dport} ({f.kind})"


def write_report(analysis: CaptureAnalysis, out_dir: str | Path,
                 path_result: dict[str, Any] | None = None) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalProtocolError(f"cannot create {out}: {exc.strerror}") from None
    flows = sorted(analysis.table.flows.values(), key=lambda f: -f.bytes)[:K_TOP_FLOWS]
    images: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(9, 4))
    for f in flows:
        s = f.series
        ax.plot(s.times(), s.sum[:s.used] * 8 / s.bin_s / 1000, label=_label(f))
    ax.set(xlabel="time (s)", ylabel="throughput (kbit/s)", title="Throughput over time")
    if flows:
        ax.legend(fontsize=7)
    images.append(("throughput.png", "Throughput over time (UDP payload, per flow)"))
    fig.savefig(out / images[-1][0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    plotted = False
    for f in flows:
        for st in f.rtp.values():
            st.summary()  # flushes the batched series
            _line(ax, st.jitter_series, f"jitter max {st.ssrc:#010x} (ms)", "max")
            plotted = True
    if path_result:
        for name, (delay, ipdv) in list(path_result.get("_series", {}).items())[:K_TOP_FLOWS]:
            _line(ax, delay, f"one-way delay {name} (ms)", "mean")
            _line(ax, ipdv, f"|IPDV| {name} (ms)", "mean")
            plotted = True
    ax.set(xlabel="time (s)", ylabel="ms", title="Delay and jitter over time")
    if plotted:
        ax.legend(fontsize=7)
    images.append(("delay_jitter.png", "RTP jitter (RFC 3550) and, with two captures, "
                   "one-way delay and delay variation"))
    fig.savefig(out / images[-1][0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    hists: list[tuple[str, dict[Any, int]]] = []
    for f in flows:
        for st in f.rtp.values():
            hists.append((f"RTP {st.ssrc:#010x}", st.summary()["burst_hist"]))
    for name, fr in (path_result or {}).get("flows", {}).items():
        hists.append((f"path {name}", fr["burst_hist"]))
    width = 0.8 / max(len(hists), 1)
    for i, (name, h) in enumerate(hists):
        ks = np.array(sorted(int(k) for k in h))
        if ks.size:
            ax.bar(ks + i * width, [h[k] if k in h else h[str(k)] for k in ks.tolist()],
                   width=width, label=name)
    ax.set(xlabel="burst length (packets)", ylabel="bursts", title="Loss bursts")
    if hists:
        ax.legend(fontsize=7)
    images.append(("loss_bursts.png", "Loss-burst length histogram"))
    fig.savefig(out / images[-1][0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    edges = iat_edges() * 1000
    for f in flows:
        total = f.iat_hist.sum()
        if total:
            ax.step(edges, np.cumsum(f.iat_hist) / total, where="post", label=_label(f))
    ax.set(xscale="log", xlabel="inter-arrival time (ms)", ylabel="CDF",
           title="Inter-arrival CDF")
    if flows:
        ax.legend(fontsize=7)
    images.append(("interarrival_cdf.png", "Inter-arrival time CDF per flow"))
    fig.savefig(out / images[-1][0], dpi=100)
    plt.close(fig)

    summary = analysis.as_dict()
    rows = "".join(
        f"<tr><td>{html.escape(str(fl['src']))}:{fl['sport']}</td>"
        f"<td>{html.escape(str(fl['dst']))}:{fl['dport']}</td><td>{fl['kind']}</td>"
        f"<td>{fl['packets']}</td><td>{fl['bytes']}</td><td>{fl['duration_s']:.3f}</td>"
        f"<td>{fl['throughput_kbps']:.1f}</td></tr>" for fl in summary["flows"][:200])
    body = "".join(f"<h2>{html.escape(cap)}</h2><img src='{name}' alt='{cap}'>"
                   for name, cap in images)
    data = json.dumps({k: v for k, v in (path_result or {}).items() if k != "_series"},
                      indent=1, default=str)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgewire trace "
            f"report</title></head><body><h1>{html.escape(analysis.path)}</h1>"
            f"<p>{analysis.records} records, format {analysis.format}</p><table border=1>"
            "<tr><th>source</th><th>destination</th><th>kind</th><th>packets</th>"
            "<th>bytes</th><th>duration (s)</th><th>kbit/s</th></tr>"
            f"{rows}</table>{body}<h2>Problems</h2><pre>"
            f"{html.escape(json.dumps(summary['problems'], indent=1))}</pre>"
            f"<h2>Path (two captures)</h2><pre>{html.escape(data)}</pre></body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _line(ax: Any, s: BinnedSeries, label: str, how: str) -> None:
    used = s.used
    if not used:
        return
    cnt = s.count[:used]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = s.max[:used] if how == "max" else s.sum[:used] / cnt
    y = np.where(cnt > 0, y, np.nan)
    ax.plot(s.times(), y, label=label)
