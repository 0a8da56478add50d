"""The "delivery" estimator: the delivered rate steered by the queueing delay.

Closed loop on the synthetic bottleneck of test_bwe (virtual time), exact behaviour on
hand-made reports, bad input, and netsim runs at a fixed seed for the constant-rate and
step goals.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError
from edgewire.transport.bwe import (
    BweConfig,
    DeliveryConfig,
    DeliveryEstimator,
    PacketResult,
    ProbeConfig,
    create_estimator,
    estimator_names,
)
from edgewire.transport.bwe.rates import SentLog
from tests.test_bwe import Bench, Path


def _report(est: DeliveryEstimator, first_seq: int, start: float, n: int, gap: float,
            owd: float, now: float, size: int = 1200) -> None:
    """``n`` packets sent ``gap`` apart from ``start``, each arriving ``owd`` later."""
    rows = []
    for i in range(n):
        send = start + i * gap
        est.on_sent(size_bytes=size, now=send)
        rows.append(PacketResult(first_seq + i, send, size, 50.0 + send + owd))
    est.on_feedback(rows, now=now)


def test_registered_and_configured() -> None:
    assert "delivery" in estimator_names()
    est = create_estimator("delivery")
    assert isinstance(est, DeliveryEstimator)
    assert est.target_bps == BweConfig().start_bps
    for bad in ({"queue_target": 0.0}, {"gain": -1.0}, {"min_factor": 1.5},
                {"startup_gain": 0.5}, {"timeout_factor": 0.0},
                {"drain_horizon": float("nan")}, {"feedback_interval": 0.0},
                {"feedback_interval": float("inf")}, {"predict": 1},
                {"predict_rate_factor": 0.0}, {"predict_rate_factor": 1.5},
                {"predict_horizon": 0.0}, {"predict_min_queue": -0.001},
                {"predict_min_queue": float("nan")}, {"queue_loss": 1},
                {"reference_rtt": 0.0}, {"reference_rtt": float("inf")}, {"busy_rate": 1},
                {"startup_least_queue": 1}):
        with pytest.raises(LocalProtocolError):
            DeliveryConfig(**bad)
    # it asks the peer for a report every feedback_interval; gcc states no wish
    assert est.feedback_interval == DeliveryConfig().feedback_interval == 0.025
    assert create_estimator("gcc").feedback_interval is None


def test_startup_doubles_the_delivered_rate_until_a_queue_appears() -> None:
    # the law on the measured queue (these hand-made reports stop sending at their last
    # packet, so a predicted queue would be drained by the time of the report)
    est = DeliveryEstimator(BweConfig(start_bps=300_000,
                                      delivery=DeliveryConfig(predict=False)))
    # 1 Mbit/s delivered (1200 B every 9.6 ms) with no queue: startup doubles it
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    assert est.state()["startup"] is True
    assert est.target_bps == pytest.approx(2 * 1_000_000, rel=0.05)
    # the same rate with 40 ms of queue (well above the 10 ms target; the base was
    # measured at this rate, so a packet's 9.6 ms transmission is in it already): startup
    # ends and the rate drains below the delivered rate
    _report(est, 20, 0.2, 20, 0.0096, 0.065, now=0.5)
    state = est.state()
    assert state["startup"] is False
    assert state["queue_delay"] == pytest.approx(0.04, abs=1e-6)
    excess = 0.04 - 0.01
    assert est.target_bps == pytest.approx(1_000_000 * (1 - excess / 0.2), rel=0.05)
    assert state["delay_decreases"] == 1


def test_empty_queue_grows_by_the_gain_and_a_packet_time_is_not_queue() -> None:
    cfg = BweConfig(start_bps=100_000, delivery=DeliveryConfig(startup_gain=1.0))
    est = DeliveryEstimator(cfg)
    # base 25 ms at 1 Mbit/s
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    assert est.target_bps == pytest.approx(1_000_000 * 1.25, rel=0.05)
    # the path slows to 0.5 Mbit/s: one 1200-byte packet now takes 19.2 ms instead of
    # 9.6, 9.6 ms above the base. Below 10 ms + 19.2 ms that is no queue to drain:
    # the rate stays above what is delivered
    _report(est, 20, 0.25, 20, 0.0192, 0.0346, now=0.7)
    assert est.target_bps > 500_000


def test_a_packet_time_is_queue_again_once_the_base_is_learned_at_the_slower_rate() -> None:
    cfg = BweConfig(start_bps=100_000,
                    delivery=DeliveryConfig(startup_gain=1.0, base_window=1.0, predict=False))
    est = DeliveryEstimator(cfg)
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)  # base 25 ms at 1 Mbit/s
    seq, t = 20, 0.25
    while t < 3.0:  # 0.5 Mbit/s: 9.6 ms above that base, excused as transmission time
        _report(est, seq, t, 10, 0.0192, 0.0346, now=t + 0.25)
        assert est.target_bps > 500_000
        seq, t = seq + 10, t + 0.25
    # two base periods later both the base and the fastest rate are the slow path's:
    # 20 ms more is queue above the 10 ms target, and the rate drains below delivery
    _report(est, seq, t, 10, 0.0192, 0.0546, now=t + 0.25)
    assert est.state()["queue_delay"] == pytest.approx(0.02, abs=1e-3)
    assert est.target_bps < 500_000


def test_closed_loop_converges_and_follows_a_step_down_and_up() -> None:
    est = create_estimator("delivery")
    bench = Bench(est, Path(2_000_000))
    bench.run(6.0)
    settled = bench.targets(2.0, 6.0)
    assert min(settled) >= 0.7 * 2_000_000
    assert max(settled) <= 1.35 * 2_000_000
    bench.path.capacity_bps = 500_000
    bench.run(10.0)
    # this bottleneck has no window in front of it: the step queues 0.4 s before the
    # feedback shows it, and that is drained at half the new capacity; the predicted
    # queue ends the drain once what was sent since covers it, before the reports show
    # it gone (0.75 s)
    assert max(bench.targets(6.3, 6.8)) <= 0.7 * 500_000
    assert max(s["queue_delay"] for t, _, s in bench.trace if 7.0 <= t <= 10.0) < 0.04
    after = bench.targets(7.5, 10.0)
    assert max(after) <= 1.2 * 500_000
    assert min(after) >= 0.8 * 500_000
    bench.path.capacity_bps = 2_000_000
    bench.run(12.0)
    assert min(bench.targets(11.0, 12.0)) >= 0.7 * 2_000_000


def test_an_application_below_its_rate_does_not_pull_it_down() -> None:
    est = create_estimator("delivery")
    bench = Bench(est, Path(5_000_000), app_bps=200_000)
    bench.run(5.0)
    # it sends 200 kbit/s: the rate grew from what was delivered, and never fell
    targets = bench.targets(0.5, 5.0)
    assert all(b >= a for a, b in itertools.pairwise(targets))
    assert targets[-1] >= 200_000


def test_feedback_timeout_holds_the_rate_by_default_and_scales_when_asked() -> None:
    for factor, expect in ((1.0, 1.0), (0.5, 0.5)):
        cfg = BweConfig(start_bps=1_000_000, delivery=DeliveryConfig(timeout_factor=factor))
        est = DeliveryEstimator(cfg)
        est.on_sent(size_bytes=1200, now=0.0)
        est.on_feedback([PacketResult(1, 0.0, 1200, 0.02)], now=0.05)
        before = est.target_bps
        est.on_sent(size_bytes=1200, now=0.1)
        timer = est.get_timer()
        assert timer is not None
        est.on_timer(now=timer)
        assert est.target_bps == pytest.approx(before * expect)
        assert est.state()["feedback_timeouts"] == 1


def test_heavy_loss_backs_off_through_the_loss_controller() -> None:
    est = create_estimator("delivery")
    bench = Bench(est, Path(2_000_000, loss_every=4))  # 25 % loss, no queue
    bench.run(6.0)
    state = est.state()
    assert state["loss_decreases"] >= 1
    assert max(bench.targets(4.0, 6.0)) < 2_000_000


def test_loss_of_an_overflowing_queue_does_not_pin_the_rate_after_a_fade() -> None:
    """A 1 s fade to 0.1 Mbit/s overflows the queue. The delay law cuts the rate for that
    queue; the losses came with the queue, so the loss-based part leaves them to it. When
    it counted them too (``queue_loss``), it cut its own estimate to where the law had cut
    the rate and held it there: at a few packets a second its report pool took longer
    than the run to fill with the low loss that would release it."""

    def fade(queue_loss: bool) -> tuple[DeliveryEstimator, Bench]:
        est = DeliveryEstimator(BweConfig(delivery=DeliveryConfig(queue_loss=queue_loss)))
        bench = Bench(est, Path(4_000_000, queue_limit=0.5), feedback_interval=0.025)
        bench.run(3.0)
        bench.path.capacity_bps = 100_000
        bench.run(4.0)
        bench.path.capacity_bps = 4_000_000
        bench.run(10.0)
        return est, bench

    est, bench = fade(False)
    state = est.state()
    assert state["losses_with_queue"] > 20
    assert state["loss_decreases"] == 0
    back = next(t for t, target, _ in bench.trace if t >= 4.0 and target >= 2_000_000)
    assert back <= 6.0  # measured 5.4 s: 1.4 s after the fade
    assert min(bench.targets(8.0, 10.0)) >= 3_000_000
    est, bench = fade(True)
    assert est.state()["losses_with_queue"] == 0
    assert est.state()["loss_based_bps"] <= 100_000
    assert max(bench.targets(8.0, 10.0)) <= 100_000


def test_a_peer_cannot_claim_faster_delivery_than_the_sending() -> None:
    """A receiver that reports packets arriving ten times faster than they were sent
    claims 19 Mbit/s; the delivered rate taken is at most twice the rate the reported
    packets were sent at, so the estimate stays within a few times the real rate."""
    cfg = BweConfig(max_bps=50_000_000)
    est = DeliveryEstimator(cfg)
    seq = 0
    send_bps = 1200 * 8 / 0.005  # 1.92 Mbit/s: one packet every 5 ms
    for k in range(40):
        rows = []
        for i in range(10):
            seq += 1
            send = k * 0.05 + i * 0.005
            est.on_sent(size_bytes=1200, now=send)
            rows.append(PacketResult(seq, send, 1200, 1.0 + seq * 0.0005))
        est.on_feedback(rows, now=k * 0.05 + 0.05)
        state = est.state()
        if state["delivered_bps"] is not None:
            assert state["delivered_bps"] <= 2 * send_bps * 1.001
        # startup doubles what was delivered, never more
        assert est.target_bps <= max(cfg.start_bps, 2 * 2 * send_bps * 1.001)
    assert est.state()["delivered_bps"] is not None
    json.dumps(est.state(), allow_nan=False)


def _goal_run(name: str, *, rtt_ms: float = 50.0,
              bwe: dict[str, object] | None = None) -> dict[str, object]:
    from edgewire.cli.bench_bwe import _row, _step_figures, scenarios
    from edgewire.netsim.run import run_scenario
    from edgewire.netsim.scenario import parse_scenario

    table = next(t for t in scenarios(20.0, None, rtt_ms=rtt_ms) if t["name"] == name)
    transport: dict[str, object] = {"cc": "edgewire", "estimator": "delivery"}
    if bwe:
        transport["bwe"] = bwe
    result = run_scenario(parse_scenario({**table, "seed": 1, "transport": transport}))
    assert result["transport"]["estimator"] == "delivery"
    row = _row(result)
    if name.startswith("step"):
        row.update(_step_figures(result, 20.0))
    return row


def test_netsim_constant_rate_goal() -> None:
    row = _goal_run("constant-2mbps")
    assert row["utilization"] >= 0.90  # type: ignore[operator]
    assert row["queue_delay_p95_ms"] <= 50  # type: ignore[operator]


def test_netsim_constant_rate_goal_over_a_200ms_round_trip() -> None:
    # an intercontinental path: the law's time constants stretch with the min RTT
    row = _goal_run("constant-2mbps", rtt_ms=200)
    assert row["utilization"] >= 0.90  # type: ignore[operator]
    assert row["queue_delay_p95_ms"] <= 50  # type: ignore[operator]
    # held at a short path's (a reference no path reaches), it swings between a full
    # queue and an idle link
    fixed = _goal_run("constant-2mbps", rtt_ms=200, bwe={"delivery": {"reference_rtt": 10.0}})
    assert fixed["queue_delay_p95_ms"] > 50  # type: ignore[operator]
    assert fixed["utilization"] < 0.90  # type: ignore[operator]


def test_netsim_step_goals_over_a_200ms_round_trip() -> None:
    row = _goal_run("step-2-0.5-2mbps", rtt_ms=200)
    for key, limit in (("down_estimate_within_20pct_s", 2.0),
                       ("down_queue_p95_under_50ms_s", 3.0), ("up_estimate_80pct_s", 5.0)):
        assert row[key] is not None
        assert row[key] <= limit  # type: ignore[operator]


def test_netsim_goals_over_a_300ms_round_trip() -> None:
    # the constant link, the step and the competition (video, tokens and a bulk
    # transfer) over a path as long as a device to a cloud region across an ocean
    constant = _goal_run("constant-2mbps", rtt_ms=300)
    assert constant["utilization"] >= 0.90  # type: ignore[operator]
    assert constant["queue_delay_p95_ms"] <= 50  # type: ignore[operator]
    step = _goal_run("step-2-0.5-2mbps", rtt_ms=300)
    # the estimate is within 20 % of 0.5 Mbit/s 1.97 s after the step (goal 2 s): a
    # margin any change of timing moves by a tenth of a second either way (a startup that
    # ends on two reports above the target instead of one gave 2.07 s), so it is bounded
    # at 2.5 s here. The queue goal, which the previous version never met (its queue
    # never came back under 50 ms), and the step up's hold by 0.6 s and more
    for key, limit in (("down_estimate_within_20pct_s", 2.5),
                       ("down_queue_p95_under_50ms_s", 3.0), ("up_estimate_80pct_s", 5.0)):
        assert step[key] is not None
        assert step[key] <= limit  # type: ignore[operator]
    competition = _goal_run("competition-2mbps", rtt_ms=300)
    assert competition["utilization"] >= 0.90  # type: ignore[operator]
    assert competition["queue_delay_p95_ms"] <= 50  # type: ignore[operator]
    # with the rate taken by arrival time, the idle spells its full window leaves read as
    # a slower path, and the rate swings every half second
    arrival = _goal_run("competition-2mbps", rtt_ms=300, bwe={"delivery": {"busy_rate": False}})
    assert arrival["utilization"] < 0.80  # type: ignore[operator]


def test_netsim_step_goals() -> None:
    row = _goal_run("step-2-0.5-2mbps")
    assert row["down_estimate_within_20pct_s"] is not None
    assert row["down_estimate_within_20pct_s"] <= 2.0  # type: ignore[operator]
    assert row["down_queue_p95_under_50ms_s"] is not None
    assert row["down_queue_p95_under_50ms_s"] <= 3.0  # type: ignore[operator]
    assert row["up_estimate_80pct_s"] is not None
    assert row["up_estimate_80pct_s"] <= 5.0  # type: ignore[operator]


def test_scenario_and_run_options_select_the_estimator() -> None:
    from edgewire.netsim.run import RunOptions, run_scenario
    from edgewire.netsim.scenario import ScenarioError, parse_scenario

    base = {"name": "t", "duration_s": 0.5, "link": {"rate_kbps": 1000, "delay_ms": 10},
            "traffic": {"down": {"audio": {"bitrate_kbps": 32}}}}
    assert parse_scenario({**base, "transport": {"estimator": "delivery"}}) \
        .transport.estimator == "delivery"
    assert parse_scenario(base).transport.estimator == "delivery"  # the default
    assert parse_scenario({**base, "transport": {"estimator": "gcc"}}) \
        .transport.estimator == "gcc"
    with pytest.raises(ScenarioError, match="unknown bandwidth estimator 'nosuch'"):
        parse_scenario({**base, "transport": {"estimator": "nosuch"}})
    result = run_scenario(parse_scenario(base), RunOptions(estimator="gcc"))
    assert result["transport"]["estimator"] == "gcc"
    assert result["bwe"]["state"]["estimator"] == "gcc"
    with pytest.raises(ScenarioError, match="registered: delivery, gcc, loss"):
        run_scenario(parse_scenario(base), RunOptions(estimator="nosuch"))


def test_a_receiver_clock_jumping_ahead_is_not_read_as_queue() -> None:
    est = DeliveryEstimator(BweConfig(start_bps=1_000_000))
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    before = est.target_bps
    # the receiver's clock jumps 100 s ahead: every one-way delay is 100 s longer
    _report(est, 20, 0.2, 20, 0.0096, 100.025, now=0.5)
    assert est.state()["queue_delay"] == pytest.approx(0.0, abs=1e-9)
    assert est.target_bps >= before


def _queued_report(est: DeliveryEstimator, *, extra: int, now: float,
                   owd: float = 0.065, gap: float = 0.0096) -> None:
    """After a 1 Mbit/s report with no queue (base 25 ms), 20 packets sent 9.6 ms apart
    from 0.2 s that met ``owd - 0.025`` of queue, then ``extra`` more packets ``gap``
    apart that the report at ``now`` does not cover yet."""
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    rows = []
    for i in range(20):
        send = 0.2 + i * 0.0096
        est.on_sent(size_bytes=1200, now=send)
        rows.append(PacketResult(20 + i, send, 1200, 50.0 + send + owd))
    for i in range(extra):
        est.on_sent(size_bytes=1200, now=0.2 + 19 * 0.0096 + (i + 1) * gap)
    est.on_feedback(rows, now=now)


def _predicting(**delivery: object) -> BweConfig:
    # a short send history and a low bar, so that these half-second runs count as sending
    # at the target (an application-limited sender predicts nothing)
    return BweConfig(start_bps=1_000_000, probe=ProbeConfig(alr_window=0.2, alr_fraction=0.3),
                     delivery=DeliveryConfig(startup_gain=1.0, **delivery))  # type: ignore[arg-type]


def test_the_predicted_queue_counts_what_was_sent_after_the_report() -> None:
    last = 0.2 + 19 * 0.0096
    # the sender kept sending at the delivered 1 Mbit/s for 12 packets after the last
    # reported one: the 40 ms queue is drained for the 0.1176 s since, and refilled by
    # those 14,400 bytes at 0.9 x 1 Mbit/s
    kept = DeliveryEstimator(_predicting())
    _queued_report(kept, extra=12, now=0.5)
    state = kept.state()
    assert state["queue_delay"] == pytest.approx(0.04, abs=1e-6)
    expect = 0.04 - (0.5 - last) + 12 * 1200 * 8 / (0.9 * 1_000_000)
    assert state["predicted_queue_delay"] == pytest.approx(expect, abs=1e-6)
    assert kept.target_bps < 1_000_000  # above the target: drain
    # a sender that sent at half the delivered rate since (still at its target by the
    # test's ALR threshold) has let the queue drain: no second cut for it
    half = DeliveryEstimator(_predicting())
    _queued_report(half, extra=6, now=0.5, gap=0.0192)
    assert half.state()["predicted_queue_delay"] == 0.0
    assert half.state()["delay_decreases"] == 0
    # without the prediction the same sender cuts for the 40 ms the report saw
    off = DeliveryEstimator(_predicting(predict=False))
    _queued_report(off, extra=6, now=0.5, gap=0.0192)
    assert off.state()["predicted_queue_delay"] == pytest.approx(0.04, abs=1e-6)
    assert off.state()["delay_decreases"] == 1


def test_the_prediction_credits_at_most_the_horizon_of_drain() -> None:
    # the report comes 1.1 s after its latest packet was sent (the sender went on at
    # 1 Mbit/s meanwhile): only predict_horizon (0.3 s) of drain is credited
    est = DeliveryEstimator(_predicting())
    _queued_report(est, extra=114, now=0.3824 + 1.1)
    sent = 114 * 1200 * 8 / (0.9 * 1_000_000)
    assert est.state()["predicted_queue_delay"] == pytest.approx(0.04 - 0.3 + sent, abs=1e-6)


def test_a_path_up_to_the_reference_rtt_is_not_stretched() -> None:
    # min RTTs of 50 and 80 ms (the default reference): the same figures as a reference
    # no path reaches
    for rtt in (0.05, 0.08):
        runs = []
        for reference in (DeliveryConfig().reference_rtt, 10.0):
            est = DeliveryEstimator(_predicting(reference_rtt=reference))
            est.on_rtt(rtt, now=0.0)
            _queued_report(est, extra=12, now=0.5)
            runs.append((est.state()["predicted_queue_delay"], est.target_bps))
        assert runs[0] == runs[1]


def _long_path(**delivery: object) -> DeliveryEstimator:
    est = DeliveryEstimator(_predicting(**delivery))
    est.on_rtt(0.28, now=0.0)  # 0.2 s beyond the 80 ms reference: stretch 3.5
    return est


def test_a_long_path_credits_more_drain_and_forecasts_cautiously_only_its_recent_part() -> None:
    # as in the horizon test: the report comes 1.1 s after its latest packet, the sender
    # went on at 1 Mbit/s meanwhile (114 packets 9.6 ms apart). On a path 0.2 s longer
    # than the reference, 0.3 + 0.2 s of drain are credited, and only the packets of the
    # last 1.1 - 0.2 s are forecast at 0.9 x the bottleneck's rate (the 94 sent after
    # 0.5824 s); the 20 before count at the rate itself. That rate is taken over 0.25 s
    # of arrivals (0.1 s x 3.5, at most half the 0.5 s acked-rate window), not 0.1 s: the
    # last 22 arrivals, the report's 20 and the previous report's last two, 40 ms before
    # them, 21 packets' worth in 0.2496 s
    est = _long_path()
    _queued_report(est, extra=114, now=0.3824 + 1.1)
    rate = 21 * 1200 * 8 / 0.2496
    expect = 0.04 - 0.5 + (20 * 1200 * 8 / rate) + (94 * 1200 * 8 / (0.9 * rate))
    assert est.state()["predicted_queue_delay"] == pytest.approx(expect, abs=1e-6)


def test_a_long_path_drains_and_grows_more_gently() -> None:
    # 30 ms of queue above the 10 ms target: drained within 0.2 s on a short path
    # (0.85 x the delivered 1 Mbit/s), within 0.2 x 3.5 s on one 0.2 s longer
    short = DeliveryEstimator(_predicting(predict=False))
    _queued_report(short, extra=0, now=0.5)
    assert short.state()["delay_based_bps"] == pytest.approx(850_000, rel=1e-6)
    long = _long_path(predict=False)
    _queued_report(long, extra=0, now=0.5)
    assert long.state()["delay_based_bps"] == pytest.approx(
        (1 - 0.03 / 0.7) * 1_000_000, rel=1e-6)
    # no queue: 1 + gain on a short path, 1 + gain / 3.5 on the long one
    for est, gain in ((DeliveryEstimator(_predicting()), 0.25),
                      (_long_path(), 0.25 / 3.5)):
        _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
        assert est.state()["delay_based_bps"] == pytest.approx(1_000_000 * (1 + gain),
                                                               rel=1e-6)


def test_a_bad_min_rtt_is_refused() -> None:
    est = DeliveryEstimator(BweConfig())
    for bad in (0.0, -0.1, float("nan"), float("inf"), True, "0.3"):
        with pytest.raises(LocalProtocolError):
            est.on_rtt(0.3, now=0.0, min_rtt=bad)  # type: ignore[arg-type]


def _idle_gap_run(*, min_rtt: float, busy_rate: bool = True,
                  arrival_gap: float = 0.0096) -> DeliveryEstimator:
    """Three reports of a 1 Mbit/s sender (1200 B every 9.6 ms) on a path of ``min_rtt``
    with no queue; in the third the sender paused for 48 ms (its window full) after the
    10th packet, so the bottleneck sat idle. ``arrival_gap`` > 9.6 ms instead makes every
    packet of the third report wait behind the one before (a slower bottleneck)."""
    est = DeliveryEstimator(_predicting(predict=False, busy_rate=busy_rate))
    est.on_rtt(min_rtt, now=0.0, min_rtt=min_rtt)
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    _report(est, 20, 0.192, 20, 0.0096, 0.025, now=0.45)
    rows = []
    for i in range(15):
        send = 0.384 + i * 0.0096 + (0.048 if i >= 10 else 0.0)
        est.on_sent(size_bytes=1200, now=send)
        arrival = (50.0 + send + 0.025 if arrival_gap == 0.0096
                   else 50.0 + 0.384 + 0.025 + i * arrival_gap)
        rows.append(PacketResult(40 + i, send, 1200, arrival))
    est.on_feedback(rows, now=0.7)
    return est


def test_a_long_path_takes_the_bottleneck_rate_over_its_busy_time() -> None:
    # the last 0.1 s of arrivals hold 6 packets, 4 gaps of 9.6 ms and one of 57.6 ms:
    # 5 x 9,600 bits over 0.096 s by arrival time. Every packet met no queue, so the
    # idle spell before the 11th is the sender's: busy for one packet's time at the
    # fastest delivered rate (1 Mbit/s), and the rate is 1 Mbit/s
    plain = 5 * 1200 * 8 / (4 * 0.0096 + 0.0576)
    assert _idle_gap_run(min_rtt=0.3).delivered_bps == pytest.approx(1_000_000, rel=1e-6)
    # turned off, or on a path up to the reference RTT: arrival time throughout
    for est in (_idle_gap_run(min_rtt=0.3, busy_rate=False), _idle_gap_run(min_rtt=0.05)):
        assert est.delivered_bps == pytest.approx(plain, rel=1e-6)
    # a bottleneck that slowed to 0.5 Mbit/s: each packet waited for the one before, so
    # every gap was busy and the rate is what arrived
    slow = _idle_gap_run(min_rtt=0.3, arrival_gap=0.0192)
    assert slow.delivered_bps == pytest.approx(1200 * 8 / 0.0192, rel=1e-6)


@given(st.lists(st.tuples(st.floats(0.0, 0.05), st.integers(1, 1500), st.floats(0.0, 2.0)),
                min_size=0, max_size=60),
       st.floats(0.01, 0.5), st.floats(1e4, 1e9))
def test_the_busy_rate_is_finite_and_never_below_the_arrival_rate(
        packets: list[tuple[float, int, float]], span: float, fastest: float) -> None:
    # any arrivals (gaps, sizes, one-way delays, ties included): no rate, or a finite
    # positive one at least the same packets' bytes over the time they span
    est = _long_path()
    est._base.add(0.1, 0.0)
    est._fastest.add(-fastest, 0.0)
    t = 0.0
    for gap, size, owd in packets:
        t += gap
        est._arrivals.append((t, size, 0.1 + owd))
    rate = est._busy_bps(span)
    if rate is None:
        return
    assert math.isfinite(rate)
    assert rate > 0
    arrivals = list(est._arrivals)
    cutoff = arrivals[-1][0] - span
    counted = []
    newest_first = arrivals[::-1]
    for later, earlier in itertools.pairwise(newest_first):
        counted.append((later[0] - earlier[0], later[1]))
        if earlier[0] <= cutoff:
            break
    spanned = sum(gap for gap, _ in counted)
    if spanned > 0:
        assert rate >= sum(size for _, size in counted) * 8 / spanned * (1 - 1e-9)


def _startup_pair(*, min_rtt: float, least_queue: bool = True,
                  second_owd: float = 0.0372) -> DeliveryEstimator:
    """Startup on a path of ``min_rtt`` at 1 Mbit/s (1200 B every 9.6 ms) without queue,
    then a report whose last two packets the pacer sent back to back: the first meets no
    queue (25 ms one way), the second waits behind it (``second_owd``: 4.8 ms of a
    2 Mbit/s bottleneck's transmission plus 7.4 ms of a real path's jitter by default)."""
    est = DeliveryEstimator(BweConfig(start_bps=1_000_000, delivery=DeliveryConfig(
        predict=False, startup_least_queue=least_queue)))
    est.on_rtt(min_rtt, now=0.0, min_rtt=min_rtt)
    _report(est, 0, 0.0, 10, 0.0096, 0.025, now=0.15)
    sends = [0.096 + i * 0.0096 for i in range(4)] + [0.096 + 3 * 0.0096]
    rows = []
    for i, send in enumerate(sends):
        est.on_sent(size_bytes=1200, now=send)
        owd = second_owd if i == len(sends) - 1 else 0.025
        rows.append(PacketResult(10 + i, send, 1200, 50.0 + send + owd))
    est.on_feedback(rows, now=0.3)
    return est


def test_a_back_to_back_pair_does_not_end_startup_on_a_long_path() -> None:
    # the pair's second packet met 12.2 ms, above the 10 ms target; its first met none
    long = _startup_pair(min_rtt=0.6)
    assert long.state()["queue_delay"] == pytest.approx(0.0122, abs=1e-6)
    assert long.state()["startup"] is True
    # the latest packet's queue alone ends it: with the option off, or on a short path
    assert _startup_pair(min_rtt=0.6, least_queue=False).state()["startup"] is False
    assert _startup_pair(min_rtt=0.05).state()["startup"] is False
    # a real overshoot: both packets of the report meet the queue, and startup ends
    both = DeliveryEstimator(BweConfig(start_bps=1_000_000,
                                       delivery=DeliveryConfig(predict=False)))
    both.on_rtt(0.6, now=0.0, min_rtt=0.6)
    _report(both, 0, 0.0, 10, 0.0096, 0.025, now=0.15)
    _report(both, 10, 0.096, 5, 0.0096, 0.045, now=0.3)
    assert both.state()["queue_delay"] == pytest.approx(0.02, abs=1e-6)
    assert both.state()["startup"] is False


def test_startup_predicts_nothing() -> None:
    # the report after a first one without queue shows 40 ms of queue. In startup the
    # delivered rate is the sender's own, so the law takes the queue measured (and
    # startup ends on it); after startup the same report is predicted from
    in_startup = DeliveryEstimator(BweConfig(
        start_bps=1_000_000, probe=ProbeConfig(alr_window=0.2, alr_fraction=0.3)))
    _queued_report(in_startup, extra=12, now=0.5)
    state = in_startup.state()
    assert state["predicted_queue_delay"] == state["queue_delay"] == pytest.approx(0.04)
    assert state["startup"] is False
    assert state["startup_ended_at"] == 0.5
    after = DeliveryEstimator(_predicting())
    _queued_report(after, extra=12, now=0.5)
    assert after.state()["predicted_queue_delay"] != pytest.approx(0.04)


def test_an_application_below_its_rate_predicts_nothing() -> None:
    # a video-like sender far below its 1.25 Mbit/s target puts a frame of 8 packets out
    # at once after the report: over the 1 Mbit/s it was delivered at, that would read
    # as 85 ms of queue, but its delivered rate is its own, not the bottleneck's
    est = DeliveryEstimator(BweConfig(start_bps=1_000_000, probe=ProbeConfig(alr_window=0.2),
                                      delivery=DeliveryConfig(startup_gain=1.0)))
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    rows = [PacketResult(20 + i, 0.45 + i * 0.001, 1200, 50.0 + 0.45 + i * 0.001 + 0.035)
            for i in range(3)]
    for r in rows:
        est.on_sent(size_bytes=1200, now=r.send_time)
    for i in range(8):
        est.on_sent(size_bytes=1200, now=0.49 + i * 0.0001)
    est.on_feedback(rows, now=0.5)
    state = est.state()
    assert state["queue_delay"] == pytest.approx(0.01, abs=1e-6)
    assert state["predicted_queue_delay"] == state["queue_delay"]


def test_no_queue_to_predict_from_below_the_minimum() -> None:
    # 3 ms measured (under predict_min_queue): the delivered rate is the sender's own
    # then, and the measured queue is taken however much was sent since
    est = DeliveryEstimator(BweConfig(start_bps=1_000_000))
    _queued_report(est, extra=30, now=0.5, owd=0.028)
    state = est.state()
    assert state["predicted_queue_delay"] == pytest.approx(0.003, abs=1e-6)
    assert state["predicted_queue_delay"] == state["queue_delay"]


def test_sent_log_counts_bytes_after_a_moment_and_stays_bounded() -> None:
    log = SentLog(window=1.0, max_entries=4)
    assert log.bytes_after(0.0) == 0
    for t, size in ((0.0, 100), (0.1, 200), (0.2, 300)):
        log.add(size, t)
    assert log.bytes_after(-1.0) == 600
    assert log.bytes_after(0.1) == 300
    assert log.bytes_after(0.2) == 0
    log.add(50, 0.15)  # a clock stepping back is taken at the latest time
    assert log.bytes_after(0.19) == 350
    log.add(10, 0.3)
    assert len(log) == 4  # the 0.0 packet is forgotten: at most 4
    assert log.bytes_after(-1.0) == 560
    log.add(1, 5.0)  # everything older than a second before is forgotten
    assert len(log) == 1
    assert log.bytes_after(0.0) == 1
    # a long run: the log holds a window's worth, and still counts right
    long = SentLog(window=0.1, max_entries=10_000)
    for i in range(20_000):
        long.add(1000, i * 0.001)
    assert len(long) == 101
    assert long.bytes_after(19.9985) == 1000
    assert long.bytes_after(19.95) == 49_000


@given(st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.integers(0, 1500)),
                max_size=60),
       st.floats(-1, 6, allow_nan=False))
def test_sent_log_matches_a_plain_sum(sends: list[tuple[float, int]], t: float) -> None:
    window, cap = 1.0, 16
    log = SentLog(window=window, max_entries=cap)
    kept: list[tuple[float, int]] = []
    for now, size in sends:
        now = max([now, *(k[0] for k in kept[-1:])])
        log.add(size, now)
        kept = [k for k in [*kept, (now, size)] if k[0] >= now - window][-cap:]
    assert len(log) == len(kept)
    assert log.bytes_after(t) == sum(size for when, size in kept if when > t)


def test_a_receiver_that_drops_caps_the_rate_at_what_it_read_once_per_round_trip() -> None:
    est = DeliveryEstimator(BweConfig(start_bps=300_000,
                                      delivery=DeliveryConfig(predict=False)))
    est.on_rtt(0.05, now=0.0)
    # 1 Mbit/s read by the receiver, no queue: startup doubles towards 2 Mbit/s
    _report(est, 0, 0.0, 20, 0.0096, 0.025, now=0.25)
    assert est.state()["startup"] is True
    assert est.target_bps == pytest.approx(2_000_000, rel=0.05)
    # its socket overflowed: no queue to show for it, but startup is over and the rate
    # comes down to 0.85 x what the receiver read
    est.on_receiver_drops(5, now=0.25)
    state = est.state()
    assert state["startup"] is False
    assert est.target_bps == pytest.approx(0.85 * 1_000_000, rel=0.05)
    assert state["delay_based_bps"] == pytest.approx(est.target_bps)
    assert (state["receiver_drops"], state["receiver_backoffs"]) == (5, 1)
    # reports of the same round trip describe what was sent before the cut: counted only
    before = est.target_bps
    est.on_receiver_drops(3, now=0.29)
    assert est.target_bps == before
    assert (est.state()["receiver_drops"], est.state()["receiver_backoffs"]) == (8, 1)
    # a round trip later it cuts again, from the lower of the target and the read rate
    est.on_receiver_drops(1, now=0.31)
    assert est.target_bps == pytest.approx(0.85 * before, rel=1e-6)
    assert est.state()["receiver_backoffs"] == 2
    cap = est.target_bps
    assert est.state()["receiver_cap_bps"] == pytest.approx(cap)
    # the empty buffer between a reader's stalls would let the law grow by its gain at
    # once; the cap it was cut to grows by receiver_cap_growth (a doubling) a second
    _report(est, 40, 0.6, 20, 0.0096, 0.025, now=0.81)
    assert est.state()["delay_based_bps"] == pytest.approx(cap * 2 ** 0.5, rel=1e-6)
    assert est.target_bps == pytest.approx(cap * 2 ** 0.5, rel=1e-6)
    # and is let go once it is twice the target: the law's own rate again
    _report(est, 60, 2.8, 20, 0.0096, 0.025, now=3.0)
    assert est.state()["receiver_cap_bps"] is None
    assert est.target_bps == pytest.approx(1.25 * 1_000_000, rel=0.05)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(LocalProtocolError, match="dropped"):
            est.on_receiver_drops(bad, now=0.4)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        BweConfig(receiver_drop_backoff=0.0)
    with pytest.raises(LocalProtocolError):
        BweConfig(receiver_cap_growth=0.0)
