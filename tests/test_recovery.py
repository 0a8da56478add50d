"""Loss recovery: wire formats, policy, sender and receiver halves, and whole sessions in
netsim where recovery must beat plain datagrams."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport import control as ctl
from edgewire.transport.recovery import (
    K_NACK_SLACK,
    Protection,
    ReceiveRecovery,
    RecoveryConfig,
    SendRecovery,
    choose_protection,
    gilbert_residual,
)
from edgewire.transport.wire import (
    FLAG_RETRANSMIT,
    MAX_NACK_RANGES,
    decode_fec_header,
    decode_header,
    decode_nack,
    encode_fec_header,
    encode_header,
    encode_nack,
    sequence_of,
    with_sequence,
)

# ---------------------------------------------------------------------------- wire


def test_fec_header_round_trip() -> None:
    raw = encode_fec_header(channel_id=7, base_sequence=2**32 - 2, mask=0b1111, m=3, index=2)
    h = decode_fec_header(raw + b"parity")
    assert (h.channel_id, h.base_sequence, h.k, h.m, h.index) == (7, 2**32 - 2, 4, 3, 2)
    assert h.members == [2**32 - 2, 2**32 - 1, 0, 1]  # wraps


def test_nack_round_trip() -> None:
    ranges = [(5, 1), (2**32 - 1, 3), (100, 65536)]
    assert decode_nack(encode_nack(3, ranges)) == (3, ranges)
    with pytest.raises(ValueError, match="ranges"):
        encode_nack(3, [])
    with pytest.raises(ValueError, match="ranges"):
        encode_nack(3, [(0, 1)] * (MAX_NACK_RANGES + 1))


@given(st.binary(max_size=64))
def test_fec_header_parser_never_crashes(data: bytes) -> None:
    raw = bytes([0x11]) + data  # version 1, type FEC
    try:
        h = decode_fec_header(raw)
    except RemoteProtocolError:
        return
    assert h.k == len(h.members)
    assert 1 <= h.k <= 64
    assert h.index < h.m
    assert h.k + h.m <= 255


@given(st.binary(max_size=200))
def test_nack_parser_never_crashes(data: bytes) -> None:
    raw = bytes([0x12]) + data  # version 1, type NACK
    try:
        _, ranges = decode_nack(raw)
    except RemoteProtocolError:
        return
    assert 0 < len(ranges) <= MAX_NACK_RANGES
    assert all(1 <= count <= 65536 for _, count in ranges)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_report_control_message(received: int, lost: int, bursts: int) -> None:
    msg = ctl.RecoveryReport(channel_id=4, received=received, lost=lost, bursts=bursts)
    if bursts > lost:
        with pytest.raises(RemoteProtocolError):
            ctl.decode_control(ctl.encode_control(msg))
    else:
        assert ctl.decode_control(ctl.encode_control(msg)) == msg


def test_sequence_is_set_at_send_time() -> None:
    d = encode_header(channel_id=2, sequence=0, timestamp_us=9, frame_id=4) + b"x"
    d2 = with_sequence(d, 77)
    assert sequence_of(d2) == 77
    h = decode_header(d2)
    assert (h.channel_id, h.frame_id, h.timestamp_us) == (2, 4, 9)


# ---------------------------------------------------------------------------- policy


def test_residual_model_limits() -> None:
    # no FEC leaves the loss rate; more parity never hurts; a Bernoulli channel (b = 1/(1-p))
    assert gilbert_residual(0.1, 1 / 0.9, 4, 0) == 0.1
    res = [gilbert_residual(0.1, 1 / 0.9, 4, m) for m in range(1, 6)]
    assert res == sorted(res, reverse=True)
    assert res[-1] < 1e-4
    # at the same mean loss, bursts are harder than independent losses
    assert gilbert_residual(0.05, 4.0, 3, 3) > 10 * gilbert_residual(0.05, 1 / 0.95, 3, 3)


def test_residual_model_against_enumeration() -> None:
    """Bernoulli loss, exact by enumerating every loss pattern of a small group."""
    import itertools

    p, k, m = 0.2, 3, 2
    expected = 0.0
    for pattern in itertools.product((0, 1), repeat=k + m):
        prob = 1.0
        for lost in pattern:
            prob *= p if lost else 1 - p
        if sum(pattern) > m:
            expected += prob * sum(pattern[:k]) / k
    assert gilbert_residual(p, 1 / (1 - p), k, m) == pytest.approx(expected, rel=1e-3)


def test_policy_short_rtt_prefers_arq() -> None:
    cfg = RecoveryConfig(mode="auto")
    prot = choose_protection(cfg, loss=0.02, burst=1.02, rtt=0.02, deadline=0.15,
                             interval=0.02)
    assert prot.arq  # three retries fit: no parity needed
    assert prot.k == 0


def test_policy_long_rtt_uses_fec() -> None:
    cfg = RecoveryConfig(mode="auto")
    prot = choose_protection(cfg, loss=0.05, burst=1.05, rtt=0.3, deadline=0.15,
                             interval=0.02)
    assert not prot.arq
    assert prot.k > 0
    assert prot.m > 0


def test_policy_group_fits_the_deadline() -> None:
    cfg = RecoveryConfig(mode="fec")
    for rtt in (0.01, 0.08, 0.2):
        prot = choose_protection(cfg, loss=0.1, burst=1.1, rtt=rtt, deadline=0.15,
                                 interval=0.02)
        # the first datagram waits for its group and its spread parity, then one way
        assert (prot.k - 1 + prot.m) * 0.02 + rtt / 2 <= 0.15


def test_policy_modes() -> None:
    kw: dict[str, Any] = {"loss": 0.1, "burst": 1.1, "rtt": 0.08, "deadline": 0.15,
                          "interval": 0.02}
    assert choose_protection(RecoveryConfig(mode="none"), **kw) == Protection()
    arq = choose_protection(RecoveryConfig(mode="arq"), **kw)
    assert arq.arq
    assert arq.k == 0
    fec = choose_protection(RecoveryConfig(mode="fec"), **kw)
    assert not fec.arq
    assert fec.k > 0
    hybrid = choose_protection(RecoveryConfig(mode="hybrid"), **kw)
    assert hybrid.arq
    assert hybrid.k > 0


def test_config_validation() -> None:
    with pytest.raises(LocalProtocolError, match="recovery mode"):
        RecoveryConfig(mode="magic")
    with pytest.raises(LocalProtocolError):
        RecoveryConfig(max_group=65)


# ---------------------------------------------------------------------------- sender


def _media(seq: int, size: int = 100) -> bytes:
    return with_sequence(encode_header(channel_id=0, sequence=0, timestamp_us=seq,
                                       frame_id=seq) + bytes(size), seq)


def test_sender_spreads_parity_after_later_datagrams() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="fec"), deadline=0.15)
    s.protection = Protection(k=3, m=2, max_span=1.0)
    out = [s.on_sent(i, _media(i), deadline=1.0, now=i * 0.02) for i in range(5)]
    assert out[:3] == [[], [], []]  # the group of three closes at datagram 2
    parity = [p for o in out[3:] for p in o]
    assert len(parity) == 2  # one after each of the next two datagrams
    h = decode_fec_header(parity[0])
    assert (h.base_sequence, h.k, h.m, h.index) == (0, 3, 2, 0)


def test_sender_releases_parity_when_the_channel_falls_silent() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="fec"), deadline=0.15)
    s.protection = Protection(k=2, m=2, max_span=1.0)
    s.on_sent(0, _media(0), deadline=1.0, now=0.0)
    s.on_sent(1, _media(1), deadline=1.0, now=0.02)
    t = s.get_timer()
    assert t is not None
    assert t > 0.02
    assert s.on_timer(t - 1e-6) == []
    assert len(s.on_timer(t)) == 1


def test_sender_closes_a_group_held_too_long() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="fec"), deadline=0.15)
    s.protection = Protection(k=10, m=2, max_span=0.05)
    s.on_sent(0, _media(0), deadline=1.0, now=0.0)
    assert s.get_timer() == pytest.approx(0.05)
    s.on_timer(0.05)
    assert s.stats.fec_datagrams >= 1  # a group of one, with its parity


def test_retransmission_is_deadline_aware() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="arq"), deadline=0.15)
    s.protection = Protection(arq=True)
    s.on_sent(1, _media(1), deadline=0.15, now=0.0)
    # at 0.12 s, half an RTT of 0.08 s ends after the deadline: not worth sending
    assert s.on_nack([(1, 1)], now=0.12, rtt=0.08) == []
    assert s.stats.nack_too_late == 1
    s.on_sent(2, _media(2), deadline=0.25, now=0.1)
    out = s.on_nack([(2, 1)], now=0.15, rtt=0.08)
    assert len(out) == 1
    assert out[0][1] & FLAG_RETRANSMIT
    assert sequence_of(out[0]) == 2
    # asked again at once: the answer may still be on its way
    assert s.on_nack([(2, 1)], now=0.16, rtt=0.08) == []
    assert s.stats.nack_recent == 1


def test_unknown_and_flooded_nacks_are_counted_not_answered() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="arq", history_datagrams=16), deadline=10.0)
    s.protection = Protection(arq=True)
    for i in range(40):
        s.on_sent(i, _media(i), deadline=10.0, now=i * 0.01)
    out = s.on_nack([(1000, 65536)] * MAX_NACK_RANGES, now=0.5, rtt=0.05)
    assert out == []
    assert s.stats.nack_unknown == 65536 * MAX_NACK_RANGES
    assert len(s._history) <= 16  # bounded history


def test_retransmission_budget_caps_a_storm() -> None:
    cfg = RecoveryConfig(mode="arq", retransmit_share=0.5, retransmit_burst_bytes=1000)
    s = SendRecovery(0, cfg, deadline=10.0)
    s.protection = Protection(arq=True)
    for i in range(100):
        s.on_sent(i, _media(i, 100), deadline=10.0, now=i * 0.001)
    out = s.on_nack([(0, 100)], now=0.2, rtt=0.05)
    assert sum(len(d) for d in out) <= 1000
    assert s.stats.nack_over_budget == 100 - len(out)


# ---------------------------------------------------------------------------- receiver


def test_nack_timers_are_exact_in_virtual_time() -> None:
    cfg = RecoveryConfig(mode="arq", nack_retries=3)
    r = ReceiveRecovery(0, cfg, deadline=1.0)
    r.on_media(0, _media(0), deadline=1.0, retransmitted=False, now=0.0)
    r.on_media(3, _media(3), deadline=1.0, retransmitted=False, now=0.06)  # 1, 2 missing
    rtt = 0.05
    times = []
    now = 0.06
    for _ in range(10):
        nacks = r.nacks(now=now, rtt=rtt)
        r.take_report(now)
        if nacks:
            times.append(round(now, 9))
            assert decode_nack(nacks[0]) == (0, [(1, 2)])
        t = r.get_timer()
        if t is None:
            break
        now = max(t, now)
    step = rtt + K_NACK_SLACK
    assert times == [0.06, round(0.06 + step, 9), round(0.06 + 2 * step, 9)]
    assert r.stats.nacked == 6
    assert r.stats.gave_up == 2


def test_no_nack_that_cannot_beat_the_deadline() -> None:
    r = ReceiveRecovery(0, RecoveryConfig(mode="arq"), deadline=0.15)
    r.on_media(0, _media(0), deadline=0.15, retransmitted=False, now=0.04)
    r.on_media(2, _media(2), deadline=0.19, retransmitted=False, now=0.08)
    # the answer would arrive at 0.08 + 0.2: after the missing datagram's deadline
    assert r.nacks(now=0.08, rtt=0.2) == []
    assert r.stats.gave_up == 1


def test_receiver_rebuilds_a_lost_datagram_from_parity() -> None:
    s = SendRecovery(0, RecoveryConfig(mode="fec"), deadline=1.0)
    s.protection = Protection(k=4, m=2, max_span=1.0)
    media = [_media(i, 50 + i) for i in range(6)]
    parity = []
    for i, d in enumerate(media):
        parity += s.on_sent(i, d, deadline=1.0, now=i * 0.02)
    r = ReceiveRecovery(0, RecoveryConfig(mode="fec"), deadline=1.0)
    for i in (0, 2, 3, 4, 5):  # 1 is lost
        r.on_media(i, media[i], deadline=1.0, retransmitted=False, now=i * 0.02 + 0.04)
    rebuilt = r.on_parity(decode_fec_header(parity[0]), parity[0], now=0.2)
    assert rebuilt == [media[1]]  # the same bytes, length restored
    assert r.stats.recovered_fec == 1
    assert r.on_parity(decode_fec_header(parity[1]), parity[1], now=0.21) == []


def test_reports_count_loss_before_recovery() -> None:
    r = ReceiveRecovery(0, RecoveryConfig(mode="arq", report_interval=0.1), deadline=1.0)
    for seq in (0, 1, 4, 5, 7):  # gaps: 2-3 (a burst of 2), 6
        r.on_media(seq, _media(seq), deadline=1.0, retransmitted=False, now=0.01 * seq)
    r.on_media(6, as_retx(_media(6)), deadline=1.0, retransmitted=True, now=0.08)
    assert r.take_report(0.05) is None  # not due yet
    assert r.take_report(0.1) == (5, 3, 2)
    assert r.stats.recovered_arq == 1


def test_loss_free_reports_wait_for_the_idle_interval() -> None:
    cfg = RecoveryConfig(mode="fec", report_interval=0.1, report_idle_interval=1.0)
    r = ReceiveRecovery(0, cfg, deadline=1.0)
    for seq in range(50):  # 20 ms apart, nothing lost
        r.on_media(seq, _media(seq), deadline=1.0, retransmitted=False, now=0.02 * seq)
        assert r.take_report(0.02 * seq) is None
    assert r.get_timer() == pytest.approx(1.0)
    assert r.take_report(1.0) == (50, 0, 0)
    # a gap brings the next report forward to one report_interval after this one
    r.on_media(51, _media(51), deadline=2.0, retransmitted=False, now=1.02)
    assert r.get_timer() == pytest.approx(1.1)
    assert r.take_report(1.1) == (1, 1, 1)


def test_sender_memory_decays_with_time_not_report_count() -> None:
    cfg = RecoveryConfig(mode="arq", report_interval=0.1, report_memory=0.9)
    a = SendRecovery(0, cfg, deadline=0.15)
    b = SendRecovery(0, cfg, deadline=0.15)
    for s in (a, b):
        s.on_report(received=90, lost=10, bursts=10, rtt=0.05, now=0.1)
    # one report covering 1 s against ten covering 0.1 s each: the old loss fades alike
    a.on_report(received=500, lost=0, bursts=0, rtt=0.05, now=1.1)
    for i in range(10):
        b.on_report(received=50, lost=0, bursts=0, rtt=0.05, now=0.2 + 0.1 * i)
    assert a._lost_w == pytest.approx(10 * 0.9**10, rel=1e-9)
    assert b._lost_w == pytest.approx(a._lost_w, rel=1e-9)
    assert a.loss == pytest.approx(10 * 0.9**10 / (100 * 0.9**10 + 500), rel=1e-9)


def as_retx(d: bytes) -> bytes:
    return d[:1] + bytes((d[1] | FLAG_RETRANSMIT,)) + d[2:]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.booleans()), max_size=200))
def test_receiver_memory_is_bounded_for_any_sequence(items: list[tuple[int, bool]]) -> None:
    cfg = RecoveryConfig(mode="hybrid", max_missing=64, receive_hold_bytes=4000)
    r = ReceiveRecovery(0, cfg, deadline=1.0)
    now = 0.0
    for seq, retx in items:
        now += 0.001
        r.on_media(seq, _media(0), deadline=now + 1, retransmitted=retx, now=now)
        r.nacks(now=now, rtt=0.05)
    assert len(r._missing) <= 64
    assert r._held_bytes <= 4000


# ---------------------------------------------------------------------------- sessions


def _audio(loss: dict[str, Any], mode: str, seconds: float = 20.0) -> dict[str, Any]:
    sc = parse_scenario({
        "name": "rec", "duration_s": seconds, "seed": 3,
        "link": {"delay_ms": 40, "rate_kbps": 10_000, "queue_packets": 200, "loss": loss},
        "traffic": {"up": {"audio": {"bitrate_kbps": 32, "deadline_ms": 150}}},
        "transport": {"recovery": mode},
    })
    result: dict[str, Any] = run_scenario(sc)["channels"]["up"]["audio"]
    return result


@pytest.mark.parametrize("mode", ["fec", "hybrid", "auto"])
def test_recovery_beats_plain_datagrams_at_10_percent(mode: str) -> None:
    loss = {"model": "bernoulli", "rate": 0.1}
    plain = _audio(loss, "none")
    rec = _audio(loss, mode)
    assert plain["on_time_ratio"] < 0.93
    assert rec["on_time_ratio"] > 0.99
    assert rec["on_time_ratio"] - plain["on_time_ratio"] > 0.06
    assert rec["recovery"]["receiver"]["recovered_fec"] > 50


def test_arq_recovers_when_the_rtt_allows() -> None:
    loss = {"model": "bernoulli", "rate": 0.05}
    plain = _audio(loss, "none")
    arq = _audio(loss, "arq")
    assert arq["on_time_ratio"] - plain["on_time_ratio"] > 0.03
    assert arq["recovery"]["receiver"]["recovered_arq"] > 20
    assert arq["recovery"]["overhead"] < 0.15


def test_bursty_loss_repair_is_not_throttled_by_the_estimate() -> None:
    """Under bursty loss the estimate sinks to its minimum (the loss reads as congestion),
    while FEC needs two to three times the media rate: the real-time floor carries it."""
    loss = {"model": "gilbert", "rate": 0.05, "burst": 4}
    plain = _audio(loss, "none", seconds=30)
    rec = _audio(loss, "auto", seconds=30)
    assert rec["late"] <= 3  # parity and media leave when they are due
    assert rec["on_time_ratio"] > 0.985
    assert rec["on_time_ratio"] - plain["on_time_ratio"] > 0.04


def test_video_arq_at_5_percent_random_loss() -> None:
    """Random loss must not walk the estimate below the video's rate: frames held in the
    sender's queue would miss their deadline whatever recovery does."""
    sc = parse_scenario({
        "name": "video", "duration_s": 40, "seed": 1,
        "link": {"delay_ms": 40, "rate_kbps": 10_000, "queue_packets": 200,
                 "loss": {"model": "bernoulli", "rate": 0.05}},
        "traffic": {"up": {"video": {"bitrate_kbps": 1500, "fps": 30, "deadline_ms": 300,
                                     "adapt": False}}},
        "transport": {"recovery": "arq"},
    })
    video = run_scenario(sc)["channels"]["up"]["video"]
    assert video["on_time_ratio"] > 0.985
    assert video["recovery"]["receiver"]["recovered_arq"] > 150


