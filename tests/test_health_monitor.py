"""HealthMonitor in virtual time: windows, jitter, loss and bursts from feedback rows,
score, tiers with hysteresis, silence, urgent reports, and the report's schema."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest

from edgewire.errors import LocalProtocolError
from edgewire.health import (
    HealthConfig,
    HealthMonitor,
    StaticDevice,
    load_schema,
    score_of,
    tier_of,
)
from edgewire.transport.bwe import PacketResult
from edgewire.transport.quicstats import QuicStats

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


@dataclass
class FakeSession:
    """The parts of Session the monitor reads, settable by the test."""

    rtt: float | None = 0.04
    in_flight: int = 5000
    last_received: float | None = None
    closed: bool = False
    ready: bool = True
    bandwidth_estimate_bps: float = 2e6
    peer_socket_drops: int = 0
    channels: list[Any] = field(default_factory=list)
    observers: list[Any] = field(default_factory=list)

    def quic_stats(self) -> QuicStats:
        return QuicStats(rtt_latest=self.rtt, rtt_smoothed=self.rtt, rtt_min=self.rtt,
                         rtt_variance=0.0, cwnd_bytes=100_000, bytes_in_flight=self.in_flight)

    def add_feedback_observer(self, cb: Any) -> None:
        self.observers.append(cb)

    def bwe_state(self) -> dict[str, Any]:
        return {"detector": "normal", "rate_control": "hold"}

    def feed(self, results: list[PacketResult], now: float) -> None:
        for cb in self.observers:
            cb(results, now)


class Link:
    """Packets every 10 ms, one-way delay ``owd`` (+ per-packet extra), lost on demand."""

    def __init__(self, session: FakeSession, monitor: HealthMonitor) -> None:
        self.s = session
        self.m = monitor
        self.pn = 0
        self.now = 0.0
        self.reports: list[tuple[float, dict[str, Any]]] = []

    def run(self, until: float, *, owd: float = 0.02, lost: Any = lambda pn: False,
            extra: Any = lambda pn: 0.0, silent: bool = False) -> None:
        batch: list[PacketResult] = []
        while self.now < until - 1e-9:
            self.now = round(self.now + 0.01, 6)
            t = self.now
            if not silent:
                pn = self.pn
                self.pn += 1
                arrival = None if lost(pn) else t + owd + extra(pn)
                batch.append(PacketResult(sequence=pn, send_time=t, size_bytes=1000,
                                          arrival_time=arrival))
                self.s.last_received = t
                if len(batch) == 5:  # feedback every 50 ms
                    self.s.feed(batch, t)
                    batch = []
            self.m.observe(self.s, now=t)  # type: ignore[arg-type]
            if self.m.due(now=t):
                self.reports.append((t, self.m.report(now=t, ts=1e9 + t)))


def make(config: HealthConfig | None = None) -> tuple[FakeSession, HealthMonitor, Link]:
    s = FakeSession()
    m = HealthMonitor(session="s1", config=config,
                      device=StaticDevice(cpu_percent=5.0, memory_percent=50.0))
    return s, m, Link(s, m)


def test_clean_link_is_excellent_with_exact_figures() -> None:
    _s, _m, link = make()
    link.run(5.0)
    _t, r = link.reports[-1]
    VALIDATOR.validate(r)
    assert r["tier"] == "excellent"
    assert r["loss"]["rate"] == 0.0
    assert r["loss"]["receiver_rate"] == 0.0
    assert r["jitter_ms"] == pytest.approx(0.0, abs=1e-6)
    assert r["queue_delay_ms"] == pytest.approx(0.0, abs=1e-6)
    # 100 packets/s x 1000 bytes = 800 kbit/s reached the peer
    assert r["bandwidth"]["goodput_kbps"] == pytest.approx(800.0, rel=0.08)
    assert r["rtt_ms"] == {"min": 40.0, "smoothed": 40.0, "p95": 40.0}
    # periodic: one report a second
    times = [t for t, _ in link.reports]
    assert all(0.99 <= b - a <= 1.01 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize(("drops", "part"), [(0, 0.0), (1, 0.2), (3, 0.2)])
def test_the_peers_own_drops_are_the_receiver_part_of_the_loss(drops: int,
                                                                part: float) -> None:
    """Every fifth packet lost (20 %), one feedback every five packets; the peer says its
    socket dropped ``drops`` datagrams in each: that part of the loss, at most all of it,
    is the receiver's (the loss rate itself is the same)."""
    s, _m, link = make()
    s.peer_socket_drops = drops
    link.run(5.0, lost=lambda pn: pn % 5 == 4)
    _t, r = link.reports[-1]
    VALIDATOR.validate(r)
    assert r["loss"]["rate"] == pytest.approx(0.2, abs=1e-9)
    assert r["loss"]["receiver_rate"] == pytest.approx(part, abs=1e-9)


