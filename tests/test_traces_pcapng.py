"""edgewire's own pcapng block reader: generated files with known contents (hypothesis), either
byte order, every timestamp resolution, every packet block kind, blocks split across reads,
cross-checked with scapy's reader, and damaged files (never a traceback)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewire.cli.bench_trace import write_udp_pcap, write_udp_pcapng
from edgewire.traces.analyze import analyze_capture
from edgewire.traces.capture import iter_chunks
from edgewire.traces.problems import Problems, TraceFormatError

# ---------------------------------------------------------------------- a pcapng writer


def _pad(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body = _pad(body)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _option(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + _pad(value)


@dataclass
class Expected:
    """What the reader must hand out, packet by packet, and the problems it must report."""

    packets: list[tuple[bytes, int, float, int]] = field(default_factory=list)
    """(captured bytes, original length, time, link type) of each good packet."""
    problems: dict[str, list[int]] = field(default_factory=dict)
    """Record indices per problem kind."""
    records: int = 0
    ends: list[tuple[int, int, int]] = field(default_factory=list)
    """(file offset after the block, packets delivered by then, packet records by then)."""


class NgWriter:
    """Builds a pcapng file block by block and the answer it must read as."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.exp = Expected()
        self.e = "<"
        self.ifaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, units, offset
        self.last_ts = 0.0

    def _add(self, block: bytes) -> None:
        self.out += block
        self.exp.ends.append((len(self.out), len(self.exp.packets), self.exp.records))

    def section(self, endian: str, *, version: int = 1) -> None:
        self.e = endian
        self.ifaces = []
        body = struct.pack(endian + "IHHq", 0x1A2B3C4D, version, 0, -1)
        self._add(_block(endian, 0x0A0D0D0A, body))

    def interface(self, linktype: int, snaplen: int, tsresol: int | None,
                  offset_s: int = 0, comment: bytes = b"") -> None:
        e = self.e
        opts = b""
        if comment:
            opts += _option(e, 1, comment)
        units = 1_000_000
        if tsresol is not None:
            opts += _option(e, 9, bytes([tsresol]))
            units = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** (tsresol & 0x7F)
        if offset_s:
            opts += _option(e, 14, struct.pack(e + "q", offset_s))
        if opts:
            opts += _option(e, 0, b"")
        self._add(_block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts))
        self.ifaces.append((linktype, snaplen, units, offset_s))

    def _ts(self, iface: int, ticks: int) -> float:
        _lt, _snap, units, offset = self.ifaces[iface]
        return ticks // units + (ticks % units) / units + offset

    def epb(self, iface: int, ticks: int, data: bytes, extra_len: int = 0,
            comment: bytes = b"", obsolete: bool = False) -> None:
        e = self.e
        first = (struct.pack(e + "HH", iface, 0) if obsolete else struct.pack(e + "I", iface))
        body = (first + struct.pack(e + "IIII", ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                    len(data) + extra_len) + _pad(data))
        if comment:
            body += _option(e, 1, comment) + _option(e, 0, b"")
        ts = self._ts(iface, ticks)
        self.exp.packets.append((data, len(data) + extra_len, ts, self.ifaces[iface][0]))
        self.exp.records += 1
        self.last_ts = ts
        self._add(_block(e, 2 if obsolete else 6, body))

    def spb(self, packet: bytes) -> None:
        e = self.e
        snaplen = self.ifaces[0][1]
        data = packet[:snaplen] if snaplen else packet
        self.exp.packets.append((data, len(packet), self.last_ts, self.ifaces[0][0]))
        self.exp.records += 1
        self._add(_block(e, 3, struct.pack(e + "I", len(packet)) + _pad(data)))

    def other(self, btype: int, body: bytes) -> None:
        self._add(_block(self.e, btype, body))

    def bad_interface_epb(self, data: bytes) -> None:
        e = self.e
        body = struct.pack(e + "IIIII", len(self.ifaces) + 3, 0, 0, len(data), len(data))
        self.exp.problems.setdefault("bad_interface", []).append(self.exp.records)
        self.exp.records += 1
        self._add(_block(e, 6, body + _pad(data)))


# ---------------------------------------------------------------------- reading back


def _read(path: Path, block_bytes: int = 4 << 20) -> tuple[list[tuple[bytes, int, float, int]],
                                                         Problems, list[int]]:
    problems = Problems()
    got: list[tuple[bytes, int, float, int]] = []
    firsts: list[int] = []
    for chunk in iter_chunks(path, problems, block_bytes=block_bytes):
        raw = chunk.data.tobytes()
        firsts.append(chunk.first_record)
        for o, c, w, t, lt in zip(chunk.off.tolist(), chunk.caplen.tolist(),
                                  chunk.wirelen.tolist(), chunk.ts.tolist(),
                                  chunk.linktype.tolist(), strict=True):
            got.append((raw[o:o + c], w, t, lt))
    return got, problems, firsts


