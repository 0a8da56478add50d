"""The sans-I/O link model of netsim, driven directly in virtual time.

Every test builds a :class:`Link` with its own seeded ``random.Random``, offers packets with
``send(now=)`` at chosen times and collects what leaves with ``receive(now=)`` / ``get_timer()``.
Statistical tests use fixed seeds, enough packets and bands several standard deviations wide,
so they check the model's figures without ever flaking.
"""

from __future__ import annotations

import itertools
import math
import random
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import (
    K_DEFAULT_QUEUE_PACKETS,
    BernoulliLoss,
    GilbertLoss,
    LinkConfig,
    LossConfig,
    Markov4Loss,
    NoLoss,
)
from edgewire.netsim.link import K_MAX_PACKET_BYTES, Delivery, Link
from edgewire.netsim.pcap import PcapTap, ipv4_udp
from edgewire.netsim.stats import LinkStats, Samples
from edgewire.netsim.trace import K_OPPORTUNITY_BYTES, CapacityTrace, load_mahimahi

TRACES = Path("/work/shared/data/traces")
ATT_UP = TRACES / "ATT-LTE-driving-2016.up"
#: Trace of the small examples: opportunities at 1, 1, 3 and 5 ms, repeating every 5 ms.
SMALL_TRACE = CapacityTrace(name="small", times_ms=(1, 1, 3, 5), period_ms=5)


# ---------------------------------------------------------------------------- helpers


def drain(link: Link) -> list[Delivery]:
    """Everything still in the link, delivered at the link's own timer times."""
    out: list[Delivery] = []
    while (t := link.get_timer()) is not None:
        out += link.receive(now=t)
    return out


def seq_payload(i: int, size: int = 8) -> bytes:
    """A payload of ``size`` bytes (at least 4) that carries the sequence number ``i``."""
    return i.to_bytes(4, "big") + b"\x00" * max(0, size - 4)


def seq_of(d: Delivery) -> int:
    return int.from_bytes(d.data[:4], "big")


def stream(cfg: LinkConfig, n: int, *, seed: int = 1, interval: float = 0.001,
           size: int = 100) -> tuple[Link, list[Delivery]]:
    """Offer ``n`` numbered packets every ``interval`` seconds; meta is the send time."""
    link = Link(cfg, rng=random.Random(seed))
    out: list[Delivery] = []
    for i in range(n):
        now = i * interval
        out += link.receive(now=now)
        link.send(seq_payload(i, size), now=now, meta=now)
    out += drain(link)
    return link, out


def loss_pattern(loss: LossConfig, n: int, seed: int) -> tuple[Link, list[bool]]:
    """Fates (True = lost) of ``n`` packets offered in order to a link with ``loss`` only."""
    link, out = stream(LinkConfig(loss=loss), n, seed=seed)
    delivered = {seq_of(d) for d in out}
    return link, [i not in delivered for i in range(n)]


def run_lengths(lost: list[bool]) -> list[int]:
    """Lengths of the runs of consecutive True values."""
    runs: list[int] = []
    current = 0
    for x in lost:
        if x:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def write_trace(tmp_path: Path, text: str, name: str = "t.trace") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="ascii")
    return path


# ---------------------------------------------------------------------------- Bernoulli


def test_bernoulli_loss_rate_within_binomial_band() -> None:
    n, rate = 100_000, 0.1
    link, lost = loss_pattern(BernoulliLoss(rate=rate), n, seed=11)
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(sum(lost) - n * rate) < 4 * sigma
    s = link.stats.summary(end=n * 0.001)
    assert s["lost_by_model"] == sum(lost)
    assert s["packets_delivered"] == n - sum(lost)
    assert s["loss_rate"] == pytest.approx(sum(lost) / n, abs=1e-6)


def test_bernoulli_burst_length_is_geometric() -> None:
    n, rate = 100_000, 0.3
    link, lost = loss_pattern(BernoulliLoss(rate=rate), n, seed=12)
    expected = BernoulliLoss(rate=rate).mean_burst_length()
    assert expected == pytest.approx(1 / 0.7)
    measured = link.stats.summary(end=100.0)["mean_burst_length"]
    assert measured == pytest.approx(expected, rel=0.03)
    runs = run_lengths(lost)
    assert measured == pytest.approx(sum(runs) / len(runs), abs=1e-4)


@pytest.mark.parametrize(("rate", "lost_expected"), [(0.0, 0), (1.0, 5000)])
def test_bernoulli_extremes(rate: float, lost_expected: int) -> None:
    link, lost = loss_pattern(BernoulliLoss(rate=rate), 5000, seed=13)
    assert sum(lost) == lost_expected
    assert link.stats.lost_by_model == lost_expected


# ---------------------------------------------------------------------------- Gilbert


def test_gilbert_from_rate_burst_formulas() -> None:
    g = GilbertLoss.from_rate_burst(0.1, 4.0)
    assert g.r == pytest.approx(0.25)
    assert g.p == pytest.approx(0.1 * 0.25 / 0.9)
    assert (g.h, g.k) == (0.0, 1.0)
    assert g.mean_loss_rate() == pytest.approx(0.1)
    assert g.mean_burst_length() == pytest.approx(4.0)
    # burst 1 is independent loss in the bad state for exactly one packet
    g1 = GilbertLoss.from_rate_burst(0.5, 1.0)
    assert (g1.p, g1.r) == (pytest.approx(1.0), 1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.05, 3.0), (0.2, 5.0), (0.01, 1.5)])
def test_gilbert_measured_rate_and_burst(rate: float, burst: float) -> None:
    n = 100_000
    link, lost = loss_pattern(GilbertLoss.from_rate_burst(rate, burst), n, seed=21)
    assert sum(lost) / n == pytest.approx(rate, rel=0.15)
    runs = run_lengths(lost)
    assert sum(runs) / len(runs) == pytest.approx(burst, rel=0.15)
    assert link.stats.summary(end=n * 0.001)["mean_burst_length"] == pytest.approx(
        sum(runs) / len(runs), abs=1e-4)


def test_gilbert_general_h_k_matches_mean_loss_rate() -> None:
    cfg = GilbertLoss(p=0.05, r=0.2, h=0.3, k=0.98)
    assert cfg.bad_fraction() == pytest.approx(0.2)
    assert cfg.mean_loss_rate() == pytest.approx(0.2 * 0.7 + 0.8 * 0.02)
    assert cfg.mean_burst_length() is None
    n = 100_000
    _, lost = loss_pattern(cfg, n, seed=22)
    assert sum(lost) / n == pytest.approx(cfg.mean_loss_rate(), rel=0.1)


