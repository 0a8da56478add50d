"""The health monitor against netsim's ground truth, in virtual time: a full edgewire
session (QUIC + TLS + channels) over simulated links whose delay, loss and capacity are
known; the monitor's reports must agree with them (issue 7: within 10 % on steady links),
reflect a loss change within two report periods and a path going down within 300 ms.

Loss is compared like with like: the monitor counts the client's 1-RTT packets that
count in flight (the ones transport feedback reports on), over the feedback its periodic
reports cover; :class:`UplinkTruth` takes, for exactly those packets, the uplink's own
verdict (delivered or not). The link's whole-run rate counts ACK-only and handshake
packets and the warm-up too, and the configured rate is only the expectation of a random
draw: at 1 % a 9 s run loses about 20 packets, so either differs from the realised loss
of the reported packets by much more than 10 % by chance alone. Both are printed.

Run as a script to print the measured figures: ``python tests/test_health_netsim.py
[seed ...]`` (default seed 3).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from edgewire.health import HealthConfig, HealthMonitor, StaticDevice, load_schema
from edgewire.netsim.engine import Simulator
from edgewire.netsim.link import Link
from edgewire.netsim.nodes import ServerEndpoint, simulation_quic_configs
from edgewire.netsim.run import CLIENT_ADDR, SERVER_ADDR, link_rng
from edgewire.netsim.scenario import parse_scenario
from edgewire.netsim.traffic import TrafficApp
from edgewire.transport import Session, SessionConfig, quicstats
from edgewire.transport.bwe import PacketResult
from edgewire.transport.recovery import RecoveryConfig

#: How often the harness ticks the monitor (besides the monitor's own timer).
OBSERVE_EVERY = 0.01  # seconds
TS0 = 1_700_000_000.0  # unix time of virtual time 0 in the reports


Reports = list[tuple[float, dict[str, Any]]]


class UplinkTruth:
    """netsim's verdict on each of the client's 1-RTT packets that count in flight:
    aioquic's sent-packet hook gives each packet's number, send time and size, the
    uplink's taps each datagram's offer time and whether it left the link. At each instant
    the packets and the datagrams pair up in order (one short-header packet per datagram;
    the handshake's coalesced datagrams pair with nothing counted). ``marks`` holds, at
    each report, the largest packet number the client's feedback had reported by then."""

    def __init__(self, client: Session, uplink: Link) -> None:
        self._sent: defaultdict[float, list[tuple[int, bool]]] = defaultdict(list)
        self._offered: defaultdict[float, list[bytes]] = defaultdict(list)
        self._delivered: set[bytes] = set()
        self._lost: dict[int, bool] | None = None
        self.reported = -1
        self.marks: dict[float, int] = {}
        quicstats.observe_sent_packets(client.quic, self._on_sent)
        uplink.on_enter = self._on_enter
        uplink.on_leave = self._on_leave
        client.add_feedback_observer(self._on_feedback)

    def _on_enter(self, now: float, data: bytes) -> None:
        self._offered[now].append(data)

    def _on_leave(self, now: float, data: bytes) -> None:
        self._delivered.add(data)

    def _on_sent(self, packet: Any) -> None:
        if packet.sent_time is not None:
            counted = bool(packet.in_flight) and quicstats.is_one_rtt(packet)
            self._sent[packet.sent_time].append((packet.packet_number, counted))

    def _on_feedback(self, results: list[PacketResult], now: float) -> None:
        self.reported = max(self.reported, *(r.sequence for r in results))

    def mark(self, now: float) -> None:
        self.marks[now] = self.reported

    def lost(self) -> dict[int, bool]:
        """Packet number -> lost on the uplink, for the packets feedback reports on."""
        if self._lost is None:
            self._lost = {}
            for t, packets in self._sent.items():
                datagrams = self._offered.get(t, [])
                if len(datagrams) != len(packets):
                    continue  # coalesced handshake packets
                for (pn, counted), data in zip(packets, datagrams, strict=True):
                    if counted:
                        self._lost[pn] = data not in self._delivered
        return self._lost

    def loss_between(self, after: float, until: float) -> tuple[int, int]:
        """(lost, packets) among the packets whose feedback arrived in (after, until]:
        the packet numbers between the two reports' marks."""
        lo, hi = self.marks[after], self.marks[until]
        fates = [v for pn, v in self.lost().items() if lo < pn <= hi]
        return sum(fates), len(fates)


@dataclass
class Run:
    reports: Reports
    """Every report the monitor emitted, with the virtual time it was emitted at."""
    link: dict[str, Any]
    """The uplink's own statistics over the whole run."""
    truth: UplinkTruth


def run_monitored(data: dict[str, Any], *, until: float,
                  config: HealthConfig | None = None) -> Run:
    """Run a scenario (a netsim scenario table) with a HealthMonitor on the client (the
    uplink's sender): its reports, the uplink's statistics and per-packet verdicts
    (netsim's ground truth)."""
    scenario = parse_scenario(data)
    client_qc, server_qc = simulation_quic_configs(
        congestion_control=scenario.transport.cc,
        max_datagram_size=scenario.transport.max_datagram_size)
    cfg = SessionConfig(shared_clock=True, stable_stream_order=True,
                        ack_delay=scenario.transport.ack_delay_ms / 1000,
                        recovery=RecoveryConfig(mode=scenario.transport.recovery))
    client = Session(client_qc, config=cfg)
    server = ServerEndpoint(server_qc, config=cfg)
    sim = Simulator()
    sim.add_endpoint(CLIENT_ADDR, client)
    sim.add_endpoint(SERVER_ADDR, server)
    up = Link(scenario.uplink, rng=link_rng(scenario.seed, "uplink"), name="uplink")
    down = Link(scenario.downlink, rng=link_rng(scenario.seed, "downlink"), name="downlink")
    sim.connect(CLIENT_ADDR, SERVER_ADDR, up, down)
    truth = UplinkTruth(client, up)
    for ev in scenario.events:
        for link, lcfg in ((up, ev.uplink), (down, ev.downlink)):
            if lcfg is not None:
                sim.call_at(ev.at_s, lambda now, link=link, lcfg=lcfg:
                            link.reconfigure(lcfg, now=now))
    stop = scenario.duration_s
    sim.add_application(TrafficApp(lambda: client, scenario.up, address=CLIENT_ADDR,
                                   seed=scenario.seed, stop_at=stop))
    sim.add_application(TrafficApp(lambda: server.sessions.get(CLIENT_ADDR), scenario.down,
                                   address=SERVER_ADDR, seed=scenario.seed + 1,
                                   stop_at=stop))
    monitor = HealthMonitor(session="netsim", config=config,
                            device=StaticDevice(cpu_percent=10.0, memory_percent=20.0))
    reports: list[tuple[float, dict[str, Any]]] = []

    def tick(now: float) -> None:
        if client.ready:
            monitor.observe(client, now=now)
            if monitor.due(now=now):
                reports.append((now, monitor.report(now=now, ts=TS0 + now)))
                truth.mark(now)
        nxt = now + OBSERVE_EVERY
        timer = monitor.get_timer()
        if timer is not None and now < timer < nxt:
            nxt = timer
        if nxt < until:
            sim.call_at(nxt, tick)

    sim.call_at(0.0, tick)
    client.connect(SERVER_ADDR, now=0.0)
    sim.run(until)
    return Run(reports, up.stats.summary(end=until), truth)


def _scenario(*, delay_ms: float, loss: float = 0.0, rate_kbps: float = 20_000,
              duration_s: float = 12.0, bulk: bool = False,
              events: list[dict[str, Any]] | None = None, seed: int = 3,
              cc: str = "edgewire") -> dict[str, Any]:
    up: dict[str, Any] = {"audio": {"bitrate_kbps": 32, "frame_ms": 20},
                          "video": {"bitrate_kbps": 1500, "fps": 30}}
    if bulk:  # saturate the uplink: capacity shows as goodput
        up = {"embeddings": {"rate_per_s": 200, "dim": 1024, "batch": 8}}
    link: dict[str, Any] = {"delay_ms": delay_ms, "queue_ms": 200}
    data: dict[str, Any] = {
        "name": "health", "duration_s": duration_s, "seed": seed,
        "link": link,
        "uplink": {"rate_kbps": rate_kbps,
                   "loss": {"model": "bernoulli", "rate": loss} if loss else
                   {"model": "none"}},
        "downlink": {"rate_kbps": 20_000},
        "transport": {"cc": cc, "recovery": "none"},
        "traffic": {"up": up, "down": {"audio": {"bitrate_kbps": 32, "frame_ms": 20}}},
    }
    if events:
        data["events"] = events
    return data


def _steady(reports: list[tuple[float, dict[str, Any]]], after: float) -> list[dict[str, Any]]:
    return [r for t, r in reports if t >= after and "periodic" in r["reasons"]]


def measure_steady(delay_ms: float, loss: float, seed: int = 3) -> dict[str, Any]:
    """Figures of the periodic reports after a 3 s warm-up against the configured link
    and, for loss, against the uplink's verdict on the packets those reports cover."""
    run = run_monitored(_scenario(delay_ms=delay_ms, loss=loss, seed=seed), until=12.0)
    periodic = [(t, r) for t, r in run.reports if "periodic" in r["reasons"]]
    first = next(i for i, (t, _) in enumerate(periodic) if t >= 3.0)
    steady = [r for _, r in periodic[first:]]
    rtt_truth = 2 * delay_ms  # the same delay each way
    rtt_min = [r["rtt_ms"]["min"] for r in steady]
    rates = [r["loss"]["rate"] for r in steady]
    # the periodic windows tile (previous periodic report, last report]; the monitor's
    # lost packets in them against the link's verdict on the same packets
    lost = sum(round(r["loss"]["rate"] * r["loss"]["packets"]) for r in steady)
    packets = sum(r["loss"]["packets"] for r in steady)
    truth_lost, truth_packets = run.truth.loss_between(periodic[first - 1][0], periodic[-1][0])
    return {"reports": len(steady),
            "rtt_min_ms_mean": round(statistics.mean(rtt_min), 3),
            "rtt_min_worst_error": round(max(abs(v - rtt_truth) for v in rtt_min)
                                         / rtt_truth, 4),
            "loss_rate_mean": round(statistics.mean(rates), 5),
            "loss_rate_pooled": round(lost / packets, 5) if packets else None,
            "loss_lost_packets": [lost, packets],
            "loss_rate_truth": round(truth_lost / truth_packets, 5) if truth_packets else None,
            "loss_truth_lost_packets": [truth_lost, truth_packets],
            "loss_rate_link": run.link["loss_rate"],
            "loss_rate_reports": rates,
            "queue_delay_ms_mean": round(statistics.mean(r["queue_delay_ms"]
                                                         for r in steady), 3)}


def measure_capacity(rate_kbps: float, cc: str, seed: int = 3) -> dict[str, Any]:
    """Goodput, estimate and queueing delay of a saturated uplink (periodic reports after
    4 s), with the link's own queueing delay for comparison."""
    run = run_monitored(_scenario(delay_ms=20, rate_kbps=rate_kbps, bulk=True,
                                  duration_s=14.0, cc=cc, seed=seed), until=14.0)
    link = run.link
    steady = _steady(run.reports, 4.0)
    return {"reports": len(steady),
            "goodput_kbps_mean": round(statistics.mean(r["bandwidth"]["goodput_kbps"]
                                                       for r in steady), 1),
            "goodput_kbps_min": min(r["bandwidth"]["goodput_kbps"] for r in steady),
            "estimate_kbps_mean": round(statistics.mean(r["bandwidth"]["estimate_kbps"]
                                                        for r in steady), 1),
            "queue_delay_ms_mean": round(statistics.mean(r["queue_delay_ms"]
                                                         for r in steady), 2),
            "link_queue_delay_ms": link["queue_delay_ms"],
            "link_throughput_kbps": link["throughput_kbps"]}


def measure_loss_step(change_at: float = 6.0, seed: int = 3) -> dict[str, Any]:
    """Uplink loss 0 -> 10 % at ``change_at``: when the reports show it."""
    reports = run_monitored(_scenario(delay_ms=20, seed=seed, events=[
        {"at_s": change_at, "uplink": {"loss": {"model": "bernoulli", "rate": 0.1}}}]),
        until=change_at + 4.0).reports
    after = [(t, r) for t, r in reports if t > change_at]
    first_half = next(t for t, r in after if (r["loss"]["rate"] or 0) >= 0.05)
    periodic = [(t, r) for t, r in after if "periodic" in r["reasons"]]
    return {"first_report_s": round(after[0][0] - change_at, 3),
            "first_reasons": after[0][1]["reasons"],
            "loss_at_least_half_after_s": round(first_half - change_at, 3),
            "periodic_after": [(round(t - change_at, 3), r["loss"]["rate"], r["tier"])
                               for t, r in periodic[:3]],
            "tier_before": next(r["tier"] for t, r in reversed(reports) if t <= change_at)}


def measure_down(down_at: float = 6.0, delay_ms: float = 20.0,
                 seed: int = 3) -> dict[str, Any]:
    """Both directions black out at ``down_at``: when a report says the path is down."""
    reports = run_monitored(_scenario(delay_ms=delay_ms, seed=seed, events=[
        {"at_s": down_at, "link": {"down": True}},
        {"at_s": down_at + 2.0, "link": {"down": False}}]), until=down_at + 5.0).reports
    down = next((t, r) for t, r in reports if t > down_at and r["tier"] == "down")
    back = next(((t, r) for t, r in reports if t > down[0] and r["tier"] != "down"), None)
    return {"down_report_after_s": round(down[0] - down_at, 3),
            "down_reasons": down[1]["reasons"],
            "silence_ms": down[1]["silence_ms"],
            "up_again_after_restore_s": None if back is None
            else round(back[0] - down_at - 2.0, 3)}


VALIDATOR = jsonschema.Draft202012Validator(load_schema())


@pytest.mark.parametrize(("delay_ms", "loss", "seed"),
                         [(20.0, 0.05, 3), (50.0, 0.0, 3), (50.0, 0.01, 3), (50.0, 0.01, 5)])
def test_steady_figures_match_the_configured_link(delay_ms: float, loss: float,
                                                  seed: int) -> None:
    m = measure_steady(delay_ms, loss, seed)
    assert m["reports"] >= 8
    # every report's minimum RTT within 10 % of the configured round trip
    assert m["rtt_min_worst_error"] <= 0.10
    if loss:
        # the steady periodic reports' loss within 10 % of the uplink's own verdict on
        # the same packets (at 1 % that is 2 of ~20 lost packets: the periodic windows
        # must tile time, the loss that triggered an urgent report included)
        assert m["loss_rate_truth"] > 0
        assert m["loss_rate_pooled"] == pytest.approx(m["loss_rate_truth"], rel=0.10)
        # and the realised loss is a plausible draw of the configured rate
        n = m["loss_truth_lost_packets"][1]
        assert abs(m["loss_rate_pooled"] - loss) <= 3 * (loss * (1 - loss) / n) ** 0.5
    else:
        assert m["loss_rate_mean"] == 0.0
        assert m["loss_truth_lost_packets"][0] == 0
    assert m["queue_delay_ms_mean"] < 5.0  # no bottleneck queue on these links


def test_goodput_of_a_saturated_link_matches_its_capacity() -> None:
    m = measure_capacity(4000.0, "cubic")
    assert m["goodput_kbps_mean"] == pytest.approx(4000.0, rel=0.10)
    # the standing queue cubic builds shows as queueing delay (the link's own median
    # includes the slow-start overshoot, so only the order of magnitude is compared)
    assert m["queue_delay_ms_mean"] > 50.0


def test_loss_step_is_reported_within_two_periods() -> None:
    m = measure_loss_step()
    assert m["tier_before"] == "excellent"
    assert m["loss_at_least_half_after_s"] <= 2.0
    # the second periodic report after the change sees (only) the new loss
    (_, _, _), (t2, rate2, tier2) = m["periodic_after"][:2]
    assert t2 <= 2.0
    assert rate2 == pytest.approx(0.10, abs=0.03)
    assert tier2 in ("fair", "poor")


@pytest.mark.parametrize("delay_ms", [20.0, 60.0])
def test_path_down_is_reported_within_300_ms(delay_ms: float) -> None:
    m = measure_down(delay_ms=delay_ms)
    assert m["down_report_after_s"] <= 0.3
    assert "down" in m["down_reasons"]
    assert m["up_again_after_restore_s"] is not None
    assert m["up_again_after_restore_s"] <= 0.5


def test_every_emitted_report_matches_the_schema() -> None:
    reports = run_monitored(_scenario(delay_ms=30, loss=0.02, duration_s=4.0, events=[
        {"at_s": 2.0, "link": {"down": True}}, {"at_s": 2.5, "link": {"down": False}}]),
        until=4.0).reports
    assert len(reports) >= 4
    for _, r in reports:
        VALIDATOR.validate(r)
        json.dumps(r, allow_nan=False)


def measure_all(seed: int = 3) -> dict[str, Any]:
    return {"steady_20ms_5pct": measure_steady(20.0, 0.05, seed),
            "steady_50ms_1pct": measure_steady(50.0, 0.01, seed),
            "capacity_4000_cubic": measure_capacity(4000.0, "cubic", seed),
            "capacity_4000_edgewire": measure_capacity(4000.0, "edgewire", seed),
            "loss_step_0_to_10pct": measure_loss_step(seed=seed),
            "down_20ms": measure_down(seed=seed),
            "down_60ms": measure_down(delay_ms=60.0, seed=seed)}


if __name__ == "__main__":
    seeds = [int(a) for a in sys.argv[1:]] or [3]
    out = (measure_all(seeds[0]) if len(seeds) == 1
           else {f"seed_{seed}": measure_all(seed) for seed in seeds})
    json.dump(out, sys.stdout, indent=1)
