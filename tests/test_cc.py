"""edgewire's congestion controller: the window that caps what is in flight."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewire.transport import quicstats
from edgewire.transport.cc import (
    K_BURST_REFERENCE_RTT,
    K_MIN_PACKETS,
    K_MIN_RTT_WINDOW,
    K_MIN_WINDOW_TIME,
    K_WINDOW_EXTRA,
    EdgewireCongestionControl,
)

MTU = 1200


def _cc(target_bps: float = 2_000_000.0) -> EdgewireCongestionControl:
    cc = EdgewireCongestionControl(max_datagram_size=MTU)
    cc.set_target(target_bps)
    return cc


def test_window_follows_min_rtt_not_queue_inflated_samples() -> None:
    cc = _cc()
    cc.on_rtt_measurement(now=0.0, rtt=0.05)
    for i in range(1, 20):  # a queue builds: RTT samples grow, the window does not
        cc.on_rtt_measurement(now=0.1 * i, rtt=0.05 + 0.02 * i)
    assert cc.min_rtt == pytest.approx(0.05)
    assert cc.congestion_window == int(2_000_000 / 8 * (0.05 + K_WINDOW_EXTRA))


def test_window_scales_with_target() -> None:
    cc = _cc(1_000_000)
    cc.on_rtt_measurement(now=0.0, rtt=0.1)
    small = cc.congestion_window
    cc.set_target(4_000_000)
    assert cc.congestion_window == pytest.approx(4 * small, rel=1e-6)


def test_min_rtt_is_learned_again_after_a_longer_path() -> None:
    cc = _cc()
    cc.on_rtt_measurement(now=0.0, rtt=0.02)
    t = 0.0
    while t < 2 * K_MIN_RTT_WINDOW + 0.5:  # the path now takes 200 ms
        t += 0.1
        cc.on_rtt_measurement(now=t, rtt=0.2)
    assert cc.min_rtt == pytest.approx(0.2)
    assert cc.congestion_window == int(2_000_000 / 8 * (0.2 + K_WINDOW_EXTRA))


def test_window_floors() -> None:
    cc = _cc(2_000_000)
    cc.on_rtt_measurement(now=0.0, rtt=0.0002)  # loopback
    assert cc.congestion_window == int(2_000_000 / 8 * K_MIN_WINDOW_TIME)
    cc.set_target(10_000)
    assert cc.congestion_window == max(K_MIN_PACKETS, 2) * MTU


def test_before_any_sample_the_smoothed_rtt_reader_is_used() -> None:
    cc = _cc()
    assert cc.min_rtt is None
    cc.smoothed_rtt = lambda: 0.3
    cc.set_target(1_000_000)
    assert cc.congestion_window == int(1_000_000 / 8 * (0.3 + K_WINDOW_EXTRA))


class _Pkt:
    def __init__(self, sent_time: float, size: int = MTU) -> None:
        self.sent_time = sent_time
        self.sent_bytes = size


def test_window_grows_by_a_thinning_trickle_of_silence_and_resets_on_ack() -> None:
    """After a blackout the window is full of lost packets; a trickle beyond it lets the
    first ACK of the restored path through at once instead of after QUIC's backed-off
    probe timeout. The trickle thins out (0, 0.1, 0.3, 0.5 s ...) as the silence lasts."""
    from edgewire.transport.cc import K_SILENCE_AFTER, K_SILENCE_INTERVAL, K_SILENCE_MAX_INTERVAL

    cc = _cc(1_000_000)
    cc.on_rtt_measurement(now=0.0, rtt=0.05)
    base = cc.congestion_window
    cc.on_packet_acked(now=0.0, packet=_Pkt(0.0))  # type: ignore[arg-type]
    cc.bytes_in_flight = 0
    while cc.bytes_in_flight < base:  # fill the window, then the path goes dark
        cc.on_packet_sent(packet=_Pkt(0.01))  # type: ignore[arg-type]
    start = cc.get_timer()
    # from the first packet after nothing was in flight
    assert start == pytest.approx(0.01 + 0.05 + K_WINDOW_EXTRA + K_SILENCE_AFTER)
    cc.on_timer(start - 0.001)
    assert cc.congestion_window == base  # not yet
    cc.on_timer(start)
    assert cc.congestion_window == base + MTU
    assert cc.get_timer() == pytest.approx(start + K_SILENCE_INTERVAL)
    cc.on_timer(start + K_SILENCE_INTERVAL)
    assert cc.congestion_window == base + 2 * MTU
    assert cc.get_timer() == pytest.approx(start + K_SILENCE_INTERVAL + K_SILENCE_MAX_INTERVAL)
    cc.on_timer(start + K_SILENCE_INTERVAL + 3 * K_SILENCE_MAX_INTERVAL)  # timers missed
    assert cc.congestion_window == base + 5 * MTU
    assert cc.silence_packets == 5
    cc.on_packet_acked(now=start + 0.75, packet=_Pkt(start))  # type: ignore[arg-type]
    assert cc.congestion_window == base
    cc.bytes_in_flight = 0
    assert cc.get_timer() is None  # nothing in flight: no silence to bridge


@given(first=st.floats(0.01, 1.0), cap_factor=st.floats(0.5, 20.0),
       k=st.integers(1, 300))
def test_silence_trickle_schedule_doubles_to_its_cap_and_matches_its_inverse(
        first: float, cap_factor: float, k: int) -> None:
    """silence_credit is the inverse of silence_grant_time for any interval and cap: the
    k-th packet is granted exactly at its time, each interval is twice the one before
    until the cap, then the cap."""
    import edgewire.transport.cc as ccmod

    cap = first * cap_factor
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ccmod, "K_SILENCE_INTERVAL", first)
        mp.setattr(ccmod, "K_SILENCE_MAX_INTERVAL", cap)
        t_k = ccmod.silence_grant_time(k)
        assert ccmod.silence_credit(t_k) == k
        nxt = ccmod.silence_grant_time(k + 1)
        assert ccmod.silence_credit((t_k + nxt) / 2) == k
        gap = nxt - t_k
        if k == 1:
            assert gap == pytest.approx(min(first, cap))
        else:
            before = t_k - ccmod.silence_grant_time(k - 1)
            assert gap == pytest.approx(min(2 * before, cap))


def test_an_idle_period_grants_no_window_when_sending_resumes() -> None:
    """Silence counts from the first packet after idle, not from the last ACK before it:
    a long idle period must not open the window by a packet per 100 ms of idling."""
    cc = _cc(1_000_000)
    cc.on_rtt_measurement(now=0.0, rtt=0.05)
    base = cc.congestion_window
    cc.on_packet_sent(packet=_Pkt(0.0))  # type: ignore[arg-type]
    cc.on_packet_acked(now=0.05, packet=_Pkt(0.0))  # type: ignore[arg-type]
    assert cc.get_timer() is None  # nothing in flight
    cc.on_packet_sent(packet=_Pkt(60.0))  # type: ignore[arg-type]  # a minute later
    cc.on_timer(60.01)
    assert cc.congestion_window == base
    timer = cc.get_timer()
    assert timer is not None
    assert timer > 60.1


def test_the_pacing_burst_does_not_grow_with_the_path_beyond_the_reference() -> None:
    cc = _cc()
    assert cc.burst_rtt(0.3) == 0.3  # no sample yet
    cc.on_rtt_measurement(now=0.0, rtt=0.05)
    assert cc.burst_rtt(0.12) == 0.12  # a short path: all of the smoothed RTT
    long = _cc()
    long.on_rtt_measurement(now=0.0, rtt=0.3)
    for i in range(1, 20):  # later samples never lower the connection's smallest
        long.on_rtt_measurement(now=1.0 * i, rtt=0.35)
    extra = 0.3 - K_BURST_REFERENCE_RTT
    assert long.burst_rtt(0.32) == pytest.approx(0.32 - extra)
    assert long.burst_rtt(0.25) == K_BURST_REFERENCE_RTT  # never below the reference


def test_the_pacing_burst_is_at_least_a_millisecond_of_the_rate() -> None:
    """On a LAN or loopback path (a smoothed RTT of a millisecond or so) aioquic's burst
    of a quarter of it would be two packets; the burst RTT has a floor of four
    K_MIN_BURST_TIME (the burst is a quarter of it), which binds only under 4 ms."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    from edgewire.transport.cc import K_MIN_BURST_TIME

    cc = _cc()
    assert cc.burst_rtt(0.0008) == pytest.approx(4 * K_MIN_BURST_TIME)  # no sample yet
    cc.on_rtt_measurement(now=0.0, rtt=0.0005)
    assert cc.burst_rtt(0.0007) == pytest.approx(4 * K_MIN_BURST_TIME)
    assert cc.burst_rtt(0.05) == 0.05  # a 50 ms path: the smoothed RTT, as before

    def packets_per_wakeup(burst_rtt: object) -> int:
        quic = QuicConnection(configuration=QuicConfiguration(
            is_client=True, congestion_control_algorithm="edgewire"))
        quicstats.pace_at(quic, lambda: 100_000_000.0, burst_rtt=burst_rtt)
        pacer = quic._loss._pacer
        pacer.update_rate(congestion_window=1, smoothed_rtt=0.0007)
        pacer.update_bucket(now=1.0)  # idle long enough to fill the bucket
        return _packets_per_call(pacer, now=1.0)

    size = QuicConfiguration(is_client=True).max_datagram_size
    assert packets_per_wakeup(None) == 2  # aioquic's own: a quarter of 0.7 ms
    # a millisecond at 100 Mbit/s: 12,500 bytes
    assert packets_per_wakeup(cc.burst_rtt) == 12_500 // size + 1