def test_gilbert_loss_in_good_state_only() -> None:
    # p = 0: never leaves the good state, so k alone decides (Bernoulli with 1 - k)
    n = 50_000
    _, lost = loss_pattern(GilbertLoss(p=0.0, r=0.5, h=0.0, k=0.9), n, seed=23)
    sigma = math.sqrt(n * 0.1 * 0.9)
    assert abs(sum(lost) - n * 0.1) < 4 * sigma


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        (0.1, 0.5, "burst must be >= 1"),
        (0.1, math.inf, "burst must be >= 1"),
        (1.0, 2.0, "rate must be below 1"),
        (1.5, 2.0, "rate must be a probability"),
        (-0.1, 2.0, "rate must be a probability"),
        (0.9, 1.0, r"P\(good->bad\) = 9\.000 > 1"),
    ],
)
def test_gilbert_from_rate_burst_errors(rate: float, burst: float, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        GilbertLoss.from_rate_burst(rate, burst)


def test_gilbert_invalid_parameters() -> None:
    with pytest.raises(LocalProtocolError, match="gilbert loss: p must be a probability"):
        GilbertLoss(p=1.5, r=0.1)
    with pytest.raises(LocalProtocolError, match="gilbert loss: k must be a probability"):
        GilbertLoss(p=0.1, r=0.1, k=math.nan)
    with pytest.raises(LocalProtocolError, match="r = 0 with h = 0"):
        GilbertLoss(p=0.1, r=0.0)


# ---------------------------------------------------------------------------- Markov4


@pytest.mark.parametrize(
    ("cfg", "rel"),
    [
        (Markov4Loss(p13=0.05), 0.1),
        (Markov4Loss(p13=0.02, p31=0.3, p32=0.2, p23=0.4, p14=0.01), 0.15),
        (Markov4Loss(p13=0.1, p31=0.6, p32=0.3, p23=0.5, p14=0.05), 0.1),
    ],
)
def test_markov4_measured_loss_matches_stationary(cfg: Markov4Loss, rel: float) -> None:
    n = 100_000
    _, lost = loss_pattern(cfg, n, seed=31)
    assert sum(lost) / n == pytest.approx(cfg.mean_loss_rate(), rel=rel)
    assert sum(cfg.stationary()) == pytest.approx(1.0)


def test_markov4_defaults_are_netems() -> None:
    cfg = Markov4Loss(p13=0.2)
    assert (cfg.p31, cfg.p32, cfg.p23, cfg.p14) == (pytest.approx(0.8), 0.0, 1.0, 0.0)
    # loss state p13 alone is Bernoulli-like with rate p13 / (p13 + p31) = p13
    assert cfg.mean_loss_rate() == pytest.approx(0.2)


def test_markov4_p14_only_gives_isolated_losses() -> None:
    cfg = Markov4Loss(p13=0.0, p14=0.1)
    n = 50_000
    link, lost = loss_pattern(cfg, n, seed=32)
    runs = run_lengths(lost)
    assert runs
    assert set(runs) == {1}
    assert link.stats.summary(end=50.0)["mean_burst_length"] == 1.0
    assert cfg.mean_loss_rate() == pytest.approx(0.1 / 1.1)
    assert sum(lost) / n == pytest.approx(0.1 / 1.1, rel=0.1)


def test_markov4_burst_state_gives_long_runs() -> None:
    # p31 small: once in state 3 the model stays there ~1/p31 packets
    cfg = Markov4Loss(p13=0.01, p31=0.1)
    _, lost = loss_pattern(cfg, 50_000, seed=33)
    runs = run_lengths(lost)
    assert sum(runs) / len(runs) == pytest.approx(10.0, rel=0.25)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p13": 0.6, "p14": 0.5}, r"p13 \+ p14 must not exceed 1"),
        ({"p13": 0.1, "p31": 0.7, "p32": 0.5}, r"p31 \+ p32 must not exceed 1"),
        ({"p13": 1.2}, "markov4 loss: p13 must be a probability"),
        ({"p13": 0.1, "p23": -0.5}, "markov4 loss: p23 must be a probability"),
    ],
)
def test_markov4_invalid(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        Markov4Loss(**kwargs)


# Chains whose long-run loss is easy to work out by hand: (parameters, true long-run loss).
MARKOV4_EDGE_CASES = [
    # p23 = 0: state 2 ("received in a burst") is absorbing, so losses stop for good
    pytest.param({"p13": 0.1, "p31": 0.5, "p32": 0.4, "p23": 0.0}, 0.0, id="absorbing-2"),
    # p31 = 0, p23 = 1: alternates 3 -> 2 (p32) -> 3; pi3 = 1 / (1 + p32)
    pytest.param({"p13": 0.1, "p31": 0.0, "p32": 0.5, "p23": 1.0}, 1 / 1.5, id="no-exit-3"),
    # p13 = 0: state 3 is unreachable; 1 <-> 4 gives p14 / (1 + p14) whatever p31 is
    pytest.param({"p13": 0.0, "p14": 0.1, "p31": 0.0}, 0.1 / 1.1, id="unreachable-3"),
]


@pytest.mark.parametrize(("kwargs", "truth"), MARKOV4_EDGE_CASES)
def test_markov4_process_edge_cases_measured(kwargs: dict[str, float], truth: float) -> None:
    n = 50_000
    _, lost = loss_pattern(Markov4Loss(**kwargs), n, seed=34)
    assert sum(lost) / n == pytest.approx(truth, abs=0.01)


@pytest.mark.parametrize(("kwargs", "truth"), MARKOV4_EDGE_CASES)
def test_markov4_mean_loss_rate_edge_cases(kwargs: dict[str, float], truth: float) -> None:
    assert Markov4Loss(**kwargs).mean_loss_rate() == pytest.approx(truth, abs=1e-9)


# ---------------------------------------------------------------------------- jitter


def jitter_delays(dist: str, *, delay_ms: float = 50.0, jitter_ms: float = 10.0,
                  n: int = 40_000, seed: int = 41) -> np.ndarray:
    """One-way delays in ms of ``n`` packets on a jittered link that may reorder."""
    cfg = LinkConfig(delay_ms=delay_ms, jitter_ms=jitter_ms, jitter_distribution=dist,
                     reorder=True)
    _, out = stream(cfg, n, seed=seed)
    assert len(out) == n
    return np.array([(d.time - d.meta) * 1000.0 for d in out])


def test_uniform_jitter_stays_within_bounds() -> None:
    d = jitter_delays("uniform")
    assert d.min() >= 40.0 - 1e-9
    assert d.max() <= 60.0 + 1e-9
    # it spreads over the whole band, evenly
    assert d.min() < 40.1
    assert d.max() > 59.9
    assert d.mean() == pytest.approx(50.0, abs=0.2)
    assert d.std() == pytest.approx(10.0 / math.sqrt(3), rel=0.03)


def test_normal_jitter_has_sigma_jitter_ms() -> None:
    d = jitter_delays("normal")
    assert d.mean() == pytest.approx(50.0, abs=0.3)
    assert d.std() == pytest.approx(10.0, rel=0.03)
    # about 68% within one sigma
    assert np.mean(np.abs(d - 50.0) < 10.0) == pytest.approx(0.6827, abs=0.02)


@pytest.mark.parametrize(("dist", "std"), [("pareto", 1.0), ("paretonormal", 0.79)])
def test_pareto_jitter_is_standardized_and_right_skewed(dist: str, std: float) -> None:
    d = jitter_delays(dist)
    # link.py standardizes the Pareto draw: mean 0, so the mean delay stays the delay
    assert d.mean() == pytest.approx(50.0, abs=0.5)
    p1, p50, p99 = np.percentile(d, [1, 50, 99])
    assert p50 < d.mean() - 0.5  # median below the mean
    assert p99 - p50 > 2 * (p50 - p1)  # long right tail, short left one
    assert d.max() > 50.0 + 5 * 10.0
    if dist == "pareto":
        # the standardized Pareto(3) is bounded below by (1 - 1.5) / sqrt(0.75)
        assert d.min() >= 50.0 - 10.0 * 0.5 / math.sqrt(0.75) - 1e-9
        assert np.median(d) == pytest.approx(50.0 + 10.0 * (2 ** (1 / 3) - 1.5)
                                             / math.sqrt(0.75), abs=0.3)
    else:
        assert d.std() == pytest.approx(10.0 * std, rel=0.2)


@pytest.mark.parametrize("dist", ["uniform", "normal", "pareto", "paretonormal"])
def test_delay_never_negative(dist: str) -> None:
    d = jitter_delays(dist, delay_ms=1.0, jitter_ms=30.0, n=10_000)
    assert d.min() >= 0.0
    assert np.mean(d == 0.0) > 0.0  # clamped draws, not negative ones


def test_no_reorder_keeps_order_with_large_jitter() -> None:
    cfg = LinkConfig(delay_ms=10, jitter_ms=50, jitter_distribution="normal", reorder=False,
                     rate_kbps=50_000)
    _, out = stream(cfg, 5000, seed=42)
    seqs = [seq_of(d) for d in out]
    assert seqs == list(range(5000))
    times = [d.time for d in out]
    assert times == sorted(times)
    assert all(d.time >= d.meta for d in out)


def test_reorder_lets_packets_overtake() -> None:
    cfg = LinkConfig(delay_ms=10, jitter_ms=20, jitter_distribution="uniform", reorder=True)
    _, out = stream(cfg, 2000, seed=43)
    seqs = [seq_of(d) for d in out]
    assert sorted(seqs) == list(range(2000))
    inversions = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    assert inversions > 200
    times = [d.time for d in out]
    assert times == sorted(times)  # still handed out in arrival order


# ---------------------------------------------------------------------------- fixed rate


def test_serialization_time_exact() -> None:
    link = Link(LinkConfig(rate_kbps=2000), rng=random.Random(1))
    for i in range(5):
        link.send(seq_payload(i, 1200), now=0.0)
    assert link.get_timer() == pytest.approx(0.0048, abs=1e-12)
    out = drain(link)
    assert [seq_of(d) for d in out] == list(range(5))
    for i, d in enumerate(out):
        assert d.time == pytest.approx(0.0048 * (i + 1), abs=1e-12)


def test_serialization_plus_delay() -> None:
    link = Link(LinkConfig(rate_kbps=1000, delay_ms=20), rng=random.Random(1))
    link.send(b"x" * 1250, now=1.0)
    assert link.receive(now=1.0299) == []
    out = link.receive(now=1.03)
    assert len(out) == 1
    assert out[0].time == pytest.approx(1.03, abs=1e-12)
    s = link.stats.summary(end=1.1)
    assert s["queue_delay_ms"]["p50"] == pytest.approx(10.0)
    assert s["delay_ms"]["p50"] == pytest.approx(30.0)


def test_saturated_throughput_equals_rate() -> None:
    cfg = LinkConfig(rate_kbps=1000, queue_packets=50)
    # 1250 B every 5 ms = 2000 kbit/s offered for 2 s
    link, out = stream(cfg, 400, interval=0.005, size=1250)
    gaps = np.diff([d.time for d in out])
    assert np.allclose(gaps, 0.010, atol=1e-9)
    end = out[-1].time
    s = link.stats.summary(end=end)
    assert s["throughput_kbps"] == pytest.approx(1000.0, rel=0.01)
    assert s["capacity_kbps"] == pytest.approx(1000.0, abs=1e-6)
    assert s["dropped_by_queue"] == 400 - len(out)
    assert s["dropped_by_queue"] > 100


def test_droptail_packets_limit() -> None:
    link = Link(LinkConfig(rate_kbps=1000, queue_packets=3), rng=random.Random(1))
    for i in range(10):
        link.send(seq_payload(i, 1250), now=0.0)
        assert link.queue_packets <= 3
    # one in service plus three waiting
    assert link.queue_packets == 3
    assert link.stats.dropped_by_queue == 6
    out = drain(link)
    assert [seq_of(d) for d in out] == [0, 1, 2, 3]
    assert link.stats.summary(end=1.0)["loss_rate"] == pytest.approx(0.6)


def test_droptail_default_limit_is_1000_packets() -> None:
    cfg = LinkConfig(rate_kbps=100)
    assert cfg.queue_limit_packets == K_DEFAULT_QUEUE_PACKETS == 1000
    link = Link(cfg, rng=random.Random(1))
    for i in range(1100):
        link.send(seq_payload(i, 100), now=0.0)
    assert link.queue_packets == 1000
    assert link.stats.dropped_by_queue == 99


def test_droptail_bytes_limit() -> None:
    link = Link(LinkConfig(rate_kbps=1000, queue_bytes=15_000), rng=random.Random(1))
    for i in range(20):
        link.send(seq_payload(i, 1500), now=0.0)
        assert link.queue_bytes <= 15_000
    assert link.queue_packets == 10
    assert link.stats.dropped_by_queue == 9
    # a small packet still fits where a big one did not
    link.send(seq_payload(99, 1400), now=0.0)
    assert link.stats.dropped_by_queue == 10
    link2 = Link(LinkConfig(rate_kbps=1000, queue_bytes=15_100), rng=random.Random(1))
    for i in range(11):
        link2.send(seq_payload(i, 1500), now=0.0)
    link2.send(seq_payload(99, 100), now=0.0)
    assert link2.queue_bytes == 15_100
    assert link2.stats.dropped_by_queue == 0


def test_droptail_ms_limit_bounds_waiting() -> None:
    pkt_time = 0.010  # 1250 B at 1000 kbit/s
    link = Link(LinkConfig(rate_kbps=1000, queue_ms=50), rng=random.Random(1))
    for i in range(20):
        link.send(seq_payload(i, 1250), now=0.0, meta=0.0)
    out = drain(link)
    # accepted while the waiting bytes are worth <= 50 ms: 6 waiting + 1 in service
    assert len(out) == 7
    assert link.stats.dropped_by_queue == 13
    # (no delay: a delivery time is the moment the packet left the bottleneck)
    waiting = np.array([d.time - d.meta for d in out]) - pkt_time  # minus own transmission
    assert waiting.max() == pytest.approx(0.060)
    assert waiting.max() <= 0.050 + pkt_time + 1e-9
    # a steady overload never waits longer than that either
    link2, out2 = stream(LinkConfig(rate_kbps=1000, queue_ms=50), 600, interval=0.004,
                         size=1250)
    assert max(d.time - d.meta for d in out2) <= 0.050 + 2 * pkt_time + 1e-9
    assert link2.stats.summary(end=3.0)["queue_delay_ms"]["p95"] <= 70.0
    assert link2.stats.dropped_by_queue > 0


# ---------------------------------------------------------------------------- traces


def trace_link(trace: CapacityTrace, **kw: object) -> Link:
    return Link(LinkConfig(trace=trace, **kw), rng=random.Random(1))  # type: ignore[arg-type]


def test_trace_file_opportunities_repeat_with_period(tmp_path: Path) -> None:
    trace = load_mahimahi(write_trace(tmp_path, "1\n1\n3\n5\n"))
    assert (trace.times_ms, trace.period_ms) == (SMALL_TRACE.times_ms, SMALL_TRACE.period_ms)
    assert trace.period_ms == 5
    assert trace.mean_rate_bps == pytest.approx(4 * 1500 * 8 / 0.005)
    link = trace_link(trace)
    for i in range(12):
        link.send(seq_payload(i, K_OPPORTUNITY_BYTES), now=0.0)
    out = drain(link)
    assert [round(d.time * 1000, 9) for d in out] == [1, 1, 3, 5, 6, 6, 8, 10, 11, 11, 13, 15]
    assert [seq_of(d) for d in out] == list(range(12))


def test_trace_two_half_packets_share_one_opportunity() -> None:
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 750), now=0.002)
    link.send(seq_payload(1, 750), now=0.002)
    link.send(seq_payload(2, 1500), now=0.002)
    out = drain(link)
    assert [round(d.time * 1000, 9) for d in out] == [3, 3, 5]