def test_loss_rate_and_burst_length() -> None:
    _s, _m, link = make()
    # every 10th packet starts a burst of 2 lost: 20 % loss, bursts of 2
    link.run(4.0, lost=lambda pn: pn % 10 in (3, 4))
    r = link.reports[-1][1]
    assert r["loss"]["rate"] == pytest.approx(0.2, abs=0.02)
    assert r["loss"]["burst_mean"] == pytest.approx(2.0, abs=0.1)
    assert r["tier"] in ("fair", "poor")


def test_jitter_follows_rfc3550() -> None:
    _s, _m, link = make()
    # alternating +-2 ms: |D| = 4 ms every packet, so J converges to 4 ms
    link.run(4.0, extra=lambda pn: 0.002 if pn % 2 else -0.002)
    assert link.reports[-1][1]["jitter_ms"] == pytest.approx(4.0, rel=0.02)


def test_queue_delay_is_delay_above_the_minimum() -> None:
    _s, _m, link = make()
    link.run(3.0)
    link.run(6.0, owd=0.07)  # a standing queue of 50 ms
    assert link.reports[-1][1]["queue_delay_ms"] == pytest.approx(50.0, abs=0.5)


def test_loss_change_is_reported_within_two_periods() -> None:
    _s, _m, link = make()
    link.run(5.5)
    before = len(link.reports)
    link.run(7.5, lost=lambda pn: pn % 10 == 0)  # 10 %
    after = link.reports[before:]
    assert any(r["loss"]["rate"] >= 0.09 for t, r in after if t <= 5.5 + 2 * 1.0)
    assert after[0][1]["reasons"] != ["periodic"] or after[0][0] <= 6.0


def test_periodic_reports_tile_time_around_urgent_ones() -> None:
    s, _m, link = make()
    fed: list[tuple[float, int, int]] = []  # (feedback time, packets, lost)
    s.observers.append(lambda rs, now: fed.append(
        (now, len(rs), sum(r.arrival_time is None for r in rs))))
    link.run(1.5)
    link.run(1.6, lost=lambda pn: True)  # a burst: a loss spike and a tier change
    link.run(6.0)
    periodic = [(t, r) for t, r in link.reports if "periodic" in r["reasons"]]
    assert any("periodic" not in r["reasons"] for _, r in link.reports)
    # urgent reports do not move the periodic grid ...
    assert all(0.99 <= b - a <= 1.01 for (a, _), (b, _) in itertools.pairwise(periodic))
    # ... so the periodic windows cover every feedback once, the burst included
    first, last = periodic[0][0], periodic[-1][0]
    covered = [(n, lost) for t, n, lost in fed if first - 1.0 < t <= last]
    assert sum(r["loss"]["packets"] for _, r in periodic) == sum(n for n, _ in covered)
    assert sum(round(r["loss"]["rate"] * r["loss"]["packets"]) for _, r in periodic) == 10
    assert sum(lost for _, lost in covered) == 10


def test_feedback_on_a_window_boundary_counts_in_one_report() -> None:
    s, m, _link = make()
    s.last_received = 0.0
    m.observe(s, now=0.0)  # type: ignore[arg-type]

    def batch(t: float, lost: int) -> list[PacketResult]:
        return [PacketResult(sequence=round(t * 100) + i, send_time=t - 0.03, size_bytes=1000,
                             arrival_time=None if i < lost else t - 0.01)
                for i in range(5)]

    for t, lost in ((1.0, 1), (2.0, 0)):
        s.feed(batch(t, lost), t)
        s.last_received = t
        m.observe(s, now=t)  # type: ignore[arg-type]
        assert m.due(now=t)
        r = m.report(now=t, ts=t)
        assert "periodic" in r["reasons"]  # the first also says tier_change (20 % loss)
        # (t - 1 s, t]: the batch at exactly 1.0 is the first report's, not the second's
        assert (r["loss"]["packets"], r["loss"]["rate"]) == (5, lost / 5)