def test_pace_at_takes_the_burst_from_the_burst_rtt() -> None:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    def pacer_after(burst_rtt: object) -> tuple[float, float]:
        quic = QuicConnection(configuration=QuicConfiguration(
            is_client=True, congestion_control_algorithm="edgewire"))
        quicstats.pace_at(quic, lambda: 2_000_000.0, burst_rtt=burst_rtt)
        pacer = quic._loss._pacer
        pacer.bucket_time = 1.0
        pacer.update_rate(congestion_window=1, smoothed_rtt=0.3)
        return pacer.bucket_max, pacer.bucket_time

    size = QuicConfiguration(is_client=True).max_datagram_size
    # aioquic's own: a quarter of 0.3 s at 2 Mbit/s (18,750 bytes, under 16 packets)
    own = pacer_after(None)
    assert own[0] == pytest.approx(min(18_750, 16 * size) * 8 / 2_000_000)
    # from 80 ms instead: 5,000 bytes, 20 ms at the rate; the bucket is cut to it
    assert pacer_after(lambda srtt: srtt - 0.22) == (pytest.approx(0.02, rel=1e-3),
                                                     pytest.approx(0.02, rel=1e-3))
    # never below two packets
    assert pacer_after(lambda srtt: 0.001)[0] == pytest.approx(2 * size * 8 / 2_000_000)