def test_trace_two_half_packets_share_the_first_opportunity() -> None:
    link = trace_link(SMALL_TRACE)
    for i in range(4):
        link.send(seq_payload(i, 750), now=0.0)
    link.send(seq_payload(4, 750), now=0.0)
    out = drain(link)
    assert [round(d.time * 1000, 9) for d in out] == [1, 1, 1, 1, 3]


def test_trace_big_packet_needs_two_opportunities() -> None:
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 3000), now=0.0)
    link.send(seq_payload(1, 1500), now=0.0)
    out = drain(link)
    # both 1 ms opportunities carry the 3000-byte packet; the next one waits for 3 ms
    assert [round(d.time * 1000, 9) for d in out] == [1, 3]
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 3000), now=0.0015)
    link.send(seq_payload(1, 1500), now=0.0015)
    out = drain(link)
    assert [round(d.time * 1000, 9) for d in out] == [5, 6]


def test_trace_leftover_of_an_opportunity_is_lost() -> None:
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 750), now=0.002)
    assert [round(d.time * 1000, 9) for d in drain(link)] == [3]
    # the 750 bytes left at 3 ms went unused; a later packet takes the next opportunity
    link.send(seq_payload(1, 750), now=0.004)
    assert [round(d.time * 1000, 9) for d in drain(link)] == [5]


def test_trace_unused_opportunities_are_lost_after_idle() -> None:
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 1500), now=0.0)
    assert [round(d.time * 1000, 9) for d in drain(link)] == [1]
    for i in range(6):
        link.send(seq_payload(i + 1, 1500), now=0.0505)
    out = drain(link)
    # 50 ms of idle opportunities are not banked: the burst gets the next ones only
    assert [round(d.time * 1000, 9) for d in out] == [51, 51, 53, 55, 56, 56]


def test_trace_plus_delay() -> None:
    link = trace_link(SMALL_TRACE, delay_ms=10)
    link.send(seq_payload(0, 1500), now=0.002)
    out = drain(link)
    assert out[0].time == pytest.approx(0.013, abs=1e-12)


def test_trace_link_created_later_starts_its_trace_then() -> None:
    link = Link(LinkConfig(trace=SMALL_TRACE), rng=random.Random(1), now=10.0)
    link.send(seq_payload(0, 1500), now=10.0)
    link.send(seq_payload(1, 1500), now=10.0)
    link.send(seq_payload(2, 1500), now=10.0)
    out = drain(link)
    assert [d.time for d in out] == pytest.approx([10.001, 10.001, 10.003], abs=1e-9)


def test_trace_saturated_throughput_equals_capacity() -> None:
    link = trace_link(SMALL_TRACE, queue_packets=100)
    # offered 1500 B every 0.5 ms = 24 Mbit/s, capacity 9.6 Mbit/s
    out: list[Delivery] = []
    for i in range(4000):
        now = i * 0.0005
        out += link.receive(now=now)
        link.send(seq_payload(i, 1500), now=now)
    out += link.receive(now=2.0)
    s = link.stats.summary(end=2.0)
    assert s["throughput_kbps"] == pytest.approx(9600.0, rel=0.01)
    assert s["capacity_kbps"] == pytest.approx(9600.0, rel=0.005)
    assert s["throughput_kbps"] <= s["capacity_kbps"] + 1e-6


def test_trace_opportunity_at_period_boundary_is_usable() -> None:
    # index 3 is the opportunity at 5 ms, which is >= 5 ms
    assert SMALL_TRACE.first_index_at_or_after(0.005) == 3
    assert SMALL_TRACE.opportunities_between(0.0, 0.005) == 3  # 1, 1 and 3 ms
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 1500), now=0.005)
    assert [round(d.time * 1000, 9) for d in drain(link)] == [5]


def test_trace_half_packets_share_opportunity_at_period_boundary() -> None:
    link = trace_link(SMALL_TRACE)
    link.send(seq_payload(0, 750), now=0.004)
    link.send(seq_payload(1, 750), now=0.004)
    # both fit the 1500 bytes of the 5 ms opportunity, as the two at 1 ms do
    assert [round(d.time * 1000, 9) for d in drain(link)] == [5, 5]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"t\.trace: empty trace"),
        ("\n  \n", r"t\.trace: empty trace"),
        ("1\nabc\n", r"t\.trace:2: not an integer millisecond: 'abc'"),
        ("1\n2.5\n", r"t\.trace:2: not an integer millisecond"),
        ("1\n5\n3\n", r"t\.trace:3: time 3 is before the previous line's 5"),
        ("-1\n5\n", r"t\.trace:1: negative time -1"),
        ("0\n0\n", r"t\.trace: the last timestamp must be > 0 ms"),
    ],
)
def test_load_mahimahi_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        load_mahimahi(write_trace(tmp_path, text))


def test_load_mahimahi_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match=r"nope\.trace not found"):
        load_mahimahi(tmp_path / "nope.trace")
    bad = tmp_path / "bin.trace"
    bad.write_bytes(b"1\n\xff\xfe\n")
    with pytest.raises(LocalProtocolError, match=r"bin\.trace: cannot read"):
        load_mahimahi(bad)


def test_load_mahimahi_accepts_blank_lines_and_repeats(tmp_path: Path) -> None:
    trace = load_mahimahi(write_trace(tmp_path, "0\n\n 2 \n2\n4\n"))
    assert trace.times_ms == (0, 2, 2, 4)
    assert trace.period_ms == 4
    assert trace.name == "t.trace"