def test_silence_means_down_quickly_and_recovers() -> None:
    _s, _m, link = make()
    link.run(3.0)
    link.run(3.5, silent=True)
    down = next((t, r) for t, r in link.reports if r["tier"] == "down")
    assert down[0] - 3.0 <= 0.3
    assert down[1]["reasons"] == ["down"]
    assert down[1]["score"] == 0.0
    link.run(4.0)
    assert link.reports[-1][1]["tier"] != "down"


def test_idle_is_not_down() -> None:
    s, _m, link = make()
    link.run(2.0)
    s.in_flight = 0  # nothing awaits an answer: silence is expected
    link.run(4.0, silent=True)
    assert all(r["tier"] != "down" for _, r in link.reports)


def test_closed_session_is_down() -> None:
    s, m, link = make()
    link.run(1.5)
    s.closed = True
    link.run(1.6)
    assert m.tier == "down"


def test_hysteresis_holds_upgrades_and_does_not_flap() -> None:
    cfg = HealthConfig()
    _s, m, link = make(cfg)
    link.run(2.0)
    # loss flickering around the excellent/good border must not flip the tier each period
    tiers = []
    for i in range(8):
        link.run(3.0 + i, lost=(lambda pn: pn % 40 == 0) if i % 2 else (lambda pn: False))
        tiers.append(m.tier)
    changes = sum(a != b for a, b in itertools.pairwise(tiers))
    assert changes <= 1


def test_upgrade_waits_for_the_hold_time() -> None:
    _s, m, link = make(HealthConfig(upgrade_hold_s=2.0))
    link.run(3.0, lost=lambda pn: pn % 5 == 0)
    bad = m.tier
    assert bad in ("fair", "poor")
    link.run(4.5)  # clean for 1.5 s: window clean, but the hold is not over
    assert m.tier == bad
    link.run(7.0)
    assert m.tier == "excellent"


def test_decisions_travel_in_the_next_report_only() -> None:
    _s, m, link = make()
    link.run(1.5)
    m.record_decision({"status": "rejected", "action": "fly", "reason": "unknown action"})
    link.run(1.8)
    with_decision = [r for _, r in link.reports if r["decisions"]]
    assert len(with_decision) == 1
    assert with_decision[0]["reasons"] == ["decision"]
    VALIDATOR.validate(with_decision[0])
    link.run(3.0)
    assert link.reports[-1][1]["decisions"] == []


def test_decision_backlog_is_bounded() -> None:
    _s, m, link = make(HealthConfig(max_decisions=3))
    for i in range(10):
        m.record_decision({"status": "applied", "action": "stay", "id": str(i)})
    link.run(1.1)
    r = link.reports[0][1]
    assert [d["id"] for d in r["decisions"]] == ["7", "8", "9"]
    assert r["dropped"]["decisions"] == 7


def test_timer_and_due_before_observe() -> None:
    m = HealthMonitor(session="x")
    assert m.get_timer() is None
    assert not m.due(now=0.0)


@pytest.mark.parametrize("bad", [{"period_s": 0}, {"window_s": -1.0},
                                 {"thresholds": (50.0, 60.0, 40.0)},
                                 {"hysteresis": float("nan")}, {"max_samples": 1}])
def test_config_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        HealthConfig(**bad)


def test_score_and_tier_thresholds() -> None:
    assert score_of(rtt_ms=20, loss=0.0, residual=0.0, jitter_ms=1, queue_delay_ms=0,
                    on_time=1.0) == 100.0
    # every penalty saturated
    assert score_of(rtt_ms=1000, loss=0.5, residual=0.5, jitter_ms=100, queue_delay_ms=500,
                    on_time=0.1) == 0.0
    # unknown residual counts as the loss before recovery
    assert score_of(rtt_ms=None, loss=0.05, residual=None, jitter_ms=None,
                    queue_delay_ms=None, on_time=None) == pytest.approx(100 - 7.5 - 30)
    th = (85.0, 65.0, 40.0)
    assert [tier_of(x, th) for x in (100, 85, 84.9, 65, 40, 39.9, 0)] == [
        "excellent", "excellent", "good", "good", "fair", "poor", "poor"]


def test_a_report_asked_for_early_is_periodic_and_restarts_the_period() -> None:
    _s, m, link = make()
    link.run(1.5)
    r = m.report(now=1.5, ts=1.5)  # on demand: nothing urgent, before the periodic time
    assert r["reasons"] == ["periodic"]
    before = len(link.reports)
    link.run(3.0)
    assert [t for t, _ in link.reports[before:]] == [pytest.approx(2.5)]
