"""``edgewire bench bwe-sockets``: edgewire's congestion control over real UDP sockets, through
the real-time relay, against aioquic's reno on the same 2 Mbit/s bottleneck."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edgewire.aio.relay import start_relay
from edgewire.cli.main import main
from edgewire.errors import LocalProtocolError
from edgewire.netsim.scenario import parse_scenario


def test_edgewire_keeps_the_bottleneck_queue_short_where_reno_fills_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # 4 s of the constant 2 Mbit/s scenario (RTT 50 ms, 100-packet queue) per scheme
    assert main(["bench", "bwe-sockets", "--seconds", "4", "--only", "constant",
                 "--schemes", "edgewire,reno", "--json", "--plot", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bwe-sockets-constant-2mbps.png", "bwe-sockets-pantheon.png"]
    assert sorted(out["plots"]) == sorted(str(p) for p in tmp_path.iterdir())
    rows = out["scenarios"]["constant-2mbps"]["schemes"]
    ew, reno = rows["edgewire"], rows["reno"]
    # reno fills the queue: 100 packets at 2 Mbit/s hold close to half a second
    assert reno["queue_delay_p95_ms"] > 150
    # edgewire paces at its estimate and keeps a queue of tens of milliseconds at most
    assert ew["queue_delay_p95_ms"] < 100
    assert ew["queue_delay_p95_ms"] < reno["queue_delay_p95_ms"] / 3
    # ...while carrying the link: the estimate found the capacity, the payload arrived
    assert 0.6 < ew["utilization"] <= 1.0
    assert 0.6 < ew["link_utilization"] <= 1.0
    assert 1000 < ew["estimate_mean_kbps"] < 3000
    assert ew["capacity_kbps"] == pytest.approx(2000, rel=0.01)
    assert ew["loss_rate"] < 0.05
    assert ew["relay_late_ms"]["samples"] > 0
    goals = out["scenarios"]["constant-2mbps"]["goals"]["edgewire"]
    assert goals["lower_delay_than_reno"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["--schemes", "bbr9"], "unknown scheme 'bbr9'"),
    (["--only", "nothing-like-this"], "matches no scenario"),
    (["--seconds", "0"], "seconds must be > 0"),
    (["--schemes", ","], "--schemes and --only must name something"),
    (["--rtt-ms", "0"], "rtt must be 1..2000 ms"),
    (["--rtt-ms", "inf"], "rtt must be 1..2000 ms"),
])
def test_bad_options_are_clear_errors(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "bwe-sockets", *argv]) == 2
    assert message in capsys.readouterr().out


@pytest.mark.asyncio
async def test_relay_exposes_its_clock_and_live_link_stats() -> None:
    scenario = parse_scenario({"name": "clock", "duration_s": 5,
                               "link": {"rate_kbps": 1000, "delay_ms": 5}})
    relay = await start_relay(("127.0.0.1", 0), ("127.0.0.1", 9), scenario)
    try:
        t0 = relay.now()
        await asyncio.sleep(0.05)
        t1 = relay.now()
        assert 0.04 <= t1 - t0 < 1.0
        down = relay.link_stats("downlink")
        # 1 Mbit/s for the relay's lifetime so far
        assert down.capacity_bits_until(t1) == pytest.approx(1e6 * t1, rel=0.05)
        assert relay.link_stats("uplink") is not down
        with pytest.raises(LocalProtocolError, match="direction must be"):
            relay.link_stats("sideways")
    finally:
        relay.close()
        await relay.wait_closed()
    # a closed relay's clock stops where it closed
    assert relay.now() == relay.now()


def test_tokens_stay_fast_beside_video_and_a_bulk_transfer(
        capsys: pytest.CaptureFixture[str]) -> None:
    # the competition scenario alone: tokens, adaptive video and the bulk transfer
    assert main(["bench", "bwe-sockets", "--seconds", "4", "--only", "competition",
                 "--schemes", "edgewire,reno", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["scenarios"]["competition-2mbps"]["schemes"]
    ew, reno = rows["edgewire"]["tokens_latency_p95_ms"], rows["reno"]["tokens_latency_p95_ms"]
    # the goal is 2 x RTT + 50 ms = 150 ms; reno's full queue is in front of every token
    assert ew < 150
    assert reno > 150
    assert ew < reno / 2


def test_goal_lines_name_each_goal_and_the_reaction_times(
        capsys: pytest.CaptureFixture[str]) -> None:
    from edgewire.cli.bench_bwe import print_goals

    print_goals({"schemes": {"edgewire": {"utilization": 0.9, "up_estimate_80pct_s": 0.5,
                                          "tokens_latency_p95_ms": 54.4},
                             "reno": {"utilization": 0.9}},
                 "goals": {"edgewire": {"queue_p95<=50ms": True, "utilization>=0.90": False}}})
    out = capsys.readouterr().out.splitlines()
    assert out == ["  edgewire: up_estimate_80pct_s 0.5, tokens_latency_p95_ms 54.4",
                   "  edgewire goals: queue_p95<=50ms ok, utilization>=0.90 NOT MET"]


def test_a_sender_that_fails_ends_the_bench_with_a_clear_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import edgewire.cli.bench_bwe_sockets as mod

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("the encoder is gone")

    # the workload driver stands in for an application whose sending fails mid-run
    monkeypatch.setattr(mod, "send_workload", broken)
    assert main(["bench", "bwe-sockets", "--seconds", "2", "--only", "constant",
                 "--schemes", "edgewire"]) == 1
    out = capsys.readouterr().out
    assert "bench bwe-sockets failed" in out
    assert "constant-2mbps, edgewire: the sender failed" in out
    assert "the encoder is gone" in out