def test_capacity_trace_validation() -> None:
    with pytest.raises(LocalProtocolError, match="no delivery opportunities"):
        CapacityTrace(name="x", times_ms=(), period_ms=5)
    with pytest.raises(LocalProtocolError, match="last timestamp must be > 0"):
        CapacityTrace(name="x", times_ms=(0,), period_ms=0)
    with pytest.raises(LocalProtocolError, match="must not decrease"):
        CapacityTrace(name="x", times_ms=(3, 1), period_ms=3)


def test_capacity_trace_indexing() -> None:
    tr = SMALL_TRACE
    assert [tr.opportunity_time(i) * 1000 for i in range(9)] == pytest.approx(
        [1, 1, 3, 5, 6, 6, 8, 10, 11])
    assert tr.first_index_at_or_after(0.0) == 0
    assert tr.first_index_at_or_after(0.0015) == 2
    assert tr.first_index_at_or_after(0.003) == 2
    assert tr.first_index_at_or_after(0.0055) == 4
    assert tr.opportunities_between(0.0015, 0.0035) == 1
    assert tr.opportunities_between(0.0055, 0.0255) == 16
    assert tr.opportunities_between(0.003, 0.003) == 0


@pytest.mark.skipif(not ATT_UP.exists(), reason=f"{ATT_UP} not present")
def test_real_trace_mean_rate_and_saturation() -> None:
    trace = load_mahimahi(ATT_UP)
    assert trace.mean_rate_bps / 1e6 == pytest.approx(1.9, abs=0.05)
    assert trace.name == ATT_UP.name
    assert LinkConfig(trace=trace).mean_rate_bps() == trace.mean_rate_bps
    # saturate it for 20 s: throughput follows the trace's capacity over those 20 s
    # (offered faster than the trace's busiest 100 ms, 19 Mbit/s, so the queue never runs dry)
    link = trace_link(trace, queue_packets=1000)
    out: list[Delivery] = []
    for i in range(20 * 2000):
        now = i * 0.0005  # 24 Mbit/s offered
        out += link.receive(now=now)
        link.send(seq_payload(i, 1500), now=now)
    out += link.receive(now=20.0)
    s = link.stats.summary(end=20.0)
    expected = trace.opportunities_between(0.0, 20.0) * 1500 * 8 / 20.0 / 1000.0
    assert s["capacity_kbps"] == pytest.approx(expected, rel=1e-6)
    assert s["throughput_kbps"] == pytest.approx(expected, rel=0.01)
    assert s["throughput_kbps"] <= s["capacity_kbps"] + 1e-6


# ---------------------------------------------------------------------------- CoDel


def test_codel_keeps_queueing_delay_low() -> None:
    results = {}
    for aqm in ("droptail", "codel"):
        cfg = LinkConfig(rate_kbps=1000, queue_packets=200, aqm=aqm)
        # twice the rate for 20 s
        link, out = stream(cfg, 4000, interval=0.005, size=1250, seed=51)
        results[aqm] = (link.stats.summary(end=out[-1].time), out)
    drop, codel = results["droptail"][0], results["codel"][0]
    assert drop["dropped_by_aqm"] == 0
    assert drop["queue_delay_ms"]["p50"] == pytest.approx(2010.0)  # 201 packets of 10 ms
    assert codel["dropped_by_aqm"] > 0
    assert codel["dropped_by_queue"] >= codel["dropped_by_aqm"]
    assert codel["queue_delay_ms"]["p50"] < drop["queue_delay_ms"]["p50"] / 5
    # it still uses the link fully
    assert codel["throughput_kbps"] == pytest.approx(1000.0, rel=0.03)
    assert codel["packets_delivered"] + codel["dropped_by_queue"] == 4000


def test_codel_leaves_a_light_load_alone() -> None:
    cfg = LinkConfig(rate_kbps=1000, aqm="codel")
    link, out = stream(cfg, 2000, interval=0.02, size=1250)  # half the rate
    assert len(out) == 2000
    assert link.stats.dropped_by_aqm == 0


# ---------------------------------------------------------------------------- duplication


def test_duplication_rate() -> None:
    n = 50_000
    link, out = stream(LinkConfig(duplicate=0.3), n, seed=61)
    dup = link.stats.duplicated
    sigma = math.sqrt(n * 0.3 * 0.7)
    assert abs(dup - 0.3 * n) < 4 * sigma
    assert len(out) == n + dup
    counts = np.bincount([seq_of(d) for d in out], minlength=n)
    assert set(counts.tolist()) == {1, 2}
    assert int((counts == 2).sum()) == dup


def test_duplication_with_loss_follows_netem() -> None:
    # netem: a duplicated packet that the loss model hits still sends one copy
    n = 50_000
    link, out = stream(LinkConfig(duplicate=0.5, loss=BernoulliLoss(rate=0.5)), n, seed=62)
    s = link.stats
    sigma = math.sqrt(n * 0.25 * 0.75)
    assert abs(s.lost_by_model - 0.25 * n) < 4 * sigma
    assert abs(s.duplicated - 0.25 * n) < 4 * sigma
    assert abs(len(out) - n) < 8 * sigma
    assert len(out) == n - s.lost_by_model + s.duplicated
    counts = np.bincount([seq_of(d) for d in out], minlength=n)
    assert int((counts == 0).sum()) == s.lost_by_model
    assert int((counts == 2).sum()) == s.duplicated


def test_duplicate_copy_follows_original_through_queue() -> None:
    link = Link(LinkConfig(rate_kbps=1000, duplicate=1.0), rng=random.Random(1))
    link.send(seq_payload(7, 1250), now=0.0)
    out = drain(link)
    assert [d.time for d in out] == pytest.approx([0.010, 0.020])
    assert [seq_of(d) for d in out] == [7, 7]
    assert link.stats.duplicated == 1


# ---------------------------------------------------------------------------- blackout, reconfigure


def test_blackout_loses_everything_offered() -> None:
    link, out = stream(LinkConfig(down=True, delay_ms=5), 500)
    assert out == []
    s = link.stats.summary(end=1.0)
    assert s["lost_down"] == 500
    assert s["loss_rate"] == 1.0
    assert s["mean_burst_length"] == 500.0


def test_blackout_holds_the_queue_then_resumes() -> None:
    cfg = LinkConfig(rate_kbps=1000)
    link = Link(cfg, rng=random.Random(1))
    for i in range(5):
        link.send(seq_payload(i, 1250), now=0.0)
    out = link.receive(now=0.015)
    assert [seq_of(d) for d in out] == [0]
    link.reconfigure(replace(cfg, down=True), now=0.015)
    link.send(seq_payload(99, 1250), now=0.05)  # offered during the blackout: lost
    out = link.receive(now=0.3)
    # the packet already on the wire finishes; the queue does not move while down
    assert [seq_of(d) for d in out] == [1]
    assert out[0].time == pytest.approx(0.020)
    assert link.queue_packets == 3
    assert link.get_timer() is None
    link.reconfigure(cfg, now=0.3)
    out = drain(link)
    assert [seq_of(d) for d in out] == [2, 3, 4]
    assert [d.time for d in out] == pytest.approx([0.31, 0.32, 0.33], abs=1e-12)
    s = link.stats.summary(end=0.33)
    assert s["lost_down"] == 1
    assert s["packets_delivered"] == 5
    # capacity only counts time up: 0.015 s + 0.03 s at 1000 kbit/s over 0.33 s
    assert s["capacity_kbps"] == pytest.approx(1000 * 0.045 / 0.33, abs=1e-3)


def test_reconfigure_rate_at_exact_time() -> None:
    cfg = LinkConfig(rate_kbps=1000)
    link = Link(cfg, rng=random.Random(1))
    for i in range(8):
        link.send(seq_payload(i, 1250), now=0.0)
    out = link.receive(now=0.025)
    link.reconfigure(replace(cfg, rate_kbps=2000), now=0.025)
    out += drain(link)
    # packets 0-2 at 10 ms each (2 was in service at the change), then 5 ms each
    expected = [0.010, 0.020, 0.030, 0.035, 0.040, 0.045, 0.050, 0.055]
    assert [d.time for d in out] == pytest.approx(expected, abs=1e-12)
    s = link.stats.summary(end=0.055)
    assert s["capacity_kbps"] == pytest.approx((1000 * 0.025 + 2000 * 0.030) / 0.055, abs=1e-3)


def test_reconfigure_delay_applies_to_later_departures() -> None:
    cfg = LinkConfig(delay_ms=10)
    link = Link(cfg, rng=random.Random(1))
    link.send(b"a", now=0.0)
    link.reconfigure(replace(cfg, delay_ms=50), now=0.001)
    link.send(b"b", now=0.002)
    out = drain(link)
    assert [(d.data, d.time) for d in out] == [(b"a", pytest.approx(0.010)),
                                              (b"b", pytest.approx(0.052))]


