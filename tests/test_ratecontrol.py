"""Rate control in the session: the aioquic controller, the split of the estimate, and
netsim runs of the edgewire controller against a bottleneck."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from edgewire.netsim.bwe_report import plot_timeline
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport.qos import ChannelKind
from edgewire.transport.quicstats import congestion_control_names
from edgewire.transport.ratecontrol import (
    K_FLOOR_EXTRA,
    K_FLOOR_HEADROOM,
    ChannelDemand,
    RateController,
    allocate,
)


def test_controller_is_registered_with_aioquic() -> None:
    assert {"edgewire", "reno", "cubic"} <= set(congestion_control_names())


def _d(cid: int, prio: int, kind: ChannelKind, rate: float) -> ChannelDemand:
    return ChannelDemand(channel_id=cid, priority=prio, kind=kind, rate_bps=rate)


def test_allocation_follows_priority() -> None:
    chans = [_d(7, 3, ChannelKind.EMBEDDINGS, 5e6), _d(5, 2, ChannelKind.VIDEO, 1e6),
             _d(1, 0, ChannelKind.AUDIO, 32e3), _d(3, 1, ChannelKind.TOKENS, 8e3)]
    shares = allocate(2e6, chans)
    assert shares[1] == 64_000  # audio: its floor
    assert shares[3] == 32_000  # tokens: their floor
    assert shares[5] == 1.5e6  # video: 1.5 x what it sends
    assert shares[7] == pytest.approx(2e6 - 64e3 - 32e3 - 1.5e6)  # embeddings: the rest
    # when the estimate is short, the lower priorities go without
    tight = allocate(80_000, chans)
    assert tight[1] == 64_000
    assert tight[3] == 16_000
    assert tight[5] == 0
    assert tight[7] == 0


def test_real_time_floor_counts_recovery_bytes() -> None:
    """A call repairing heavy loss sends parity beside its media: the floor under the
    estimate covers both, so loss read as congestion cannot throttle the repair."""
    rc = RateController(QuicConnection(configuration=QuicConfiguration(is_client=True)))
    media = recovery = 0
    for i in range(11):  # 2 s of 32 kbit/s audio with 64 kbit/s of parity, allocation at 5 Hz
        rc.reallocate(i * 0.2, [(1, 0, ChannelKind.AUDIO, media, recovery),
                                (2, 2, ChannelKind.VIDEO, 100 * media, 0)])
        media += 800
        recovery += 1600
    assert rc.send_rate_bps == pytest.approx(K_FLOOR_HEADROOM * 96_000 + K_FLOOR_EXTRA,
                                             rel=0.01)
    assert rc.share(1) == pytest.approx(64_000, rel=0.01)  # from the media rate alone
    # video's recovery bytes do not raise the floor
    rc.reallocate(2.2, [(2, 2, ChannelKind.VIDEO, 10**9, 10**9)])
    assert rc.send_rate_bps == rc.estimator.target_bps


def test_constant_bottleneck_high_utilization_low_delay(tmp_path: Path) -> None:
    sc = parse_scenario({
        "name": "constant", "duration_s": 20, "seed": 1,
        "link": {"delay_ms": 25, "queue_packets": 100, "rate_kbps": 2000},
        "traffic": {"down": {"audio": {"bitrate_kbps": 32},
                             "embeddings": {"rate_per_s": 400, "dim": 768, "batch": 16}}},
        "transport": {"cc": "edgewire", "estimator": "gcc"},
    })  # the default estimator's goal runs are in test_bwe_delivery
    r = run_scenario(sc)
    bwe = r["bwe"]
    assert bwe["direction"] == "downlink"
    # the goals of the constant 2 Mbit/s case: >= 0.9 of capacity, p95 queue <= 50 ms
    assert bwe["utilization"] >= 0.9
    assert bwe["queue_delay_ms"]["p95"] <= 50
    assert 1500 <= bwe["estimate_kbps"]["mean"] <= 2300
    assert bwe["state"]["controller"] == "edgewire"
    assert bwe["state"]["feedback_received"] > 100
    assert r["channels"]["down"]["audio"]["on_time_ratio"] > 0.99
    rows = bwe["timeline"]
    assert {"t", "estimate_kbps", "capacity_kbps", "throughput_kbps",
            "queue_delay_ms"} <= set(rows[0])
    png = plot_timeline(bwe, tmp_path / "bwe.png", title="constant")
    assert png.stat().st_size > 10_000

    # the same link under Reno: the queue fills
    reno = run_scenario(parse_scenario({
        "name": "constant", "duration_s": 20, "seed": 1,
        "link": {"delay_ms": 25, "queue_packets": 100, "rate_kbps": 2000},
        "traffic": {"down": {"audio": {"bitrate_kbps": 32},
                             "embeddings": {"rate_per_s": 400, "dim": 768, "batch": 16}}},
        "transport": {"cc": "reno"},
    }))
    assert reno["bwe"]["queue_delay_ms"]["p95"] > 4 * bwe["queue_delay_ms"]["p95"]


def test_adaptive_video_follows_its_share() -> None:
    sc = parse_scenario({
        "name": "video", "duration_s": 15, "seed": 2,
        "link": {"delay_ms": 25, "queue_packets": 100, "rate_kbps": 800},
        "traffic": {"up": {"video": {"bitrate_kbps": 2500, "fps": 30}}},
    })
    video = run_scenario(sc)["channels"]["up"]["video"]
    ladder = video["ladder"]
    # a 2.5 Mbit/s source on an 800 kbit/s link is turned down below the link rate
    assert ladder["changes"] > 0
    assert ladder["bitrate_kbps"] < 800


def test_step_down_and_up_goals() -> None:
    """2 -> 0.5 -> 2 Mbit/s (bench bwe's step, 40 s): the estimate follows the step down
    within 2 s, the queue left by it drains under 50 ms (p95) within 3 s, and the estimate
    is back at 80 % of 2 Mbit/s within 5 s of the step up."""
    from edgewire.cli.bench_bwe import _step_figures, scenarios

    table = next(t for t in scenarios(20.0, None) if t["name"].startswith("step"))
    result = run_scenario(parse_scenario({**table, "seed": 1,
                                          "transport": {"cc": "edgewire",
                                                        "estimator": "gcc"}}))
    fig = _step_figures(result, 20.0)
    assert fig["down_estimate_within_20pct_s"] is not None
    assert fig["down_estimate_within_20pct_s"] <= 2.0
    assert fig["down_queue_p95_under_50ms_s"] is not None
    assert fig["down_queue_p95_under_50ms_s"] <= 3.0
    assert fig["up_estimate_80pct_s"] is not None
    assert fig["up_estimate_80pct_s"] <= 5.0
    assert result["bwe"]["state"]["probes_busy"] >= 1


def test_bench_bwe_refuses_options_that_select_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgewire.cli.bench_bwe import add_bench_bwe_arguments, main_bench_bwe

    parser = argparse.ArgumentParser()
    add_bench_bwe_arguments(parser)
    assert main_bench_bwe(parser.parse_args(["--only", "traces-typo"])) == 2
    out = capsys.readouterr().out
    assert "matches no scenario" in out
    assert "constant-2mbps" in out
    assert main_bench_bwe(parser.parse_args(["--schemes", "vegas"])) == 2
    assert "unknown scheme 'vegas'" in capsys.readouterr().out
    assert main_bench_bwe(parser.parse_args(["--schemes", "edgewire-nosuch"])) == 2
    assert "edgewire-<estimator> (delivery, gcc, loss)" in capsys.readouterr().out


def test_bench_bwe_refuses_bad_windows(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgewire.cli.bench_bwe import add_bench_bwe_arguments, main_bench_bwe

    parser = argparse.ArgumentParser()
    add_bench_bwe_arguments(parser)
    assert main_bench_bwe(parser.parse_args(["--windows", "0,ten"])) == 2
    assert "--windows wants seconds" in capsys.readouterr().out
    for bad in ("-5", "0,nan", ","):
        assert main_bench_bwe(parser.parse_args(["--windows", bad])) == 2
        assert "trace starts must be seconds >= 0" in capsys.readouterr().out


def test_bench_bwe_records_the_trace_starts(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from edgewire.cli import bench_bwe
    from edgewire.cli.bench_bwe import run_bench_bwe

    # traces "found" (never read: only the constant run is selected), whatever the machine
    monkeypatch.setattr(bench_bwe, "_trace_dir", lambda: tmp_path)
    # one short constant run: the starts given (once each, in order) are in the params
    report = run_bench_bwe(seconds=1.0, schemes=("reno",), only=("constant",),
                           starts=(40.0, 0.0, 40.0))
    assert report["params"]["trace_starts_s"] == [40.0, 0.0]
    assert list(report["scenarios"]) == ["constant-2mbps"]
    assert "trace_windows" in report  # two starts: the summary is there, with no trace run
    assert all(not per for per in report["trace_windows"]["schemes"].values())


def test_bench_bwe_runs_every_link_at_the_round_trip_asked(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgewire.cli.bench_bwe import (
        K_RTT_MS,
        _goals,
        add_bench_bwe_arguments,
        main_bench_bwe,
        run_bench_bwe,
        scenarios,
    )

    assert all(t.get("link", t.get("downlink"))["delay_ms"] == 100.0
               for t in scenarios(5, None, rtt_ms=200))
    assert all(t["link"]["delay_ms"] == K_RTT_MS / 2 for t in scenarios(5, None))
    report = run_bench_bwe(seconds=1.0, schemes=("reno",), only=("constant",), rtt_ms=300)
    assert report["params"]["rtt_ms"] == 300.0
    # the token goal is 2 x RTT + 50 ms of the links run
    row = {"tokens_latency_p95_ms": 400.0, "queue_delay_p95_ms": 1.0, "delay_p95_ms": 1.0,
           "utilization": 1.0, "throughput_kbps": 1.0}
    assert _goals("competition-2mbps", {"edgewire": row})["tokens_p95<=2rtt+50ms"] is False
    assert _goals("competition-2mbps", {"edgewire": row},
                  rtt_ms=200)["tokens_p95<=2rtt+50ms"] is True
    parser = argparse.ArgumentParser()
    add_bench_bwe_arguments(parser)
    for bad in ("0", "nan", "5000"):
        assert main_bench_bwe(parser.parse_args(["--rtt-ms", bad])) == 2
        assert "rtt must be 1..2000 ms" in capsys.readouterr().out


def test_bench_bwe_gives_the_same_figures_in_several_processes(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgewire.cli.bench_bwe import add_bench_bwe_arguments, main_bench_bwe, run_bench_bwe

    def run(jobs: int, notes: list[str] | None = None) -> dict[str, Any]:
        return run_bench_bwe(seconds=1.0, schemes=("edgewire", "reno"),
                             only=("constant", "step"), jobs=jobs,
                             progress=None if notes is None else notes.append)

    notes: list[str] = []
    alone = run(1)
    pooled = run(2, notes)
    assert pooled["scenarios"] == alone["scenarios"]
    assert list(pooled["scenarios"]) == ["constant-2mbps", "step-2-0.5-2mbps"]
    assert list(pooled["scenarios"]["step-2-0.5-2mbps"]["schemes"]) == ["edgewire", "reno"]
    assert len(notes) == 4
    assert notes[-1].startswith("bench bwe: 4/4 done")
    with pytest.raises(ValueError, match="jobs must be a whole number >= 1"):
        run(0)
    parser = argparse.ArgumentParser()
    add_bench_bwe_arguments(parser)
    assert main_bench_bwe(parser.parse_args(["--jobs", "-1"])) == 2
    assert "jobs must be a whole number >= 1" in capsys.readouterr().out


def test_bench_bwe_settings_change_edgewire_only(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from edgewire.cli.bench_bwe import add_bench_bwe_arguments, main_bench_bwe, run_bench_bwe

    def run(bwe: dict[str, object] | None) -> dict[str, Any]:
        return run_bench_bwe(seconds=2.0, schemes=("edgewire", "reno"), only=("constant",),
                             bwe=bwe)

    def parser_for(argv: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_bench_bwe_arguments(parser)
        return parser.parse_args(argv)

    plain, deeper = run(None), run({"delivery.queue_target": 0.03})
    assert plain["params"]["bwe"] == {}
    assert deeper["params"]["bwe"] == {"delivery.queue_target": 0.03}
    rows = [r["scenarios"]["constant-2mbps"]["schemes"] for r in (plain, deeper)]
    # a queue target three times as deep makes edgewire keep a deeper queue...
    assert rows[1]["edgewire"]["queue_delay_p95_ms"] > rows[0]["edgewire"]["queue_delay_p95_ms"]
    # ...and leaves reno alone
    assert rows[1]["reno"] == rows[0]["reno"]
    assert main_bench_bwe(parser_for(["--seconds", "1", "--only", "constant", "--schemes",
                                      "edgewire", "--bwe", "delivery.gain=0.5"])) == 0
    assert "edgewire's estimator settings: delivery.gain=0.5" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"--bwe: delivery\.queue_targt: no such setting"):
        run({"delivery.queue_targt": 0.03})
    parser = argparse.ArgumentParser()
    add_bench_bwe_arguments(parser)
    assert main_bench_bwe(parser.parse_args(["--bwe", "delivery.gain=9"])) == 2
    assert "delivery.gain must be in (0, 4]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--bwe", "gain"])
    assert "a setting is KEY=VALUE" in capsys.readouterr().err


def test_run_options_estimator_settings_reach_the_sessions() -> None:
    from edgewire.netsim.run import RunOptions, run_scenario
    from edgewire.netsim.scenario import ScenarioError, parse_scenario

    sc = parse_scenario({"name": "t", "duration_s": 1, "seed": 1,
                         "link": {"delay_ms": 25, "rate_kbps": 2000, "queue_packets": 100},
                         "transport": {"bwe": {"delivery": {"gain": 0.5}}},
                         "traffic": {"down": {"embeddings": {"rate_per_s": 200}}}})
    result = run_scenario(sc, RunOptions(bwe={"start_bps": 1_000_000}))
    assert result["transport"]["bwe"] == {"start_bps": 1_000_000.0, "delivery.gain": 0.5}
    # the sender starts at the rate set: its estimate before any feedback
    first = result["bwe"]["timeline"][0]
    assert first["estimate_kbps"] == pytest.approx(1000.0)
    assert run_scenario(sc)["bwe"]["timeline"][0]["estimate_kbps"] == pytest.approx(300.0)
    with pytest.raises(ScenarioError, match="start_bpz: no such setting"):
        run_scenario(sc, RunOptions(bwe={"start_bpz": 1}))


def test_bench_bwe_windows_start_each_trace_later(tmp_path: Path) -> None:
    from edgewire.cli.bench_bwe import TRACES, scenarios
    from edgewire.netsim.scenario import parse_scenario

    traces = [t for t in scenarios(5, tmp_path, (0, 20.5)) if t["name"].startswith("trace")]
    assert [t["name"] for t in traces] == [
        n for stem in TRACES for n in (f"trace-{stem}", f"trace-{stem}@20.5s")]
    late = traces[1]
    assert late["uplink"]["trace_start_ms"] == late["downlink"]["trace_start_ms"] == 20_500
    assert traces[0]["downlink"]["trace_start_ms"] == 0
    # the tables are scenarios netsim takes: a real trace file read from 20.5 s in
    small = tmp_path / f"{TRACES[0]}.down"
    small.write_text("1000\n30000\n40000\n", encoding="ascii")
    (tmp_path / f"{TRACES[0]}.up").write_bytes(small.read_bytes())
    sc = parse_scenario({**late, "seed": 1})
    assert sc.downlink.trace is not None
    assert sc.downlink.trace.times_ms == (9500, 19500, 20500)


def test_bench_bwe_window_summary_counts_runs_where_every_goal_holds() -> None:
    from edgewire.cli.bench_bwe import TRACES, trace_windows

    def run(util: float, qd: float, ok: bool) -> dict[str, object]:
        row = {"utilization": util, "queue_delay_p95_ms": qd, "self_inflicted_p95_ms": qd / 2}
        return {"schemes": {"edgewire": row, "reno": row},
                "goals": {"edgewire": {"utilization>=0.70": ok, "queue_p95<=100ms": True}}}

    stem = TRACES[1]
    out = {f"trace-{stem}": run(0.8, 90.0, True),
           f"trace-{stem}@20s": run(0.6, 120.0, False),
           f"trace-{stem}@40s": run(0.7, 80.0, True),
           "constant-2mbps": run(0.9, 20.0, False)}
    summary = trace_windows(out, (0, 20, 40))
    assert summary["starts_s"] == [0, 20, 40]
    w = summary["schemes"]["edgewire"][stem]
    assert (w["runs"], w["all_goals_met"]) == (3, 2)
    assert w["met"] == [f"trace-{stem}", f"trace-{stem}@40s"]
    assert w["utilization_mean"] == pytest.approx(0.7)
    assert w["queue_delay_p95_ms_median"] == 90.0
    assert w["self_inflicted_p95_ms_median"] == 45.0
    assert set(summary["schemes"]["edgewire"]) == {stem}  # no runs of the other traces
    # each run beside reno's utilization, with its trace profile when it has one
    runs = w["per_run"]
    assert [(r["name"], r["met"], r["utilization"]) for r in runs] == [
        (f"trace-{stem}", True, 0.8), (f"trace-{stem}@20s", False, 0.6),
        (f"trace-{stem}@40s", True, 0.7)]
    assert [r["reno_utilization"] for r in runs] == [0.8, 0.6, 0.7]
    out[f"trace-{stem}@20s"]["trace_profile"] = {"uplink_dark_s": 4.5}
    again = trace_windows(out, (0, 20, 40))["schemes"]["edgewire"][stem]["per_run"]
    assert again[1]["uplink_dark_s"] == 4.5
    assert "uplink_dark_s" not in again[0]


def test_bench_bwe_trace_profile_measures_what_a_sender_cannot_see(tmp_path: Path) -> None:
    from edgewire.cli.bench_bwe import trace_profile

    # downlink: 10 opportunities a ms for 0-1 s and again for 3-4 s of a 4 s period;
    # uplink: one every 10 ms except from 0.5 to 2.5 s
    down = [t for t in range(4000) if t < 1000 or t >= 3000 for _ in range(10)]
    up = [t for t in range(0, 4000, 10) if not 500 < t < 2500] + [4000]
    (tmp_path / "x.down").write_text("".join(f"{t}\n" for t in [*down, 4000]))
    (tmp_path / "x.up").write_text("".join(f"{t}\n" for t in up))
    p = trace_profile(tmp_path, "x", 0.0, 4.0)
    assert p["uplink_dark_s"] == pytest.approx(2.0)  # 0.5 -> 2.5 s
    assert p["downlink_dark_s"] == pytest.approx(2.001)  # 0.999 -> 3.0 s
    # 20,000 opportunities in the 4 s; 5,000 of them (0.5-1 s) while the uplink is dark,
    # 10,000 in the first 2 s
    assert p["capacity_while_uplink_dark"] == 0.25
    assert p["capacity_first_2s"] == 0.5
    # read from 3 s in (both directions, as the bench does): the downlink is lit at once
    late = trace_profile(tmp_path, "x", 3.0, 2.0)
    assert late["downlink_dark_s"] == 0
    assert late["capacity_first_2s"] == 1.0


def test_bench_bwe_schemes_select_controller_and_estimator() -> None:
    from edgewire.cli.bench_bwe import SCHEMES, scheme_transport

    assert scheme_transport("reno") == {"cc": "reno"}
    assert scheme_transport("edgewire") == {"cc": "edgewire"}
    assert scheme_transport("edgewire-delivery") == {"cc": "edgewire",
                                                     "estimator": "delivery"}
    assert scheme_transport("edgewire-gcc") == {"cc": "edgewire", "estimator": "gcc"}
    assert "edgewire-gcc" in SCHEMES
    with pytest.raises(ValueError, match="unknown scheme"):
        scheme_transport("edgewire-nonsense")


def test_delivery_is_the_default_estimator_everywhere() -> None:
    """A session, a netsim scenario without [transport] estimator and the rate controller
    all pick the same default."""
    from edgewire.netsim.scenario import parse_scenario
    from edgewire.transport import SessionConfig
    from edgewire.transport.bwe import DEFAULT_ESTIMATOR

    assert DEFAULT_ESTIMATOR == "delivery"
    assert SessionConfig().estimator == DEFAULT_ESTIMATOR
    sc = parse_scenario({"name": "x", "duration_s": 1, "link": {"rate_kbps": 1000}})
    assert sc.transport.estimator == DEFAULT_ESTIMATOR


def _sent_packet(number: int, at: float) -> object:
    from aioquic import tls
    from aioquic.quic.packet_builder import QuicSentPacket

    return QuicSentPacket(epoch=tls.Epoch.ONE_RTT, in_flight=True, is_ack_eliciting=True,
                          is_crypto_packet=False, packet_number=number, packet_type=0,
                          sent_time=at, sent_bytes=1200)


def test_probe_cluster_keeps_packets_that_leave_late() -> None:
    """Padding handed to QUIC may leave after the cluster's planned end (pacing); the
    cluster still counts those packets, up to as many as it planned, within a grace time,
    since a cluster short of min_packets gives no result (the step-up regression)."""
    from edgewire.transport.ratecontrol import K_PROBE_GRACE

    rc = RateController(QuicConnection(configuration=QuicConfiguration(is_client=True)),
                        estimator="gcc")  # probing is gcc's
    assert rc.probe_padding(0.0, 1166)  # the first initial probe starts
    probe = rc._probe
    assert probe is not None
    planned, end = rc._probe_planned, rc._probe_until
    assert planned >= probe.min_packets
    # two packets leave in time, the rest only after the planned end
    for n, at in enumerate([0.001, 0.002] + [end + 0.01] * (planned - 2)):
        rc.on_quic_sent(_sent_packet(n, at))  # type: ignore[arg-type]
    rc.on_quic_sent(_sent_packet(planned, end + 0.011))  # type: ignore[arg-type]
    clusters = [s.cluster for s in rc.history._sent.values()]
    assert clusters == [probe.cluster] * planned + [None]
    # a cluster whose packets do not leave stops tagging after the grace time
    rc = RateController(QuicConnection(configuration=QuicConfiguration(is_client=True)),
                        estimator="gcc")  # probing is gcc's
    assert rc.probe_padding(0.0, 1166)
    end = rc._probe_until
    rc.on_quic_sent(_sent_packet(0, 0.001))  # type: ignore[arg-type]
    rc.on_quic_sent(_sent_packet(1, end + K_PROBE_GRACE / 2))  # type: ignore[arg-type]
    rc.on_quic_sent(_sent_packet(2, end + K_PROBE_GRACE + 0.001))  # type: ignore[arg-type]
    assert [s.cluster for s in rc.history._sent.values()] == [1, 1, None]