def _packets_per_call(pacer: object, *, now: float) -> int:
    """Packets aioquic's pacer lets out at ``now`` before it asks to wait."""
    sent = 0
    while pacer.next_send_time(now=now) is None and sent < 100:  # type: ignore[attr-defined]
        pacer.update_after_send(now=now)  # type: ignore[attr-defined]
        sent += 1
    return sent


@pytest.mark.parametrize(("window", "srtt"), [(29_000_000, 0.001), (100_000_000, 0.002)])
def test_keep_pacer_bursts_at_floored_packet_times(window: int, srtt: float) -> None:
    """A Reno window of megabytes over loopback: window / RTT is past one packet per
    microsecond, where aioquic floors its packet time. Its own pacer then lets one packet
    out per call; with ``keep_pacer_bursts`` a full burst of 16 leaves, as at lower
    rates."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    def burst(keep: bool) -> int:
        quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
        if keep:
            quicstats.keep_pacer_bursts(quic)
        pacer = quic._loss._pacer
        pacer.update_rate(congestion_window=window, smoothed_rtt=srtt)
        pacer.update_bucket(now=1.0)  # idle long enough to fill the bucket
        return _packets_per_call(pacer, now=1.0)

    assert burst(keep=False) == 1  # aioquic's own pacer (why the wrapper exists)
    assert burst(keep=True) == 16


@given(window=st.integers(min_value=2_400, max_value=10**9),
       srtt=st.floats(min_value=1e-6, max_value=10.0))
def test_keep_pacer_bursts_changes_nothing_below_the_floor(window: int, srtt: float) -> None:
    """Wherever aioquic's packet time is not floored, the wrapped pacer is aioquic's own;
    where it is, the bucket holds at least two packets' time, as aioquic intends."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    own = QuicConnection(configuration=QuicConfiguration(is_client=True))._loss._pacer
    kept_quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    quicstats.keep_pacer_bursts(kept_quic)
    kept = kept_quic._loss._pacer
    own.update_rate(congestion_window=window, smoothed_rtt=srtt)
    kept.update_rate(congestion_window=window, smoothed_rtt=srtt)
    assert kept.packet_time == own.packet_time
    size = kept_quic._configuration.max_datagram_size
    if own.packet_time * window > size * srtt * (1 + 1e-6):  # floored at 1 µs
        assert kept.bucket_max >= 2 * kept.packet_time * (1 - 1e-9)
        assert kept.bucket_max > own.bucket_max
    else:
        assert kept.bucket_max == own.bucket_max