def _same(got: list[tuple[bytes, int, float, int]],
          want: list[tuple[bytes, int, float, int]]) -> None:
    assert len(got) == len(want)
    for (d, w, t, lt), (d2, w2, t2, lt2) in zip(got, want, strict=True):
        assert (d, w, lt) == (d2, w2, lt2)
        assert t == pytest.approx(t2, abs=1e-6, rel=1e-12)


RESOLUTIONS = [None, 3, 6, 9, 0x80 | 10, 0x80 | 20, 0x80 | 30]
LINKTYPES = [1, 101, 113, 276]

_packet = st.binary(min_size=0, max_size=90)


@st.composite
def ng_files(draw: Any, damaged: bool = False) -> NgWriter:
    w = NgWriter()
    for _ in range(draw(st.integers(1, 3))):
        w.section(draw(st.sampled_from("<>")))
        if draw(st.booleans()):
            w.other(4, draw(st.binary(max_size=30)))  # name resolution: skipped
        for _ in range(draw(st.integers(0, 3))):
            w.interface(draw(st.sampled_from(LINKTYPES)),
                        draw(st.sampled_from([0, 40, 65535])),
                        draw(st.sampled_from(RESOLUTIONS)),
                        draw(st.sampled_from([0, 0, 1_700_000_000, -5])),
                        draw(st.sampled_from([b"", b"eth0 capture"])))
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.sampled_from(["epb", "epb", "pb", "spb", "other", "idb", "bad"]))
            if kind in ("epb", "pb") and w.ifaces:
                iface = draw(st.integers(0, len(w.ifaces) - 1))
                units = w.ifaces[iface][2]
                ticks = draw(st.integers(0, min(2**64 - 1, units * 4_000_000_000)))
                w.epb(iface, ticks, draw(_packet), draw(st.sampled_from([0, 0, 100])),
                      draw(st.sampled_from([b"", b"note"])), obsolete=kind == "pb")
            elif kind == "spb" and w.ifaces:
                w.spb(draw(_packet))
            elif kind == "other":
                w.other(draw(st.sampled_from([5, 0x0A, 0xBAD, 0x40000BAD])),
                        draw(st.binary(max_size=40)))
            elif kind == "idb":
                w.interface(draw(st.sampled_from(LINKTYPES)), 0,
                            draw(st.sampled_from(RESOLUTIONS)))
            elif kind == "bad" and damaged:
                w.bad_interface_epb(draw(_packet))
    return w


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(ng_files(damaged=True), st.sampled_from([12, 40, 100, 4096, 4 << 20]))
def test_reader_returns_what_was_written(tmp_path_factory: pytest.TempPathFactory,
                                         w: NgWriter, block_bytes: int) -> None:
    path = tmp_path_factory.mktemp("ng") / "f.pcapng"
    path.write_bytes(bytes(w.out))
    got, problems, firsts = _read(path, block_bytes)
    _same(got, w.exp.packets)
    kinds = {p["kind"]: p for p in problems.as_list()}
    assert set(kinds) == set(w.exp.problems)
    for kind, records in w.exp.problems.items():
        assert kinds[kind]["count"] == len(records)
        assert kinds[kind]["records"] == records[:5]
    assert firsts == sorted(firsts)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(ng_files(), st.data())
def test_truncated_file_keeps_every_whole_block(tmp_path_factory: pytest.TempPathFactory,
                                                w: NgWriter, data: Any) -> None:
    cut = data.draw(st.integers(4, len(w.out)))
    path = tmp_path_factory.mktemp("ng") / "f.pcapng"
    path.write_bytes(bytes(w.out[:cut]))
    got, problems, _ = _read(path, data.draw(st.sampled_from([16, 64, 4 << 20])))
    whole = [e for e in w.exp.ends if e[0] <= cut]
    delivered = whole[-1][1] if whole else 0
    _same(got, w.exp.packets[:delivered])
    at_boundary = cut in {e[0] for e in w.exp.ends}
    if at_boundary:
        assert problems.as_list() == []
    else:
        (p,) = problems.as_list()
        assert p["kind"] == "truncated_record"
        assert p["records"] == [whole[-1][2] if whole else 0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(ng_files(), st.data())
def test_corrupt_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, w: NgWriter,
                                   data: Any) -> None:
    raw = bytearray(w.out)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("ng") / "f.pcapng"
    path.write_bytes(bytes(raw))
    got, problems, _ = _read(path, data.draw(st.sampled_from([16, 4 << 20])))
    assert len(got) <= w.exp.records + len(raw) // 12
    for p in problems.as_list():
        assert all(isinstance(r, int) and r >= 0 for r in p["records"])
    analyze_capture(path)  # the whole analysis copes too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(st.sampled_from("<>"), st.sampled_from([None, 6, 9]),
       st.lists(st.tuples(st.integers(0, 2**40), _packet), min_size=1, max_size=20))