def test_no_retransmission_storm_after_a_blackout() -> None:
    sc = parse_scenario({
        "name": "blackout", "duration_s": 6, "seed": 1,
        "link": {"delay_ms": 20},
        "events": [{"at_s": 2, "link": {"down": True}}, {"at_s": 4, "link": {"down": False}}],
        "traffic": {"up": {"audio": {"bitrate_kbps": 32}}},
        "transport": {"recovery": "arq"},
    })
    audio = run_scenario(sc)["channels"]["up"]["audio"]
    sender = audio["recovery"]["sender"]
    # 100 frames were lost in the blackout; only those still inside their deadline (a
    # handful) are sent again
    assert sender["retransmitted"] <= 10
    assert audio["on_time_ratio"] > 0.6


def test_netsim_drives_the_playout_buffer() -> None:
    loss = {"model": "bernoulli", "rate": 0.1}
    plain = _audio(loss, "none", seconds=10)["jitter_buffer"]
    rec = _audio(loss, "auto", seconds=10)["jitter_buffer"]
    # no jitter and no recovery: the buffer waits the one-way delay and conceals losses
    assert plain["playout_delay_ms"] == pytest.approx(40.1, abs=0.5)
    assert plain["concealed"] > 20
    # recovered frames arrive later: the buffer waits longer and conceals fewer frames
    assert rec["playout_delay_ms"] > 60
    assert rec["concealed"] < plain["concealed"]
    assert rec["played"] > plain["played"]