def test_reconfigure_new_loss_model_resets_state() -> None:
    # p = 1: the first packet is delivered (good state), then the model goes bad and stays
    sticky = GilbertLoss(p=1.0, r=1e-9, h=0.0, k=1.0)
    link = Link(LinkConfig(loss=sticky), rng=random.Random(1))
    fates: list[bool] = []

    def offer(now: float) -> None:
        before = link.stats.lost_by_model
        link.send(b"x", now=now)
        fates.append(link.stats.lost_by_model > before)

    for i in range(5):
        offer(i * 0.001)
    assert fates == [False, True, True, True, True]
    # same parameters (another field changes): the process keeps its bad state
    link.reconfigure(LinkConfig(loss=sticky, delay_ms=1), now=0.01)
    offer(0.011)
    assert fates[-1] is True
    # a new model starts in its initial (good) state
    link.reconfigure(LinkConfig(loss=replace(sticky, r=2e-9)), now=0.02)
    offer(0.021)
    offer(0.022)
    assert fates[-2:] == [False, True]
    # Markov4 too: a fresh process starts in state 1
    m4 = Markov4Loss(p13=1.0, p31=0.0, p32=0.0)
    link.reconfigure(LinkConfig(loss=m4), now=0.03)
    offer(0.031)
    offer(0.032)
    link.reconfigure(LinkConfig(loss=NoLoss()), now=0.04)
    offer(0.041)
    assert fates[-3:] == [True, True, False]


def test_self_inflicted_delay_is_what_the_packets_ahead_caused() -> None:
    # fixed rate: 1250-byte packets take 10 ms at 1 Mbit/s; the link imposes that much
    link = Link(LinkConfig(rate_kbps=1000), rng=random.Random(1))
    for i in range(3):
        link.send(seq_payload(i, 1250), now=0.0)
    drain(link)
    assert link.stats.queue_delay._buf == pytest.approx([0.01, 0.02, 0.03])
    assert link.stats.self_inflicted._buf == pytest.approx([0.0, 0.01, 0.02])
    # trace (opportunities at 1, 1, 3, 5 ms, period 5): offered at 1.5 ms a packet waits
    # for 3 ms alone; the second one offered with it leaves at 5 ms, 2 ms of it caused by
    # the first; one offered at 6.2 ms waits for 8 ms, all of it the link's
    link = trace_link(SMALL_TRACE, queue_packets=10)
    link.send(seq_payload(0, 1500), now=0.0015)
    link.send(seq_payload(1, 1500), now=0.0015)
    drain(link)
    link.send(seq_payload(2, 1500), now=0.0062)
    drain(link)
    assert link.stats.queue_delay._buf == pytest.approx([0.0015, 0.0035, 0.0018])
    assert link.stats.self_inflicted._buf == pytest.approx([0.0, 0.002, 0.0], abs=1e-12)
    summary = link.stats.summary(end=0.01)
    assert summary["self_inflicted_delay_ms"]["p50"] == pytest.approx(0.0, abs=1e-9)
    assert summary["queue_delay_ms"]["p50"] == pytest.approx(1.8)


