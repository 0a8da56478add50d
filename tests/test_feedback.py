"""FEEDBACK datagrams: the codec, the receiver's recorder and the sender's history."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aioquic.quic.recovery import QuicPacketNumberWindow
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import RemoteProtocolError
from edgewire.transport.feedback import (
    FEEDBACK_HEADER_SIZE,
    K_MAX_REPORTED_DROPS,
    K_RECEIVED_WINDOW,
    MAX_FEEDBACK_PACKETS,
    ArrivalRecorder,
    SentHistory,
    decode_feedback,
    encode_feedback,
    padding_datagram,
)
from edgewire.transport.wire import TYPE_PADDING, datagram_type

arrival_lists = st.lists(
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**9).map(lambda us: us / 1e6)),
    min_size=1, max_size=300,
).filter(lambda xs: any(x is not None for x in xs))


@given(seq=st.integers(0, 0xFFFF), base=st.integers(0, 2**40), arrivals=arrival_lists,
       drops=st.one_of(st.just(0), st.integers(0, 1000)))
def test_round_trip(seq: int, base: int, arrivals: list[float | None], drops: int) -> None:
    fb = decode_feedback(encode_feedback(seq, base, arrivals, receiver_drops=drops))
    assert fb.receiver_drops == min(drops, K_MAX_REPORTED_DROPS)
    assert fb.sequence == seq
    assert fb.base == base
    assert [pn for pn, _ in fb.arrivals] == list(range(base, base + len(arrivals)))
    for (_, got), want in zip(fb.arrivals, arrivals, strict=True):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, abs=1e-6)


@given(data=st.binary(max_size=200))
@settings(max_examples=500)
def test_garbage_is_a_remote_protocol_error(data: bytes) -> None:
    try:
        fb = decode_feedback(b"\x13" + data)
    except RemoteProtocolError:
        return
    assert 0 < len(fb.arrivals) <= MAX_FEEDBACK_PACKETS
    assert any(t is not None for _, t in fb.arrivals)


def test_malformed_cases() -> None:
    good = encode_feedback(1, 10, [0.001, None, 0.003])
    with pytest.raises(RemoteProtocolError, match="too short"):
        decode_feedback(good[:FEEDBACK_HEADER_SIZE - 1])
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decode_feedback(good[:-1])
    with pytest.raises(RemoteProtocolError, match="stray"):
        decode_feedback(good + b"\x00")
    with pytest.raises(RemoteProtocolError, match="not a feedback"):
        decode_feedback(b"\x10" + good[1:])
    # a bit set beyond the packet count
    bad = bytearray(good)
    bad[FEEDBACK_HEADER_SIZE] |= 0x01
    with pytest.raises(RemoteProtocolError, match="beyond"):
        decode_feedback(bytes(bad))
    with pytest.raises(ValueError, match="at least one"):
        encode_feedback(0, 0, [None, None])
    with pytest.raises(ValueError, match="receiver_drops"):
        encode_feedback(0, 0, [0.1], receiver_drops=-1)
    # the drop count and its flag go together: either alone is malformed
    for flags in (0x80, 0x05):
        bad = bytearray(good)
        bad[1] = flags
        with pytest.raises(RemoteProtocolError, match="flags"):
            decode_feedback(bytes(bad))
    assert decode_feedback(good).receiver_drops == 0


def test_padding_is_its_own_type() -> None:
    p = padding_datagram(1000)
    assert len(p) == 1000
    assert datagram_type(p) == TYPE_PADDING


def _arriver(rec: ArrivalRecorder) -> Callable[[int, float], None]:
    """``arrive(pn, t)``: packet ``pn`` reaches ``rec`` at ``t`` (any order; QUIC's
    received set and largest packet number kept as a receiver would)."""
    received: set[int] = set()

    def arrive(pn: int, t: float) -> None:
        received.add(pn)
        rec.on_packet(max(received), t, received)

    return arrive


def _drain(rec: ArrivalRecorder, now: float, room: int = 1200) -> list[tuple[int, float | None]]:
    out: list[tuple[int, float | None]] = []
    for datagram in rec.take(now, room):
        assert len(datagram) <= room
        out.extend(decode_feedback(datagram).arrivals)
    return out


def test_recorder_reports_arrivals_gaps_and_late_packets() -> None:
    rec = ArrivalRecorder()
    arrive = _arriver(rec)

    arrive(0, 0.0)
    arrive(1, 0.01)
    assert rec.get_timer() == pytest.approx(0.1)  # at most 100 ms alone
    assert not rec.due(0.02, with_data=True)  # younger than 50 ms
    assert rec.due(0.06, with_data=True)  # riding on data after 50 ms
    assert _drain(rec, 0.06) == [(0, 0.0), (1, 0.01)]
    arrive(4, 0.07)  # 2 and 3 missing: feedback due soon
    assert rec.get_timer() == pytest.approx(0.08)
    assert _drain(rec, 0.08) == [(2, None), (3, None), (4, 0.07)]
    arrive(3, 0.09)  # late: found among the remembered gaps
    assert _drain(rec, 0.2) == [(3, 0.09)]
    assert rec.get_timer() is None


def test_recorder_reports_socket_drops_once_and_soon() -> None:
    rec = ArrivalRecorder()
    arrive = _arriver(rec)
    rec.note_drops(3, 0.0)  # nothing pending: the next arrival schedules the report
    assert rec.get_timer() is None
    arrive(0, 0.02)
    assert rec.get_timer() == pytest.approx(0.03)  # as soon as after a gap, not 100 ms
    rec.note_drops(2, 0.025)
    rec.note_drops(0, 0.025)  # no news
    assert rec.drops_noted == 5
    reports = [decode_feedback(d) for d in rec.take(0.03, 1200)]
    assert [fb.receiver_drops for fb in reports] == [5]
    arrive(1, 0.04)
    assert [decode_feedback(d).receiver_drops for d in rec.take(0.2, 1200)] == [0]
    # more than one report can say: saturated, and then cleared
    rec.note_drops(10_000, 0.21)
    arrive(2, 0.21)
    assert [decode_feedback(d).receiver_drops
            for d in rec.take(0.22, 1200)] == [K_MAX_REPORTED_DROPS]
    arrive(3, 0.23)
    assert [decode_feedback(d).receiver_drops for d in rec.take(0.4, 1200)] == [0]


def test_recorder_splits_big_reports_to_fit() -> None:
    rec = ArrivalRecorder()
    received: set[int] = set()
    for pn in range(3000):
        received.add(pn)
        rec.on_packet(pn, pn * 1e-4, received)
    got = _drain(rec, 1.0, room=300)
    assert [pn for pn, _ in got] == list(range(3000))
    assert rec.sent > 5


class _Quic:
    """The receiving side of aioquic's 1-RTT space as the recorder sees it: its duplicate
    window (which answers "received" for anything older than its 128 packet numbers)
    and the largest packet number received. Every datagram reaches the recorder, even
    one QUIC dropped as a duplicate."""

    def __init__(self) -> None:
        self.window = QuicPacketNumberWindow()
        self.largest = -1

    def arrive(self, rec: ArrivalRecorder, pn: int, now: float) -> bool:
        accepted = pn not in self.window  # QUIC drops duplicates and anything too old
        if accepted:
            self.window.add(pn)
            self.largest = max(self.largest, pn)
        rec.on_packet(self.largest, now, self.window)
        return accepted


def test_recorder_window_fits_in_aioquics() -> None:
    # the recorder trusts "pn in received" only for the last K_RECEIVED_WINDOW packet
    # numbers: aioquic's window must answer exactly for all of them
    window = QuicPacketNumberWindow()
    for pn in range(0, 1000, 2):
        window.add(pn)
    for pn in range(998 - K_RECEIVED_WINDOW + 1, 999):
        assert (pn in window) == (pn % 2 == 0), pn


def test_recorder_gap_older_than_quics_window_is_lost_not_late() -> None:
    rec = ArrivalRecorder()
    quic = _Quic()
    for pn in range(301):
        if pn not in (10, 250):
            quic.arrive(rec, pn, pn * 1e-3)
    got = _drain(rec, 0.5)
    assert [pn for pn, t in got if t is None] == [10, 250]
    # a duplicate of the largest: nothing arrived, though 10 is now below QUIC's window
    assert not quic.arrive(rec, 300, 1.0)
    assert rec.get_timer() is None
    assert _drain(rec, 1.1) == []
    # 250 arrives late (10 can no longer: QUIC would drop it as a duplicate)
    assert quic.arrive(rec, 250, 1.2)
    assert _drain(rec, 1.3) == [(250, 1.2)]
    assert not quic.arrive(rec, 10, 1.4)
    assert not quic.arrive(rec, 299, 1.5)
    assert _drain(rec, 1.6) == []


def test_recorder_remembers_gaps_only_within_quics_window() -> None:
    rec = ArrivalRecorder()
    quic = _Quic()
    quic.arrive(rec, 0, 0.0)
    quic.arrive(rec, 10**6, 0.1)  # a jump: only the gaps QUIC could still accept count
    assert len(rec._missing) == K_RECEIVED_WINDOW - 1
    for pn in range(10**6 + 1, 10**6 + 400, 2):
        quic.arrive(rec, pn, 0.2)
    assert len(rec._missing) < K_RECEIVED_WINDOW
    assert min(rec._missing) > quic.largest - K_RECEIVED_WINDOW


@given(order=st.lists(st.integers(0, 400), max_size=600),
       drains=st.sets(st.integers(0, 600), max_size=20))
@settings(max_examples=300, deadline=None)
def test_recorder_reports_each_accepted_packet_once(order: list[int],
                                                    drains: set[int]) -> None:
    # any arrival order, with duplicates, reordering and losses far beyond QUIC's
    # window: exactly the packets QUIC accepted are reported arrived, each once, when
    # they arrived; never one that did not arrive
    rec = ArrivalRecorder()
    quic = _Quic()
    accepted: dict[int, float] = {}
    reported: dict[int, float] = {}

    def drain(now: float) -> None:
        for pn, t in _drain(rec, now):
            if t is not None:
                assert pn not in reported, f"{pn} reported arrived twice"
                reported[pn] = t

    for i, pn in enumerate(order):
        now = i * 1e-3
        if quic.arrive(rec, pn, now):
            accepted[pn] = now
        if i in drains:
            drain(now)
    drain(len(order) * 1e-3)
    assert reported == pytest.approx(accepted, abs=1e-6)


def test_history_matches_and_counts_bad_reports() -> None:
    hist = SentHistory()
    for pn in range(10):
        hist.on_sent(pn, 1000 + pn, 0.01 * pn, 7 if pn < 3 else None)
    rows = hist.on_feedback(encode_feedback(0, 0, [0.05, None, 0.07]))
    assert [(r.sequence, r.size_bytes, r.arrival_time, r.probe_cluster) for r in rows] == [
        (0, 1000, 0.05, 7), (1, 1001, None, 7), (2, 1002, 0.07, 7)]
    # packet 1 arrives late; 0 is reported again (duplicate); 12 was never sent
    rows = hist.on_feedback(encode_feedback(1, 0, [0.05, 0.08]))
    assert [(r.sequence, r.arrival_time) for r in rows] == [(1, 0.08)]
    assert hist.counters.duplicate_packets == 1
    rows = hist.on_feedback(encode_feedback(2, 12, [0.2]))
    assert rows == []
    assert hist.counters.unknown_packets == 1
    assert hist.on_feedback(b"\x13garbage") == []
    assert hist.counters.malformed == 1
    hist.on_feedback(encode_feedback(0xFFFF, 5, [0.2]))  # older sequence number
    assert hist.counters.reordered == 1
    # the receiver's own drops: counted, and the latest report's kept for the estimator
    hist.on_feedback(encode_feedback(3, 6, [0.3], receiver_drops=4))
    assert (hist.last_receiver_drops, hist.counters.receiver_drops) == (4, 4)
    hist.on_feedback(encode_feedback(4, 7, [0.3]))
    assert (hist.last_receiver_drops, hist.counters.receiver_drops) == (0, 4)


def test_history_is_bounded() -> None:
    hist = SentHistory(max_packets=100, max_age=1.0)
    for pn in range(1000):
        hist.on_sent(pn, 1200, pn * 0.001, None)
    assert len(hist) == 100
    for pn in range(1000, 1100):
        hist.on_sent(pn, 1200, 10.0 + pn * 0.001, None)
    assert len(hist) == 100
    hist.on_feedback(encode_feedback(0, 0, [0.1]))
    assert hist.counters.stale_packets == 1


def test_history_forgets_by_age_after_the_count_cap() -> None:
    # the count cap drops the oldest first; the age limit then goes on from the new oldest
    hist = SentHistory(max_packets=50, max_age=1.0)
    for pn in range(200):
        hist.on_sent(pn, 1200, pn * 0.01, None)
    assert len(hist) == 50  # 150..199, all within 1 s of the newest
    hist.on_sent(200, 1200, 2.605, None)
    assert len(hist) == 40  # 150 by the count, 151..160 by age: 161..200 remain
    hist.on_feedback(encode_feedback(1, 160, [2.7]))
    assert hist.counters.stale_packets == 1
    hist.on_feedback(encode_feedback(2, 161, [2.7]))
    assert hist.counters.stale_packets == 1  # 161 is still known
    hist.on_sent(201, 1200, 2.606, None)
    assert len(hist) == 41  # nothing more has aged out


def test_recorder_reports_at_the_interval_the_peer_asks_for() -> None:
    rec = ArrivalRecorder()
    arrive = _arriver(rec)

    arrive(0, 0.0)
    assert rec.get_timer() == pytest.approx(0.1)
    # asked for 25 ms: the pending report is due sooner, riding on data too
    assert rec.set_interval(0.025) == pytest.approx(0.025)
    assert rec.max_wait == pytest.approx(0.025)
    assert rec.get_timer() == pytest.approx(0.025)
    assert not rec.due(0.02, with_data=False)
    assert rec.due(0.025, with_data=False)
    assert _drain(rec, 0.025) == [(0, 0.0)]
    arrive(1, 0.03)
    assert rec.get_timer() == pytest.approx(0.05)  # 25 ms after the last report
    # the receiver keeps the wish within 10-100 ms
    assert rec.set_interval(0.0) == pytest.approx(0.01)
    assert rec.set_interval(5.0) == pytest.approx(0.1)


def test_recorder_rides_on_data_before_the_asked_interval() -> None:
    """A side with data of its own (a voice call's 20 ms frames) carries 25 ms reports
    on it instead of sending one alone between every two frames."""
    rec = ArrivalRecorder()
    rec.set_interval(0.025)
    arrive = _arriver(rec)

    sent_alone = sent_riding = 0
    for frame in range(50):  # one packet each way every 20 ms
        t = frame * 0.02
        arrive(frame, t + 0.005)
        timer = rec.get_timer()
        assert timer is not None
        if timer < t + 0.02 and rec.due(timer, with_data=False):
            sent_alone += 1
            _drain(rec, timer)
        if rec.due(t + 0.02, with_data=True):
            sent_riding += 1
            _drain(rec, t + 0.02)
    assert sent_alone == 0
    assert sent_riding == 50
    # a report rides no sooner than 0.75 x the interval, and goes alone at the interval
    last = 50 * 0.02
    arrive(50, last + 0.001)
    assert not rec.due(last + 0.018, with_data=True)
    assert rec.due(last + 0.019, with_data=True)
    assert not rec.due(last + 0.024, with_data=False)
    assert rec.due(last + 0.025, with_data=False)
