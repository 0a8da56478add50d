"""Metrics of edgewire.traces on constructed sequences with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.traces.endpoint_log import EndpointLogWriter, compare_endpoint_logs
from edgewire.traces.quic import QuicState, parse_long_header
from edgewire.traces.rtp import RtpStream
from edgewire.traces.series import BinnedSeries, LossTracker


def _ref_jitter(arrivals: list[float], stamps: list[int], rate: int) -> list[float]:
    out, j = [0.0], 0.0
    for i in range(1, len(arrivals)):
        d = (arrivals[i] - arrivals[i - 1]) * rate - (stamps[i] - stamps[i - 1])
        j = j + (abs(d) - j) / 16
        out.append(j)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.2), st.integers(0, 4000)), min_size=2,
                max_size=80), st.integers(0, 2**32 - 1))
def test_jitter_matches_rfc3550_reference(steps: list[tuple[float, int]], ts0: int) -> None:
    arrivals, stamps, t, s = [], [], 10.0, 0
    for dt, dts in steps:
        t += dt
        s += dts
        arrivals.append(t)
        stamps.append(s)
    stream = RtpStream(1, 0, clock_rate=8000, origin=0.0)
    for i, (a, ts) in enumerate(zip(arrivals, stamps, strict=True)):
        stream.add(a, i & 0xFFFF, (ts0 + ts) & 0xFFFFFFFF)  # timestamps wrap
    ref = _ref_jitter(arrivals, stamps, 8000)
    got = stream.summary()
    assert got["jitter_ms_max"] == pytest.approx(max(ref) / 8, rel=1e-6, abs=1e-9)
    assert got["jitter_ms_mean"] == pytest.approx(np.mean(ref[1:]) / 8, rel=1e-6, abs=1e-9)
    assert got["max_delta_ms"] == pytest.approx(max(np.diff(arrivals)) * 1000, rel=1e-9)


def _ref_reorder(seqs: list[int]) -> tuple[int, list[int]]:
    nxt, count, extents = seqs[0] + 1, 0, []
    for i, s in enumerate(seqs):
        if i and s < nxt:
            count += 1
            j = min(k for k in range(i) if seqs[k] > s)
            extents.append(i - j)
        else:
            nxt = max(nxt, s + 1)
    return count, extents


@settings(max_examples=80, deadline=None)
@given(st.permutations(list(range(40))), st.integers(0, 40), st.integers(0, 65535))
def test_reordering_matches_rfc4737_reference(perm: list[int], keep: int, base: int) -> None:
    # a mostly ordered stream: only the first `keep` positions are shuffled
    seqs = perm[:keep] + [s for s in range(40) if s not in perm[:keep]]
    stream = RtpStream(1, 0, clock_rate=8000, origin=0.0)
    for i, s in enumerate(seqs):
        stream.add(i * 0.02, (base + s) & 0xFFFF, s * 160)
    got = stream.summary()
    count, extents = _ref_reorder(seqs)
    assert got["reordered"] == count
    assert got["reordered_ratio"] == pytest.approx(count / len(seqs))
    assert got["reorder_extent_max"] == (max(extents) if extents else 0)
    if extents:
        assert got["reorder_extent_mean"] == pytest.approx(np.mean(extents))
    # RFC 3550 A.3 (and tshark) count from the first packet's number: earlier numbers
    # arriving later make "lost" negative, like duplicates do
    assert got["lost"] == -sum(1 for x in seqs if x < seqs[0])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(0, 65535))
def test_sequence_loss_and_bursts_against_reference(received: list[bool], base: int) -> None:
    received = [True, *received, True]
    stream = RtpStream(7, 0, clock_rate=8000, origin=0.0)
    for i, ok in enumerate(received):
        if ok:
            stream.add(i * 0.02, (base + i) & 0xFFFF, i * 160)
    got = stream.summary()
    runs, cur = [], 0
    for ok in received:
        if ok and cur:
            runs.append(cur)
        cur = 0 if ok else cur + 1
    assert got["lost"] == received.count(False)
    assert got["burst_mean"] == (pytest.approx(np.mean(runs)) if runs else None)
    n_recv = received.count(True)
    if runs:
        assert got["gilbert"]["p"] == pytest.approx(len(runs) / (n_recv - 1))
        assert got["gilbert"]["r"] == pytest.approx(len(runs) / sum(runs))


def test_duplicates_and_late_reorder_are_not_loss() -> None:
    stream = RtpStream(1, 0, clock_rate=8000, origin=0.0)
    for i, s in enumerate([0, 1, 1, 3, 2, 4]):
        stream.add(i * 0.02, s, s * 160)
    got = stream.summary()
    assert got["duplicates"] == 1
    assert got["lost"] == -1  # RFC 3550: expected (5) - received (6 with the duplicate)
    assert got["burst_mean"] is None
    assert got["reordered"] == 1


def test_gilbert_fit_recovers_model_parameters() -> None:
    rng = np.random.default_rng(3)
    p, r, bad, received = 0.02, 0.4, False, []
    for _ in range(200_000):
        bad = rng.random() < (1 - r if bad else p)
        received.append(not bad)
    tracker = LossTracker(start=0)
    for i, ok in enumerate(received):
        if ok:
            tracker.add(i)
    tracker.flush(end=len(received))
    fit = tracker.summary()["gilbert"]
    assert fit["p"] == pytest.approx(p, rel=0.05)
    assert fit["r"] == pytest.approx(r, rel=0.05)


def test_binned_series_coarsens_and_keeps_totals() -> None:
    s = BinnedSeries(0.0, 1.0, max_bins=8)
    t = np.arange(0, 100, 0.5)
    s.add(t, np.ones_like(t))
    assert s.sum.sum() == len(t)
    assert s.bin_s == 16.0
    assert s.used <= 8


def test_quic_long_header_and_spin_rtt() -> None:
    head = bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([4]) + b"\x01\x02\x03\x04" \
        + bytes([2]) + b"\xaa\xbb" + b"\x00" * 8
    info = parse_long_header(head)
    assert info == {"version": 1, "type": "initial", "dcid": "01020304", "scid": "aabb"}
    assert parse_long_header(head[:8]) is None
    q = QuicState()
    t = np.arange(0, 1.0, 0.005)
    spin = (np.floor(t / 0.05) % 2).astype(np.int64)  # flips every 50 ms: RTT 50 ms
    q.update(t, 0x40 | (spin << 5), [])
    rtt = q.summary()["spin_rtt_ms"]
    assert rtt is not None
    assert rtt["mean"] == pytest.approx(50.0, abs=1.0)
    q2 = QuicState()
    q2.update(t, np.full(len(t), 0x40), [])
    assert q2.summary()["spin_bit_used"] is False


def test_endpoint_logs_give_exact_loss_and_delay(tmp_path: Path) -> None:
    lost = {3, 4, 5, 17}
    with EndpointLogWriter(tmp_path / "tx.log") as tx, \
            EndpointLogWriter(tmp_path / "rx.log") as rx:
        for seq in range(50):
            for ch, delay in (("audio", 0.030), ("video", 0.045)):
                tx.sent(now=seq * 0.02, channel=ch, seq=seq, size_bytes=100)
                if not (ch == "audio" and seq in lost):
                    rx.received(now=seq * 0.02 + delay, channel=ch, seq=seq, size_bytes=100)
    (tmp_path / "rx.log").write_text((tmp_path / "rx.log").read_text() + "garbage,line\n")
    r = compare_endpoint_logs(tmp_path / "tx.log", tmp_path / "rx.log")
    audio, video = r["flows"]["audio"], r["flows"]["video"]
    assert (audio["sent"], audio["received"], audio["lost_on_path"]) == (50, 46, 4)
    assert audio["burst_hist"] == {3: 1, 1: 1}
    assert video["lost_on_path"] == 0
    assert audio["delay_ms"]["mean"] == pytest.approx(30.0, abs=1e-3)
    assert video["delay_ms"]["max"] == pytest.approx(45.0, abs=1e-3)
    assert r["problems"][0]["kind"] == "bad_log_line"


def test_qlog_json_and_json_seq(tmp_path: Path) -> None:
    import json

    from edgewire.traces.qlog import analyze_qlog

    events = [
        {"time": 0.0, "name": "transport:packet_sent",
         "data": {"header": {"packet_type": "initial"}, "raw": {"length": 1200}}},
        {"time": 30.0, "name": "transport:packet_received",
         "data": {"raw": {"length": 1000}, "frames": [{"frame_type": "handshake_done"}]}},
        {"time": 31.0, "name": "recovery:metrics_updated",
         "data": {"latest_rtt": 30.0, "smoothed_rtt": 30.0, "congestion_window": 14720}},
        {"time": 40.0, "name": "recovery:packet_lost", "data": {}},
    ]
    doc = {"qlog_format": "JSON", "qlog_version": "0.3",
           "traces": [{"vantage_point": {"type": "client"}, "events": events}]}
    (tmp_path / "a.qlog").write_text(json.dumps(doc))
    seq = "\x1e" + json.dumps({"qlog_version": "0.3", "trace": {
        "vantage_point": {"type": "client"}}}) + "\n"
    seq += "".join("\x1e" + json.dumps(e) + "\n" for e in events) + "\x1enot json\n"
    (tmp_path / "a.sqlog").write_text(seq)
    for name in ("a.qlog", "a.sqlog"):
        r = analyze_qlog(tmp_path / name)
        (t,) = r["traces"]
        assert (t["vantage_point"], t["packets_sent"], t["bytes_received"]) == ("client", 1,
                                                                                  1000)
        assert t["packets_lost"] == 1
        assert t["handshake_ms"] == 30.0
        assert t["latest_rtt_ms"]["mean"] == 30.0
    assert analyze_qlog(tmp_path / "a.sqlog")["problems"][0]["kind"] == "bad_qlog_record"
