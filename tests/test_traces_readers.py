"""Readers and flow classification of edgewire.traces on scapy-generated captures, and
bad input."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether, Loopback
from scapy.layers.rtp import RTP
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter, wrpcap

from edgewire.cli.main import main
from edgewire.traces.analyze import analyze_capture
from edgewire.traces.capture import sniff_format
from edgewire.traces.problems import TraceFormatError


def _udp(sport: int = 5000, dport: int = 6000, payload: bytes = b"x" * 20,
         v6: bool = False) -> Packet:
    ip: Packet = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else \
        IP(src="192.0.2.1", dst="192.0.2.2")
    return ip / UDP(sport=sport, dport=dport) / Raw(payload)


def _write(path: Path, pkts: list[Packet], linktype: int | None = None) -> Path:
    for i, p in enumerate(pkts):
        p.time = 100.0 + i * 0.01
    wrpcap(str(path), pkts, linktype=linktype)
    return path


def _eth(**kw: Any) -> Packet:
    # explicit addresses: otherwise scapy looks the MAC up (ARP) for every packet
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


LINKS: dict[str, tuple[Any, int | None]] = {
    "ethernet": (lambda ip: _eth() / ip, None),
    "vlan": (lambda ip: _eth() / Dot1Q(vlan=7) / ip, None),
    "qinq": (lambda ip: _eth(type=0x88A8) / Dot1Q(vlan=1, type=0x8100) / Dot1Q(vlan=2) / ip,
             None),
    "sll": (lambda ip: CookedLinux(proto=0x86DD if ip.version == 6 else 0x0800) / ip, 113),
    "sll2": (lambda ip: CookedLinuxV2(proto=0x86DD if ip.version == 6 else 0x0800) / ip,
             276),
    "raw": (lambda ip: ip, 101),
    "null": (lambda ip: Loopback(type=24 if ip.version == 6 else 2) / ip, 0),
}


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("link", sorted(LINKS))
def test_every_link_type(tmp_path: Path, link: str, v6: bool) -> None:
    wrap, lt = LINKS[link]
    pkts = [wrap(_udp(payload=bytes([i]) * (10 + i), v6=v6)) for i in range(5)]
    a = analyze_capture(_write(tmp_path / "c.pcap", pkts, lt))
    assert not a.problems, a.problems.as_list()
    (flow,) = a.flows
    assert flow["src"] == ("2001:db8::1" if v6 else "192.0.2.1")
    assert (flow["sport"], flow["dport"], flow["kind"]) == (5000, 6000, "udp")
    assert flow["packets"] == 5
    assert flow["bytes"] == sum(10 + i for i in range(5))
    assert flow["duration_s"] == pytest.approx(0.04)


def test_pcapng_and_ipv6_extension_headers(tmp_path: Path) -> None:
    pkts = [_eth() / _udp(payload=b"a" * 30, v6=True),
            _eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt()
            / UDP(sport=5000, dport=6000) / Raw(b"b" * 30)]
    path = tmp_path / "c.pcapng"
    with PcapNgWriter(str(path)) as w:
        for i, p in enumerate(pkts):
            p.time = 5.0 + i * 0.5
            w.write(p)
    assert sniff_format(path) == "pcapng"
    a = analyze_capture(path)
    (flow,) = a.flows
    assert flow["packets"] == 2
    assert flow["duration_s"] == pytest.approx(0.5)


def test_nanosecond_pcap(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    pkt = bytes(_udp())
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101))
        for i in range(3):
            f.write(struct.pack("<IIII", 7, 250_000_000 * i, len(pkt), len(pkt)) + pkt)
    (flow,) = analyze_capture(path).flows
    assert flow["duration_s"] == pytest.approx(0.5)


def _rtp(seq: int, ts: int, ssrc: int = 0x1234, pt: int = 0) -> Packet:
    return (IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7000, dport=7002)
            / RTP(sequence=seq, timestamp=ts, sourcesync=ssrc, payload_type=pt)
            / Raw(b"\xff" * 160))


def test_classification(tmp_path: Path) -> None:
    initial = (bytes([0xC3]) + (1).to_bytes(4, "big") + b"\x08" + b"\x11" * 8 + b"\x00"
               + b"\x00" * 40)
    short = bytes([0x40]) + b"\x11" * 8 + b"\x00" * 40
    pkts: list[Packet] = []
    for i in range(20):
        pkts.append(_rtp(65530 + i & 0xFFFF, i * 160) if i != 7 else _rtp(0, 0, ssrc=9))
        pkts.append(IP(src="10.0.0.1", dst="10.0.0.9") / UDP(sport=4000, dport=4433)
                    / Raw(initial if i == 0 else short))
        pkts.append(IP(src="10.0.0.9", dst="10.0.0.1") / UDP(sport=4433, dport=4000)
                    / Raw(short))
        pkts.append(IP(src="10.0.0.5", dst="10.0.0.6") / UDP(sport=1, dport=2)
                    / Raw(bytes([i]) * 50))
        pkts.append(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7001, dport=7003)
                    / Raw(bytes([0x80, 200, 0, 6]) + b"\x00" * 24))
    a = analyze_capture(_write(tmp_path / "c.pcap", pkts, 101))
    kinds = {(f["sport"], f["dport"]): f for f in a.flows}
    assert kinds[(4000, 4433)]["kind"] == "quic"
    assert kinds[(4000, 4433)]["quic"]["versions"] == ["0x00000001"]
    assert kinds[(4433, 4000)]["kind"] == "quic"  # short headers answering a QUIC flow
    assert kinds[(1, 2)]["kind"] == "udp"
    assert kinds[(7001, 7003)]["kind"] == "rtp"
    assert kinds[(7001, 7003)]["rtcp_packets"] == 20
    rtp = kinds[(7000, 7002)]
    assert rtp["kind"] == "rtp"
    assert rtp["rtp"]["ssrc"] == 0x1234
    assert rtp["rtp"]["packets"] == 19
    assert rtp["rtp"]["lost"] == 1  # the sequence wraps through 65535 and one is missing
    assert len(rtp["rtp_streams"]) == 2


def test_bad_input_is_reported_with_record_index(tmp_path: Path) -> None:
    pkts: list[Packet] = [_udp(), IP() / TCP(), IP() / ICMP(), _udp(), _udp(), _udp()]
    path = _write(tmp_path / "c.pcap", pkts, 101)
    data = bytearray(path.read_bytes())
    # cut record 4 at a snaplen of 24 bytes (inside the UDP header)
    offs, pos = [], 24
    while pos < len(data):
        offs.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    struct.pack_into("<I", data, offs[4] + 8, 24)
    data = data[:offs[4] + 16 + 24] + data[offs[5]:]
    # corrupt the record length of the last record, then add trailing garbage
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(bytes(data))
    a = analyze_capture(cut)
    probs = {p["kind"]: p for p in a.problems.as_list()}
    assert probs["cut_in_udp_header"]["records"] == [4]
    assert a.noise == {"tcp": 1, "icmp": 1}
    assert a.flows[0]["packets"] == 3
    trunc = tmp_path / "trunc.pcap"
    trunc.write_bytes(bytes(data[:-10]))
    a = analyze_capture(trunc)
    assert {p["kind"]: p["records"] for p in a.problems.as_list()}["truncated_record"] == [5]
    assert a.flows[0]["packets"] == 2
    bad = bytearray(data)
    struct.pack_into("<I", bad, offs[3] + 8, 10_000_000)
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(bytes(bad))
    a = analyze_capture(corrupt)
    assert {p["kind"]: p["records"] for p in a.problems.as_list()}["corrupt_record"] == [3]
    assert a.records == 3


def test_unknown_linktype_and_not_a_capture(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    a = analyze_capture(_write(tmp_path / "c.pcap", [_udp(), _udp()], 147))
    assert a.problems.as_list()[0]["kind"] == "unknown_linktype"
    assert a.flows == []
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a not a capture")
    with pytest.raises(TraceFormatError):
        analyze_capture(junk)
    assert main(["trace", "analyze", str(junk)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a pcap" in err
    assert "Traceback" not in err
    assert main(["trace", "analyze", str(tmp_path / "missing.pcap")]) == 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.integers(0, 2000))
def test_damaged_captures_never_raise(tmp_path: Path, junk: bytes, cut: int) -> None:
    base = _write(tmp_path / "b.pcap", [_eth() / _udp(), _eth() / IP() / TCP(),
                                        _eth() / _udp(v6=True)] * 3)
    data = base.read_bytes()
    path = tmp_path / "d.pcap"
    path.write_bytes(data[:24 + cut] + junk)
    a = analyze_capture(path)
    assert a.records <= 9 + len(junk) // 16
    json.dumps(a.as_dict())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(1, 65535),
                          st.binary(max_size=300), st.booleans()), min_size=1, max_size=12))
def test_udp_header_parser_against_scapy(tmp_path: Path,
                                         specs: list[tuple[int, int, bytes, bool]]) -> None:
    pkts = [_eth() / _udp(sp, dp, pl, v6) for sp, dp, pl, v6 in specs]
    a = analyze_capture(_write(tmp_path / "h.pcap", pkts))
    expect: dict[tuple[int, int, bool], list[int]] = {}
    for sp, dp, pl, v6 in specs:
        expect.setdefault((sp, dp, v6), []).append(len(pl))
    got = {(f["sport"], f["dport"], ":" in f["src"]): f for f in a.flows}
    assert set(got) == set(expect)
    for k, sizes in expect.items():
        assert got[k]["packets"] == len(sizes)
        assert got[k]["bytes"] == sum(sizes)


def test_cli_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkts = [_rtp(i, i * 160) for i in range(30) if i not in (5, 6, 20)]
    path = _write(tmp_path / "r.pcap", pkts, 101)
    assert main(["trace", "analyze", str(path), "--json", "--report",
                 str(tmp_path / "rep")]) == 0
    out = json.loads(capsys.readouterr().out)
    (flow,) = out["flows"]
    assert {k: flow[k] for k in ("src", "dst", "sport", "dport", "kind", "packets")} == {
        "src": "10.0.0.1", "dst": "10.0.0.2", "sport": 7000, "dport": 7002, "kind": "rtp",
        "packets": 27}
    assert flow["rtp"]["lost"] == 3
    assert flow["rtp"]["burst_mean"] == pytest.approx(1.5)
    for name in ("index.html", "throughput.png", "delay_jitter.png", "loss_bursts.png",
                 "interarrival_cdf.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
