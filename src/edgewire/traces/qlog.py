"""qlog readers: aioquic's JSON (qlog 0.3, ``QuicFileLogger``) and JSON-SEQ (``.sqlog``).

JSON-SEQ is streamed record by record. A JSON qlog is one document, so it is parsed whole;
files above ``K_MAX_JSON_BYTES`` are refused with a clear error (convert them to JSON-SEQ).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from edgewire.traces.capture import sniff_format
from edgewire.traces.problems import Problems, TraceFormatError

__all__ = ["K_MAX_JSON_BYTES", "QlogSummary", "analyze_qlog", "iter_qlog_events"]

K_MAX_JSON_BYTES = 256 << 20
_RS = b"\x1e"


def iter_qlog_events(path: str | Path, problems: Problems
                     ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """``(trace index, trace header, event)`` for every event, in file order."""
    fmt = sniff_format(path)
    if fmt == "qlog":
        yield from _json_events(Path(path))
    elif fmt == "sqlog":
        yield from _seq_events(Path(path), problems)
    else:
        raise TraceFormatError(f"{path} is a {fmt} file, not a qlog")


def _json_events(path: Path) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    if path.stat().st_size > K_MAX_JSON_BYTES:
        raise TraceFormatError(f"{path}: JSON qlog over {K_MAX_JSON_BYTES >> 20} MiB; "
                               "write JSON-SEQ (.sqlog) for long traces")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"{path}: not valid JSON ({exc})") from None
    traces = doc.get("traces") if isinstance(doc, dict) else None
    if not isinstance(traces, list):
        raise TraceFormatError(f"{path}: a JSON document without a qlog 'traces' list")
    for i, trace in enumerate(traces):
        if not isinstance(trace, dict):
            continue
        for ev in trace.get("events") or []:
            if isinstance(ev, dict):
                yield i, trace, ev


def _seq_events(path: Path, problems: Problems
                ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    header: dict[str, Any] = {}
    for index, rec in enumerate(_records(path)):
        try:
            obj = json.loads(rec)
        except (ValueError, UnicodeDecodeError):
            problems.add("bad_qlog_record", "JSON-SEQ record that is not JSON", index)
            continue
        if not isinstance(obj, dict):
            problems.add("bad_qlog_record", "JSON-SEQ record that is not an object", index)
        elif index == 0 and "qlog_version" in obj:
            header = obj.get("trace") or {}
        else:
            yield 0, header, obj


def _records(path: Path) -> Iterator[bytes]:
    carry = b""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            parts = (carry + block).split(_RS)
            carry = parts.pop()
            if len(carry) > 16 << 20:  # one record cannot hold the reader hostage
                raise TraceFormatError(f"{path}: JSON-SEQ record over 16 MiB")
            yield from (p for p in parts if p.strip())
    if carry.strip():
        yield carry


class QlogSummary:
    """Per-trace figures of a qlog: packets, bytes, loss, RTT, congestion window."""

    def __init__(self, header: dict[str, Any]) -> None:
        vp = header.get("vantage_point") or {}
        self.vantage = vp.get("type") if isinstance(vp, dict) else None
        self.counts = {"packets_sent": 0, "packets_received": 0, "bytes_sent": 0,
                       "bytes_received": 0, "packets_lost": 0, "datagram_frames_sent": 0,
                       "datagram_frames_received": 0}
        self.rtt: list[float] = [0.0, float("inf"), 0.0, 0.0]  # n, min, max, sum
        self.smoothed: float | None = None
        self.cwnd_max = 0
        self.cwnd_last: int | None = None
        self.first: float | None = None
        self.last = 0.0
        self.handshake_done: float | None = None

    def add(self, ev: dict[str, Any]) -> None:
        """Fold one event in."""
        name = str(ev.get("name", ""))
        raw_data = ev.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        t = ev.get("time")
        t = float(t) if isinstance(t, int | float) else None
        if t is not None:
            self.first = t if self.first is None else min(self.first, t)
            self.last = max(self.last, t)
        if name in ("transport:packet_sent", "transport:packet_received"):
            way = "sent" if name.endswith("sent") else "received"
            self.counts[f"packets_{way}"] += 1
            raw_obj = data.get("raw")
            raw: dict[str, Any] = raw_obj if isinstance(raw_obj, dict) else {}
            length = raw.get("length")
            self.counts[f"bytes_{way}"] += int(length) if isinstance(length, int) else 0
            for fr in data.get("frames") or []:
                ftype = fr.get("frame_type") if isinstance(fr, dict) else None
                if ftype == "datagram":
                    self.counts[f"datagram_frames_{way}"] += 1
                elif ftype == "handshake_done" and self.handshake_done is None:
                    self.handshake_done = t
        elif name == "recovery:packet_lost":
            self.counts["packets_lost"] += 1
        elif name == "recovery:metrics_updated":
            rtt = data.get("latest_rtt")
            if isinstance(rtt, int | float):
                self.rtt[0] += 1
                self.rtt[1] = min(self.rtt[1], float(rtt))
                self.rtt[2] = max(self.rtt[2], float(rtt))
                self.rtt[3] += float(rtt)
            if isinstance(data.get("smoothed_rtt"), int | float):
                self.smoothed = float(data["smoothed_rtt"])
            cwnd = data.get("congestion_window")
            if isinstance(cwnd, int):
                self.cwnd_last = cwnd
                self.cwnd_max = max(self.cwnd_max, cwnd)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (times in ms, as qlog gives them)."""
        n = int(self.rtt[0])
        sent = self.counts["packets_sent"]
        return {
            "vantage_point": self.vantage, **self.counts,
            "loss_rate": self.counts["packets_lost"] / sent if sent else 0.0,
            "duration_ms": self.last - self.first if self.first is not None else 0.0,
            "handshake_ms": (self.handshake_done - self.first
                             if self.handshake_done is not None and self.first is not None
                             else None),
            "latest_rtt_ms": ({"samples": n, "min": self.rtt[1], "max": self.rtt[2],
                               "mean": self.rtt[3] / n} if n else None),
            "smoothed_rtt_ms": self.smoothed,
            "cwnd_bytes": {"max": self.cwnd_max, "last": self.cwnd_last},
        }


def analyze_qlog(path: str | Path) -> dict[str, Any]:
    """``{file, format, traces: [summary per trace], problems}`` of a qlog file."""
    problems = Problems()
    summaries: dict[int, QlogSummary] = {}
    events: Iterable[tuple[int, dict[str, Any], dict[str, Any]]] = iter_qlog_events(
        path, problems)
    for i, header, ev in events:
        if i not in summaries:
            if len(summaries) >= 1024:  # bounded: traces beyond this are not summarised
                continue
            summaries[i] = QlogSummary(header)
        summaries[i].add(ev)
    return {"file": str(path), "format": sniff_format(path),
            "traces": [s.as_dict() for s in summaries.values()],
            "problems": problems.as_list()}