def test_agrees_with_scapys_reader(tmp_path_factory: pytest.TempPathFactory, endian: str,
                                   tsresol: int | None,
                                   packets: list[tuple[int, bytes]]) -> None:
    from scapy.utils import RawPcapNgReader

    w = NgWriter()
    w.section(endian)
    w.interface(1, 65535, tsresol)
    for ticks, data in packets:
        w.epb(0, ticks, data)
    path = tmp_path_factory.mktemp("ng") / "f.pcapng"
    path.write_bytes(bytes(w.out))
    got, problems, _ = _read(path)
    assert not problems
    theirs = []
    with RawPcapNgReader(str(path)) as r:
        for pkt, md in r:
            theirs.append((bytes(pkt), md.wirelen,
                           ((md.tshigh << 32) | md.tslow) / (md.tsresol or 1_000_000),
                           md.linktype))
    _same(got, theirs)


def _file(w: NgWriter, tmp_path: Path) -> Path:
    path = tmp_path / "f.pcapng"
    path.write_bytes(bytes(w.out))
    return path


def test_version_two_section_stops_reading(tmp_path: Path) -> None:
    w = NgWriter()
    w.section("<")
    w.interface(101, 0, None)
    w.epb(0, 5, b"a" * 30)
    w.section("<", version=2)
    w.interface(101, 0, None)
    w.epb(0, 6, b"b" * 30)
    got, problems, _ = _read(_file(w, tmp_path))
    assert [g[0] for g in got] == [b"a" * 30]
    (p,) = problems.as_list()
    assert (p["kind"], p["records"]) == ("unsupported_version", [1])


@pytest.mark.parametrize(("offset", "value", "message"), [
    (4, 7, "bad length"),  # the packet block's leading length, not a multiple of 4
    (4, 0x7FFFFFF0, "bad length"),  # far beyond any block
    (-4, 999, "trailing length"),  # the packet block's trailer
])
def test_undelimitable_block_ends_reading(tmp_path: Path, offset: int, value: int,
                                          message: str) -> None:
    w = NgWriter()
    w.section("<")
    w.interface(101, 0, 6)
    w.epb(0, 1, b"a" * 40)
    start = len(w.out)
    w.epb(0, 2, b"b" * 40)
    w.epb(0, 3, b"c" * 40)
    at = start + offset if offset >= 0 else start + 72 + offset  # a 72-byte block
    w.out[at:at + 4] = struct.pack("<I", value)
    got, problems, _ = _read(_file(w, tmp_path))
    assert [g[0] for g in got] == [b"a" * 40]
    (p,) = problems.as_list()
    assert p["kind"] == "corrupt_block"
    assert p["records"] == [1]
    assert message in p["message"]


def test_captured_length_past_its_block_is_skipped(tmp_path: Path) -> None:
    w = NgWriter()
    w.section(">")
    w.interface(101, 0, None)
    w.epb(0, 1, b"a" * 40)
    start = len(w.out)
    w.epb(0, 2, b"b" * 40)
    w.epb(0, 3, b"c" * 40)
    w.out[start + 20:start + 24] = struct.pack(">I", 500)  # caplen of the second packet
    got, problems, _ = _read(_file(w, tmp_path))
    assert [g[0] for g in got] == [b"a" * 40, b"c" * 40]
    (p,) = problems.as_list()
    assert (p["kind"], p["records"]) == ("corrupt_block", [1])


def test_not_pcapng_past_the_magic_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + b"garbage!" * 8)
    got, problems, _ = _read(path)
    assert got == []
    (p,) = problems.as_list()
    assert p["kind"] == "corrupt_block"
    with pytest.raises(TraceFormatError):
        _read(tmp_path / "missing.pcapng")


def test_bench_pcapng_matches_bench_pcap(tmp_path: Path) -> None:
    """The benchmark's two files hold the same packets, and read the same."""
    write_udp_pcap(tmp_path / "a.pcap", 5000)
    write_udp_pcapng(tmp_path / "a.pcapng", 5000)
    a = analyze_capture(tmp_path / "a.pcap")
    b = analyze_capture(tmp_path / "a.pcapng")
    assert (a.records, b.records) == (5000, 5000)
    assert not a.problems
    assert not b.problems
    strip = ("start_s", "duration_s", "throughput_kbps", "gaps", "interarrival_ms")
    assert [{k: v for k, v in f.items() if k not in strip} for f in a.flows] == \
        [{k: v for k, v in f.items() if k not in strip} for f in b.flows]
    for fa, fb in zip(a.flows, b.flows, strict=True):
        assert fa["duration_s"] == pytest.approx(fb["duration_s"], abs=1e-5)
