"""Analysis of one capture file: read, decode, aggregate flows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewire.traces.capture import iter_chunks, sniff_format
from edgewire.traces.decode import decode_udp
from edgewire.traces.flows import AnalysisConfig, FlowTable
from edgewire.traces.problems import Problems

__all__ = ["CaptureAnalysis", "analyze_capture"]

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class CaptureAnalysis:
    """The result of :func:`analyze_capture`; ``as_dict()`` is the JSON form."""

    path: str
    format: str
    records: int
    table: FlowTable
    flows: list[dict[str, Any]]
    noise: dict[str, int]
    problems: Problems = field(default_factory=Problems)

    def as_dict(self) -> dict[str, Any]:
        """``{file, format, records, udp_packets, noise, problems, untracked, flows}``."""
        return {
            "file": self.path, "format": self.format, "records": self.records,
            "udp_packets": sum(int(f["packets"]) for f in self.flows)
            + self.table.untracked_packets,
            "noise": dict(self.noise),
            "untracked": {"packets": self.table.untracked_packets,
                          "bytes": self.table.untracked_bytes},
            "problems": self.problems.as_list(),
            "flows": self.flows,
        }


def analyze_capture(path: str | Path, cfg: AnalysisConfig | None = None, *,
                    progress: Progress | None = None) -> CaptureAnalysis:
    """Analyse a pcap or pcapng file in one streaming pass.

    Raises :class:`~edgewire.traces.problems.TraceFormatError` when the file is not a
    capture; damage inside a capture is reported in ``problems`` instead.
    """
    cfg = cfg or AnalysisConfig()
    fmt = sniff_format(path)
    problems = Problems()
    noise: dict[str, int] = {}
    table = FlowTable(cfg)
    records = 0
    for chunk in iter_chunks(path, problems, on_progress=progress):
        records += len(chunk.off)
        table.add(decode_udp(chunk, problems, noise), chunk.data)
    return CaptureAnalysis(path=str(path), format=fmt, records=records, table=table,
                           flows=table.finish(), noise=noise, problems=problems)