def test_trace_started_later_matches_the_trace_joined_late() -> None:
    # (1, 1, 3, 5) with period 5, read from 2 ms in: 1 -> 4 ... 3 -> 1, 5 -> 3
    late = SMALL_TRACE.starting_at(2)
    assert late.times_ms == (1, 3, 4, 4)
    assert late.period_ms == 5
    assert late.name == "small@2ms"
    assert SMALL_TRACE.starting_at(0) is SMALL_TRACE
    assert SMALL_TRACE.starting_at(5) is SMALL_TRACE
    assert SMALL_TRACE.starting_at(7).times_ms == late.times_ms
    for bad in (-1, 1.5, True):
        with pytest.raises(LocalProtocolError, match="integer >= 0"):
            SMALL_TRACE.starting_at(bad)  # type: ignore[arg-type]
    # a saturated link on the late trace delivers when the original's opportunities come
    # 2 ms later: the same instants, shifted
    link = trace_link(late, queue_packets=100)
    for i in range(8):
        link.send(seq_payload(i, 1500), now=0.0)
    got = [d.time for d in drain(link)]
    want = [t - 0.002 for t in (SMALL_TRACE.opportunity_time(i) for i in range(2, 12))
            if t >= 0.002][:8]
    assert got == pytest.approx(want, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(times=st.lists(st.integers(0, 200), min_size=1, max_size=40),
       extra=st.integers(0, 50), start=st.integers(0, 1000))
def test_trace_start_keeps_every_opportunity(times: list[int], extra: int,
                                             start: int) -> None:
    times = sorted(times)
    period = max(times[-1] + extra, 1)
    tr = CapacityTrace(name="p", times_ms=tuple(times), period_ms=period)
    late = tr.starting_at(start)
    assert late.period_ms == period
    assert late.mean_rate_bps == tr.mean_rate_bps
    assert list(late.times_ms) == sorted(late.times_ms)
    assert all(0 <= t <= period for t in late.times_ms)
    # started again from where it came from, it is the original (an opportunity at the
    # period's end comes back at its start: the same instant of the repeated trace)
    s = start % period
    back = late.starting_at(period - s)
    assert list(back.times_ms) == (times if s == 0
                                   else sorted(0 if t == period else t for t in times))
    # the late trace's instants are the original's from the start on, moved back by it;
    # once past its first period, any period of it holds every opportunity once
    for t0 in (0.0, 0.0033, period / 2000 + 0.0004):
        p0 = t0 + period / 1000
        assert late.opportunities_between(p0, p0 + period / 1000) == len(times)
        assert (late.opportunities_between(t0, t0 + 0.0105)
                == tr.opportunities_between(t0 + s / 1000, t0 + s / 1000 + 0.0105))


def flat(spells: list[tuple[float, float]]) -> list[float]:
    return [x for spell in spells for x in spell]


def approx_flat(spells: list[tuple[float, float]]) -> object:
    return pytest.approx(flat(spells))


def test_dark_spells_are_the_long_gaps_between_opportunities() -> None:
    # opportunities at 100, 100, 450, 500 and 900 ms of a 1000 ms period
    tr = CapacityTrace(name="gaps", times_ms=(100, 100, 450, 500, 900), period_ms=1000)
    assert flat(tr.dark_spells(0.0, 1.0, 0.3)) == approx_flat([(0.1, 0.45), (0.5, 0.9)])
    # a spell opens at t0 and closes at t1 when no opportunity bounds it
    assert flat(tr.dark_spells(0.0, 1.0, 0.1)) == approx_flat(
        [(0.0, 0.1), (0.1, 0.45), (0.5, 0.9)])
    assert flat(tr.dark_spells(0.5, 0.85, 0.3)) == approx_flat([(0.5, 0.85)])
    # across the period: 900 ms to the next period's 100 ms is one spell of 0.2 s
    assert flat(tr.dark_spells(0.6, 1.5, 0.2)) == approx_flat(
        [(0.6, 0.9), (0.9, 1.1), (1.1, 1.45)])
    assert tr.dark_spells(0.0, 1.0, 0.5) == []
    for t0, t1 in ((0.5, 0.5), (-0.1, 1.0), (0.0, math.inf), (0.0, math.nan)):
        with pytest.raises(LocalProtocolError, match="dark spells need"):
            tr.dark_spells(t0, t1, 0.1)
    for gap in (0.0, -1.0, math.nan):
        with pytest.raises(LocalProtocolError, match="shortest dark spell"):
            tr.dark_spells(0.0, 1.0, gap)


@settings(max_examples=200, deadline=None)
@given(times=st.lists(st.integers(0, 300), min_size=1, max_size=30),
       extra=st.integers(0, 100), t0=st.integers(0, 700), span=st.integers(1, 900),
       gap=st.integers(1, 200))
def test_dark_spells_hold_no_opportunity_and_miss_no_long_gap(
        times: list[int], extra: int, t0: int, span: int, gap: int) -> None:
    times = sorted(times)
    tr = CapacityTrace(name="p", times_ms=tuple(times), period_ms=max(times[-1] + extra, 1))
    a, b, g = t0 / 1000, (t0 + span) / 1000, gap / 1000
    spells = tr.dark_spells(a, b, g)
    # inside [t0, t1), in order, disjoint, each at least the gap long and empty inside
    for i, (s0, s1) in enumerate(spells):
        assert a <= s0 < s1 <= b
        assert s1 - s0 >= g - 1e-12
        assert tr.opportunities_between(s0 + 1e-9, s1) == 0
        if i:
            assert spells[i - 1][1] <= s0
    # every stretch between neighbouring instants (t0, the opportunities, t1) at least
    # the gap long is a spell, found independently from the opportunity list
    n = max(len(times), 1) * (int(b * 1000) // tr.period_ms + 2)
    inside = sorted({tr.opportunity_time(i) for i in range(n)
                     if a <= tr.opportunity_time(i) < b})
    marks = [a, *inside, b]
    want = [(x, y) for x, y in itertools.pairwise(marks) if y - x >= g]
    assert flat(spells) == approx_flat(want)


def test_reconfigure_to_new_trace_starts_it_from_the_beginning() -> None:
    other = CapacityTrace(name="other", times_ms=(2, 4), period_ms=4)
    link = Link(LinkConfig(trace=SMALL_TRACE), rng=random.Random(1))
    link.reconfigure(LinkConfig(trace=other), now=0.0102)
    link.send(seq_payload(0, 1500), now=0.0102)
    link.send(seq_payload(1, 1500), now=0.0102)
    out = drain(link)
    assert [d.time for d in out] == pytest.approx([0.0122, 0.0142], abs=1e-9)


def test_reconfigure_to_no_bottleneck_releases_the_queue() -> None:
    cfg = LinkConfig(rate_kbps=1000)
    link = Link(cfg, rng=random.Random(1))
    for i in range(4):
        link.send(seq_payload(i, 1250), now=0.0)
    out = link.receive(now=0.01)
    link.reconfigure(LinkConfig(delay_ms=1), now=0.015)
    assert link.queue_packets == 0
    out += drain(link)
    assert sorted(seq_of(d) for d in out) == [0, 1, 2, 3]
    assert len(out) == 4
    assert max(d.time for d in out) <= 0.021 + 1e-12


def test_reconfigure_to_no_bottleneck_keeps_order() -> None:
    link = Link(LinkConfig(rate_kbps=1000), rng=random.Random(1))
    for i in range(3):
        link.send(seq_payload(i, 1250), now=0.0)
    link.reconfigure(LinkConfig(), now=0.005)
    out = drain(link)
    assert [seq_of(d) for d in out] == [0, 1, 2]


# ---------------------------------------------------------------------------- stats


def test_burst_counting_in_offer_order_with_queue_drops() -> None:
    # fates in offer order: ok, lost (model), ok, lost (queue) -> two runs of one.
    # They become known in the order lost, lost, ok, ok: counting in that order would
    # give one run of two.
    cfg = LinkConfig(rate_kbps=1000, queue_packets=1)
    link = Link(cfg, rng=random.Random(1))
    link.send(seq_payload(0, 1250), now=0.0)  # served
    link.reconfigure(replace(cfg, loss=BernoulliLoss(rate=1.0)), now=0.0)
    link.send(seq_payload(1, 1250), now=0.0)  # lost by the model
    link.reconfigure(cfg, now=0.0)
    link.send(seq_payload(2, 1250), now=0.0)  # queued
    link.send(seq_payload(3, 1250), now=0.0)  # dropped by the full queue
    assert link.stats.loss_runs == 0  # nothing counted until packet 0's fate is known
    out = drain(link)
    assert [seq_of(d) for d in out] == [0, 2]
    s = link.stats.summary(end=0.02)
    assert (s["lost_by_model"], s["dropped_by_queue"]) == (1, 1)
    assert link.stats.loss_runs == 2
    assert s["mean_burst_length"] == 1.0
    assert s["loss_rate"] == 0.5


def test_burst_counting_joins_model_and_queue_losses() -> None:
    # ok, queue drop, model loss, blackout, ok -> one run of three
    cfg = LinkConfig(rate_kbps=1000, queue_packets=1)
    link = Link(cfg, rng=random.Random(1))
    link.send(seq_payload(0, 1250), now=0.0)
    link.send(seq_payload(1, 1250), now=0.0)  # waits
    link.send(seq_payload(2, 1250), now=0.0)  # queue drop
    link.reconfigure(replace(cfg, loss=BernoulliLoss(rate=1.0)), now=0.0)
    link.send(seq_payload(3, 1250), now=0.0)  # model
    link.reconfigure(replace(cfg, down=True), now=0.0)
    link.send(seq_payload(4, 1250), now=0.0)  # blackout
    link.reconfigure(cfg, now=0.0)
    link.send(seq_payload(5, 1250), now=0.001)  # queue full again: dropped
    out = drain(link)
    link.send(seq_payload(6, 1250), now=0.1)
    out += drain(link)
    assert [seq_of(d) for d in out] == [0, 1, 6]
    s = link.stats.summary(end=0.2)
    assert (s["dropped_by_queue"], s["lost_by_model"], s["lost_down"]) == (2, 1, 1)
    assert s["loss_rate"] == pytest.approx(4 / 7, abs=1e-6)
    assert link.stats.loss_runs == 1
    assert s["mean_burst_length"] == 4.0


def test_summary_counts_and_loss_rate() -> None:
    cfg = LinkConfig(rate_kbps=500, queue_packets=5, loss=BernoulliLoss(rate=0.2))
    link, out = stream(cfg, 3000, interval=0.002, size=200, seed=71)
    s = link.stats.summary(end=out[-1].time)
    lost = s["lost_by_model"] + s["lost_down"] + s["dropped_by_queue"]
    assert s["loss_rate"] == pytest.approx(lost / 3000, abs=1e-6)
    assert s["packets_delivered"] == len(out)
    assert s["packets_delivered"] + lost == s["packets_offered"]
    assert s["bytes_offered"] == 3000 * 200
    assert s["bytes_delivered"] == 200 * len(out)
    assert s["dropped_by_queue"] > 0
    assert s["lost_by_model"] > 0
    assert s["duplicated"] == 0


def test_loss_rate_with_dropped_duplicates_at_most_one() -> None:
    cfg = LinkConfig(rate_kbps=1000, queue_packets=1, duplicate=1.0)
    link = Link(cfg, rng=random.Random(1))
    for i in range(3):
        link.send(seq_payload(i, 1250), now=0.0)
    out = drain(link)
    # packet 0 and its copy arrive; packets 1 and 2 (and their copies) are dropped
    assert [seq_of(d) for d in out] == [0, 0]
    s = link.stats.summary(end=1.0)
    assert (s["packets_offered"], s["duplicated"], s["dropped_by_queue"]) == (3, 3, 4)
    # two of the three offered packets never arrived
    assert s["loss_rate"] == pytest.approx(2 / 3, abs=1e-6)


def test_capacity_none_without_bottleneck() -> None:
    link, _ = stream(LinkConfig(delay_ms=5), 10)
    s = link.stats.summary(end=1.0)
    assert s["capacity_kbps"] is None
    assert s["throughput_kbps"] == pytest.approx(10 * 100 * 8 / 1000.0)


def test_capacity_for_fixed_rate_and_changes() -> None:
    link = Link(LinkConfig(rate_kbps=1000), rng=random.Random(1))
    assert link.stats.summary(end=2.0)["capacity_kbps"] == pytest.approx(1000.0)
    link = Link(LinkConfig(rate_kbps=1000), rng=random.Random(1))
    link.reconfigure(LinkConfig(rate_kbps=3000), now=1.0)
    assert link.stats.summary(end=2.0)["capacity_kbps"] == pytest.approx(2000.0)
    # down time has no capacity
    link = Link(LinkConfig(rate_kbps=1000), rng=random.Random(1))
    link.reconfigure(LinkConfig(rate_kbps=1000, down=True), now=1.0)
    assert link.stats.summary(end=4.0)["capacity_kbps"] == pytest.approx(250.0)


def test_delay_percentiles_exact_for_fixed_delay() -> None:
    link, out = stream(LinkConfig(delay_ms=20), 1000)
    assert all(d.time - d.meta == pytest.approx(0.020) for d in out)
    s = link.stats.summary(end=1.02)
    assert s["delay_ms"] == {"p50": 20.0, "p95": 20.0, "p99": 20.0}
    assert s["queue_delay_ms"] == {"p50": 0.0, "p95": 0.0}


def test_empty_stats_summary() -> None:
    stats = LinkStats()
    s = stats.summary(end=1.0)
    assert s["loss_rate"] == 0.0
    assert s["mean_burst_length"] is None
    assert s["delay_ms"] == {"p50": None, "p95": None, "p99": None}


def test_samples_exact_below_capacity() -> None:
    samples = Samples(capacity=10)
    for v in (0.001, 0.002, 0.003):
        samples.add(v)
    assert len(samples) == 3
    assert samples.total == 3
    assert samples.percentiles_ms((50,)) == {"p50": 2.0}


def test_samples_reservoir_is_bounded_and_uniform() -> None:
    samples = Samples(capacity=1000)
    values = [i / 100_000 for i in range(100_000)]
    for v in values:
        samples.add(v)
    assert len(samples) == 1000
    assert samples.total == 100_000
    kept = samples._buf
    assert set(kept) <= set(values)
    assert len(set(kept)) == 1000
    # a uniform sample of 0..1 s: mean 0.5 s, sd of the mean ~ 0.29 / sqrt(1000)
    assert np.mean(kept) == pytest.approx(0.5, abs=0.04)
    # late values are represented too, not only the first 1000
    assert sum(v >= 0.5 for v in kept) > 400
    p = samples.percentiles_ms((50,))["p50"]
    assert p is not None
    assert p == pytest.approx(500.0, abs=60.0)


def test_link_stats_start_follows_link_creation() -> None:
    link = Link(LinkConfig(rate_kbps=800), rng=random.Random(1), now=5.0)
    link.send(b"x" * 1000, now=5.0)
    drain(link)
    s = link.stats.summary(end=6.0)
    assert s["duration_s"] == 1.0
    assert s["throughput_kbps"] == pytest.approx(8.0)
    assert s["capacity_kbps"] == pytest.approx(800.0)


# ---------------------------------------------------------------------------- determinism


def fates_and_times(seed: int) -> list[tuple[int, float]]:
    cfg = LinkConfig(delay_ms=20, jitter_ms=5, jitter_distribution="normal", reorder=True,
                     rate_kbps=4000, queue_packets=20, loss=GilbertLoss.from_rate_burst(0.1, 3),
                     duplicate=0.05)
    _, out = stream(cfg, 3000, seed=seed, interval=0.002, size=1200)
    return [(seq_of(d), d.time) for d in out]


def test_same_seed_same_run() -> None:
    assert fates_and_times(5) == fates_and_times(5)


def test_different_seed_different_fates() -> None:
    a, b = fates_and_times(5), fates_and_times(6)
    assert {s for s, _ in a} != {s for s, _ in b}


# ---------------------------------------------------------------------------- taps


def test_taps_see_offered_and_delivered() -> None:
    entered: list[tuple[float, bytes]] = []
    left: list[tuple[float, bytes]] = []
    cfg = LinkConfig(delay_ms=10, rate_kbps=1000, queue_packets=2, loss=BernoulliLoss(rate=0.3))
    link = Link(cfg, rng=random.Random(81))
    link.on_enter = lambda now, data: entered.append((now, data))
    link.on_leave = lambda now, data: left.append((now, data))
    sent = []
    out: list[Delivery] = []
    for i in range(300):
        now = i * 0.004
        out += link.receive(now=now)
        data = seq_payload(i, 600)
        sent.append((now, data))
        link.send(data, now=now)
    out += drain(link)
    assert entered == sent
    assert left == [(d.time, d.data) for d in out]
    assert len(left) < len(entered)
    assert len(left) == link.stats.packets_delivered


# ---------------------------------------------------------------------------- pcap


SRC = ("10.1.2.3", 40000)
DST = ("192.168.7.9", 50000)


def test_ipv4_udp_is_valid() -> None:
    from scapy.layers.inet import IP, UDP

    payload = b"hello edgewire"
    raw = ipv4_udp(SRC, DST, payload, ident=0x12345)
    assert len(raw) == 20 + 8 + len(payload)
    pkt = IP(raw)
    assert (pkt.version, pkt.ihl, pkt.proto, pkt.ttl) == (4, 5, 17, 64)
    assert (pkt.src, pkt.dst) == (SRC[0], DST[0])
    assert pkt.len == len(raw)
    assert pkt.id == 0x2345
    assert pkt.flags == "DF"
    udp = pkt[UDP]
    assert (udp.sport, udp.dport, udp.len, udp.chksum) == (SRC[1], DST[1], 8 + len(payload), 0)
    assert bytes(udp.payload) == payload
    # scapy recomputes the same header checksum
    again = IP(raw)
    del again.chksum
    assert IP(bytes(again)).chksum == pkt.chksum
    assert bytes(again) == raw


@pytest.mark.parametrize("size", [0, 1, 1471, 65_507])
def test_ipv4_udp_sizes(size: int) -> None:
    from scapy.layers.inet import IP

    raw = ipv4_udp(SRC, DST, b"\xab" * size)
    pkt = IP(raw)
    assert pkt.len == 28 + size
    again = IP(raw)
    del again.chksum
    assert bytes(again) == raw


def test_ipv4_udp_too_large() -> None:
    with pytest.raises(LocalProtocolError, match="does not fit IPv4"):
        ipv4_udp(SRC, DST, b"x" * 65_508)


def tapped_run(tmp_path: Path) -> tuple[Path, Path, list[tuple[float, bytes]],
                                        list[Delivery]]:
    cfg = LinkConfig(delay_ms=12.3456, rate_kbps=2000, loss=BernoulliLoss(rate=0.2))
    link = Link(cfg, rng=random.Random(91))
    pin, pout = tmp_path / "in.pcap", tmp_path / "out.pcap"
    sent: list[tuple[float, bytes]] = []
    out: list[Delivery] = []
    with PcapTap(pin, SRC, DST) as tin, PcapTap(pout, SRC, DST) as tout:
        link.on_enter = tin
        link.on_leave = tout
        for i in range(200):
            now = 1.0 + i * 0.0031234567
            out += link.receive(now=now)
            data = seq_payload(i, 100 + i)
            sent.append((now, data))
            link.send(data, now=now)
        out += drain(link)
        assert tin.packets == 200
        assert tout.packets == len(out)
    return pin, pout, sent, out


def test_pcap_tap_round_trip(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    pin, pout, sent, out = tapped_run(tmp_path)
    for path, expected in ((pin, sent), (pout, [(d.time, d.data) for d in out])):
        packets = rdpcap(str(path))
        assert len(packets) == len(expected)
        for pkt, (t, data) in zip(packets, expected, strict=True):
            assert isinstance(pkt, IP)
            assert bytes(pkt[UDP].payload) == data
            assert (pkt[UDP].sport, pkt[UDP].dport) == (SRC[1], DST[1])
            assert round(float(pkt.time) * 1e6) == round(t * 1e6)


def test_pcap_tap_rounds_to_the_next_second(tmp_path: Path) -> None:
    from scapy.utils import rdpcap

    path = tmp_path / "round.pcap"
    with PcapTap(path, SRC, DST) as tap:
        tap(1.9999999, b"a")
        tap(3.0000004, b"b")
    times = [float(p.time) for p in rdpcap(str(path))]
    assert times == [2.0, 3.0]


def test_pcap_tap_unwritable(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match="cannot write"):
        PcapTap(tmp_path / "missing-dir" / "x.pcap", SRC, DST)


def test_pcap_tshark_agrees(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (apt-get install tshark); CI installs it")
    _, pout, _, out = tapped_run(tmp_path)
    result = subprocess.run(
        [tshark, "-r", str(pout), "-T", "fields", "-e", "frame.time_epoch",
         "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length"],
        capture_output=True, text=True, check=True, timeout=60)
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == len(out)
    for row, d in zip(rows, out, strict=True):
        assert round(float(row[0]) * 1e6) == round(d.time * 1e6)
        assert (int(row[1]), int(row[2])) == (SRC[1], DST[1])
        assert int(row[3]) == 8 + len(d.data)


# ---------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delay_ms": -1}, "delay_ms must be a finite number >= 0, got -1"),
        ({"delay_ms": math.inf}, "delay_ms must be a finite number"),
        ({"jitter_ms": math.nan}, "jitter_ms must be a finite number"),
        ({"jitter_distribution": "gamma"},
         "jitter_distribution must be one of uniform, normal, pareto, paretonormal, "
         "got 'gamma'"),
        ({"rate_kbps": 0}, r"rate_kbps must be > 0 \(use down = true for a blackout\)"),
        ({"rate_kbps": -5}, "rate_kbps must be a finite number >= 0"),
        ({"rate_kbps": 100, "trace": SMALL_TRACE}, "give rate_kbps or trace, not both"),
        ({"rate_kbps": 100, "queue_packets": 10, "queue_bytes": 20_000},
         "give one of queue_packets, queue_bytes, queue_ms"),
        ({"queue_ms": 10, "queue_bytes": 20_000}, "give one of queue_packets"),
        ({"queue_packets": 0}, "queue_packets must be an integer >= 1, got 0"),
        ({"queue_packets": 2.5}, "queue_packets must be an integer >= 1"),
        ({"queue_bytes": 1000}, "queue_bytes must be an integer >= 1500, got 1000"),
        ({"queue_ms": 0}, "queue_ms must be > 0"),
        ({"aqm": "red"}, "aqm must be one of droptail, codel, got 'red'"),
        ({"codel_target_ms": 0}, "codel_target_ms must be > 0"),
        ({"codel_interval_ms": -1}, "codel_interval_ms must be a finite number"),
        ({"duplicate": 1.5}, r"link loss: duplicate must be a probability in \[0, 1\]"),
        ({"duplicate": -0.1}, "duplicate must be a probability"),
        ({"loss": "bernoulli"}, "loss must be a LossConfig, got str"),
    ],
)
def test_invalid_link_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        LinkConfig(**kwargs)  # type: ignore[arg-type]


def test_bernoulli_invalid() -> None:
    with pytest.raises(LocalProtocolError, match="bernoulli loss: rate must be a probability"):
        BernoulliLoss(rate=1.01)


def test_link_config_derived_properties() -> None:
    assert not LinkConfig().has_bottleneck
    assert LinkConfig().mean_rate_bps() is None
    assert LinkConfig(rate_kbps=250).mean_rate_bps() == 250_000.0
    assert LinkConfig(trace=SMALL_TRACE).has_bottleneck
    assert LinkConfig(queue_bytes=3000).queue_limit_packets is None
    assert LinkConfig(queue_packets=7).queue_limit_packets == 7


def test_oversized_packet_rejected() -> None:
    link = Link(LinkConfig(), rng=random.Random(1), name="uplink")
    link.send(b"x" * K_MAX_PACKET_BYTES, now=0.0)
    with pytest.raises(LocalProtocolError, match="uplink: packet of 65508 bytes"):
        link.send(b"x" * (K_MAX_PACKET_BYTES + 1), now=0.0)
    assert link.stats.packets_offered == 1


# ---------------------------------------------------------------------------- properties


TRACES_FOR_PROPERTIES = [
    SMALL_TRACE,
    CapacityTrace(name="one-per-ms", times_ms=(1,), period_ms=1),
    CapacityTrace(name="bursty", times_ms=(0, 0, 0, 7, 20), period_ms=20),
]

loss_configs = st.one_of(
    st.just(NoLoss()),
    st.builds(BernoulliLoss, rate=st.floats(0.0, 1.0)),
    st.builds(lambda rate, burst: GilbertLoss.from_rate_burst(rate, burst),
              st.floats(0.0, 0.4), st.floats(1.0, 5.0)),
    st.builds(Markov4Loss, p13=st.floats(0.0, 0.3), p14=st.floats(0.0, 0.3)),
)


@st.composite
def link_configs(draw: st.DrawFn) -> LinkConfig:
    bottleneck = draw(st.sampled_from(["none", "rate", "trace"]))
    rate = draw(st.floats(50.0, 20_000.0)) if bottleneck == "rate" else None
    trace = draw(st.sampled_from(TRACES_FOR_PROPERTIES)) if bottleneck == "trace" else None
    limit = draw(st.sampled_from(["default", "packets", "bytes", "ms"]))
    queue: dict[str, object] = {}
    if limit == "packets":
        queue["queue_packets"] = draw(st.integers(1, 20))
    elif limit == "bytes":
        queue["queue_bytes"] = draw(st.integers(1500, 30_000))
    elif limit == "ms":
        queue["queue_ms"] = draw(st.floats(1.0, 200.0))
    return LinkConfig(
        delay_ms=draw(st.sampled_from([0.0, 1.0, 25.0])),
        jitter_ms=draw(st.sampled_from([0.0, 0.0, 5.0, 40.0])),
        jitter_distribution=draw(st.sampled_from(["uniform", "normal", "pareto",
                                                  "paretonormal"])),
        reorder=draw(st.booleans()),
        rate_kbps=rate,
        trace=trace,
        aqm=draw(st.sampled_from(["droptail", "codel"])),
        codel_target_ms=draw(st.sampled_from([1.0, 5.0])),
        codel_interval_ms=draw(st.sampled_from([10.0, 100.0])),
        loss=draw(loss_configs),
        duplicate=draw(st.sampled_from([0.0, 0.0, 0.2, 1.0])),
        down=draw(st.booleans()) and draw(st.booleans()),
        **queue,  # type: ignore[arg-type]
    )


def check_queue(link: Link, cfg: LinkConfig, max_size: int) -> None:
    limit = cfg.queue_limit_packets
    if not cfg.has_bottleneck:
        assert link.queue_packets == 0
    elif limit is not None:
        assert link.queue_packets <= limit
    elif cfg.queue_bytes is not None:
        assert link.queue_bytes <= cfg.queue_bytes
    else:
        assert cfg.queue_ms is not None
        rate = cfg.mean_rate_bps()
        assert rate is not None
        assert link.queue_bytes * 8 / rate * 1000 <= cfg.queue_ms + max_size * 8 / rate * 1000


@settings(max_examples=50, deadline=None)
@given(
    cfg=link_configs(),
    ops=st.lists(st.tuples(st.sampled_from([0.0, 0.0, 1e-4, 1e-3, 0.005, 0.02, 0.3]),
                           st.integers(0, 3000)), min_size=1, max_size=120),
    seed=st.integers(0, 2**32 - 1),
)
def test_link_invariants(cfg: LinkConfig, ops: list[tuple[float, int]], seed: int) -> None:
    link = Link(cfg, rng=random.Random(seed))
    out: list[Delivery] = []
    send_time: dict[int, float] = {}
    size_of: dict[int, int] = {}
    max_size = max(size for _, size in ops)
    now = 0.0

    def collect(until: float) -> None:
        while (t := link.get_timer()) is not None and t <= until:
            assert t >= (out[-1].time if out else 0.0)
            out.extend(link.receive(now=t))
        out.extend(link.receive(now=until))
        timer = link.get_timer()
        assert timer is None or timer > until

    for i, (dt, size) in enumerate(ops):
        now += dt
        collect(now)
        send_time[i] = now
        size_of[i] = size
        link.send(seq_payload(i, max(size, 4)), now=now, meta=i)
        check_queue(link, cfg, max(max_size, 4))
    out += drain(link)
    assert link.get_timer() is None
    assert link.queue_packets == 0
    assert link.in_flight == 0

    s = link.stats
    assert s.packets_delivered == len(out)
    assert (s.packets_delivered + s.lost_by_model + s.lost_down + s.dropped_by_queue
            == s.packets_offered + s.duplicated)
    assert s.packets_offered == len(ops)
    assert s.dropped_by_aqm <= s.dropped_by_queue
    if cfg.aqm == "droptail":
        assert s.dropped_by_aqm == 0
    if cfg.down:
        assert out == []
        assert s.lost_down == len(ops)
    if isinstance(cfg.loss, NoLoss) and not cfg.has_bottleneck and not cfg.down:
        assert s.lost == 0
    if cfg.duplicate == 0.0:
        assert s.duplicated == 0
    assert 0 <= s.lost_in_runs <= s.lost
    assert s.loss_runs <= s.lost_in_runs

    times = [d.time for d in out]
    assert times == sorted(times)
    seqs = [d.meta for d in out]
    if not cfg.reorder:
        assert seqs == sorted(seqs)
    for d in out:
        assert seq_of(d) == d.meta
        # (trace opportunity times are matched with a 1e-12 s tolerance)
        assert d.time >= send_time[d.meta] - 1e-9
        if cfg.jitter_ms == 0.0:
            floor = send_time[d.meta] + cfg.delay_ms / 1000.0
            if cfg.rate_kbps is not None:
                floor += len(d.data) * 8 / (cfg.rate_kbps * 1000.0)
            assert d.time >= floor - 1e-9
    summary = s.summary(end=now + 1.0)
    assert summary["packets_offered"] == len(ops)
    assert summary["loss_rate"] >= 0.0
    if cfg.duplicate == 0.0:  # see test_loss_rate_with_dropped_duplicates_at_most_one
        assert summary["loss_rate"] <= 1.0


@settings(max_examples=50, deadline=None)
@given(
    dts=st.lists(st.floats(0.0, 0.01), min_size=1, max_size=60),
    seed=st.integers(0, 1000),
    steps=st.lists(st.floats(0.0, 0.02), min_size=1, max_size=30),
)
def test_timer_never_in_the_past_with_arbitrary_polling(
        dts: list[float], seed: int, steps: list[float]) -> None:
    # the caller may poll at any time, not only at the timer
    cfg = LinkConfig(delay_ms=3, jitter_ms=2, rate_kbps=800, queue_packets=10,
                     loss=BernoulliLoss(rate=0.1))
    link = Link(cfg, rng=random.Random(seed))
    now = 0.0
    got: list[Delivery] = []
    for dt in dts:
        now += dt
        link.send(b"x" * 500, now=now)
    for step in steps:
        now += step
        got += link.receive(now=now)
        timer = link.get_timer()
        assert timer is None or timer > now
        assert all(d.time <= now for d in got)
    got += drain(link)
    assert link.stats.packets_delivered == len(got)
    assert len(got) + link.stats.lost == len(dts)


# ---------------------------------------------------------------------------- misc


def test_meta_travels_with_the_packet() -> None:
    link = Link(LinkConfig(delay_ms=1), rng=random.Random(1))
    addr = (("10.0.0.1", 1), ("10.0.0.2", 2))
    link.send(b"abc", now=0.0, meta=addr)
    (d,) = drain(link)
    assert d.meta == addr
    assert d.data == b"abc"


# ---------------------------------------------------------------------------- the reader


def test_a_reader_reads_at_its_rate_in_order_and_its_wait_is_delay() -> None:
    # 1000-byte packets every ms (8 Mbit/s) to a process reading 4 Mbit/s: one every 2 ms
    cfg = LinkConfig(delay_ms=10.0, read_kbps=4000.0, read_buffer_bytes=1_000_000)
    link, out = stream(cfg, 50, size=1000)
    assert [seq_of(d) for d in out] == list(range(50))
    assert [d.time for d in out] == pytest.approx([0.010 + 0.002 * (i + 1) for i in range(50)])
    assert link.reader_drops == 0
    assert link.stats.dropped_by_reader == 0
    # the wait in the socket is part of the one-way delay the link reports
    assert link.stats.delay.percentiles_ms((50,))["p50"] > 30.0


def test_a_full_socket_buffer_drops_and_counts() -> None:
    # the buffer holds 4 packets; the reader takes one every 2 ms while two arrive
    cfg = LinkConfig(read_kbps=4000.0, read_buffer_bytes=4000)
    link, out = stream(cfg, 40, size=1000)
    delivered = [seq_of(d) for d in out]
    assert delivered == sorted(delivered)
    assert link.reader_drops == link.stats.dropped_by_reader == 40 - len(delivered)
    assert 15 <= link.reader_drops <= 20  # about half, once the buffer is full
    assert link.stats.summary(end=1.0)["dropped_by_reader"] == link.reader_drops
    assert link.stats.lost == 0  # the receiver's loss, not the path's


def test_a_reader_that_stalls_takes_bursts() -> None:
    # instant reads, but 10 ms of other work after every 4000 bytes
    cfg = LinkConfig(read_stall_ms=10.0, read_stall_bytes=4000)
    link, out = stream(cfg, 12, size=1000)
    times = [round(d.time, 6) for d in out]
    # four read as they arrive (0-3 ms), then the next ones wait for the end of the stall
    assert times[:4] == [0.0, 0.001, 0.002, 0.003]
    assert times[4:8] == [0.013] * 4
    assert times[8:] == [0.023] * 4
    assert link.reader_drops == 0


def test_a_link_without_a_reader_says_so_and_one_added_later_starts_counting() -> None:
    link = Link(LinkConfig(), rng=random.Random(1))
    assert link.reader_drops is None
    link.reconfigure(LinkConfig(read_kbps=1000.0), now=0.0)
    assert link.reader_drops == 0


@pytest.mark.parametrize("bad", [{"read_kbps": 0.0}, {"read_kbps": -1.0},
                                 {"read_kbps": math.inf}, {"read_stall_ms": -1.0},
                                 {"read_buffer_bytes": 100}, {"read_stall_bytes": 1.5},
                                 {"read_buffer_bytes": True}])
def test_reader_settings_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError, match="read_"):
        LinkConfig(**bad)  # type: ignore[arg-type]
