"""The virtual-time engine running full edgewire sessions: determinism, events, pcap, CLI."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgewire.cli.main import main
from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.engine import SimulationStuckError, Simulator
from edgewire.netsim.link import Link
from edgewire.netsim.nodes import ServerEndpoint, simulation_quic_configs
from edgewire.netsim.run import CLIENT_ADDR, SERVER_ADDR, RunOptions, run_probe, run_scenario
from edgewire.netsim.scenario import ScenarioError, parse_scenario
from edgewire.transport import Session, SessionConfig, SessionReady


def _scenario(**over: Any) -> Any:
    base: dict[str, Any] = {
        "name": "t", "duration_s": 4, "seed": 5,
        "link": {"delay_ms": 20, "jitter_ms": 2, "rate_kbps": 4000, "queue_packets": 60,
                 "loss": {"model": "gilbert", "rate": 0.03, "burst": 2}},
        "traffic": {"up": {"audio": {"bitrate_kbps": 32}, "video": {"bitrate_kbps": 800}},
                    "down": {"audio": {"bitrate_kbps": 32}, "tokens": {"rate_per_s": 20}}},
    }
    base.update(over)
    return parse_scenario(base)


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    # wall-clock figures are the only things allowed to differ between runs
    return {k: v for k, v in result.items() if k not in ("wall_s", "realtime_factor")}


def test_same_seed_same_everything() -> None:
    sc = _scenario()
    a = run_scenario(sc)
    b = run_scenario(sc)
    assert _strip(a) == _strip(b)
    assert a["links"]["uplink"]["lost_by_model"] > 0
    assert a["channels"]["up"]["video"]["delivered"] > 0


def test_different_seed_different_fates() -> None:
    sc = _scenario()
    a = run_scenario(sc, RunOptions(seed=1))
    b = run_scenario(sc, RunOptions(seed=2))
    assert a["seed"] == 1
    assert b["seed"] == 2
    fates_a = (a["links"]["uplink"]["lost_by_model"], a["links"]["uplink"]["delay_ms"])
    fates_b = (b["links"]["uplink"]["lost_by_model"], b["links"]["uplink"]["delay_ms"])
    assert fates_a != fates_b


def test_json_fields_of_a_run() -> None:
    r = run_scenario(_scenario(), wall_clock=__import__("time").perf_counter)
    assert r["realtime_factor"] > 0
    for direction in ("uplink", "downlink"):
        link = r["links"][direction]
        for key in ("packets_offered", "packets_delivered", "lost_by_model",
                    "dropped_by_queue", "loss_rate", "mean_burst_length", "throughput_kbps",
                    "capacity_kbps"):
            assert key in link
        assert set(link["delay_ms"]) == {"p50", "p95", "p99"}
        assert "p95" in link["queue_delay_ms"]
        assert link["capacity_kbps"] == pytest.approx(4000, rel=1e-6)
    for direction, kinds in (("up", {"audio", "video"}), ("down", {"audio", "tokens"})):
        assert set(r["channels"][direction]) == kinds
        for row in r["channels"][direction].values():
            for key in ("sent", "delivered", "on_time", "on_time_ratio", "goodput_kbps"):
                assert key in row
            assert set(row["latency_ms"]) == {"p50", "p95", "p99"}
            assert 0 < row["delivered"] <= row["sent"]
    # tokens are reliable: every one sent arrives despite the link's losses
    tokens = r["channels"]["down"]["tokens"]
    assert tokens["delivered"] == tokens["sent"]


def test_latency_is_exact_in_virtual_time() -> None:
    sc = parse_scenario({"name": "exact", "duration_s": 3, "link": {"delay_ms": 30},
                         "uplink": {"delay_ms": 45},
                         "traffic": {"up": {"audio": {}}, "down": {"audio": {}}}})
    r = run_scenario(sc)
    # no bottleneck and no jitter: every frame takes exactly the propagation delay, and
    # the shared virtual clock makes the asymmetric path no problem for latency
    up = r["channels"]["up"]["audio"]["latency_ms"]
    down = r["channels"]["down"]["audio"]["latency_ms"]
    assert up["p50"] == up["p99"] == pytest.approx(45.0, abs=1e-3)
    assert down["p50"] == down["p99"] == pytest.approx(30.0, abs=1e-3)
    assert r["links"]["uplink"]["delay_ms"]["p99"] == pytest.approx(45.0, abs=1e-3)


def test_blackout_event_mid_run() -> None:
    sc = parse_scenario({
        "name": "blackout", "duration_s": 5,
        "link": {"delay_ms": 10},
        "events": [{"at_s": 2, "uplink": {"down": True}}, {"at_s": 3, "uplink": {"down": False}}],
        "traffic": {"up": {"audio": {"bitrate_kbps": 32, "frame_ms": 20}}},
        # the link alone: nothing is sent again, and Reno's window (far larger than the
        # call needs) lets every frame be offered to the dead link
        "transport": {"recovery": "none", "cc": "reno"},
    })
    r = run_scenario(sc)
    up = r["links"]["uplink"]
    # one second of 20 ms frames is lost, and nothing outside the blackout
    assert 45 <= up["lost_down"] <= 60
    assert up["lost_by_model"] == 0
    audio = r["channels"]["up"]["audio"]
    assert audio["sent"] - audio["delivered"] == pytest.approx(50, abs=3)
    assert r["links"]["downlink"]["lost_down"] == 0


def test_rate_step_down_event_changes_capacity() -> None:
    sc = parse_scenario({
        "name": "step", "duration_s": 6,
        "link": {"delay_ms": 10, "rate_kbps": 4000},
        "events": [{"at_s": 3, "uplink": {"rate_kbps": 1000}}],
        "traffic": {"up": {"audio": {}}},
    })
    r = run_scenario(sc, RunOptions(drain_s=0.0))
    # 3 s at 4000 and 3 s at 1000 kbit/s: 2500 kbit/s on average upstream
    assert r["links"]["uplink"]["capacity_kbps"] == pytest.approx(2500, rel=1e-6)
    assert r["links"]["downlink"]["capacity_kbps"] == pytest.approx(4000, rel=1e-6)


def test_cc_and_recovery_overrides_are_checked() -> None:
    sc = _scenario(duration_s=1)
    assert run_scenario(sc, RunOptions(cc="cubic"))["transport"]["cc"] == "cubic"
    with pytest.raises(ScenarioError, match="congestion controller"):
        run_scenario(sc, RunOptions(cc="nope"))
    with pytest.raises(ScenarioError, match="recovery"):
        run_scenario(sc, RunOptions(recovery="magic"))


def test_pcap_files_match_link_counts(tmp_path: Path) -> None:
    scapy_utils = pytest.importorskip("scapy.utils")
    from scapy.layers.inet import IP, UDP

    prefix = str(tmp_path / "cap")
    r = run_scenario(_scenario(duration_s=2), RunOptions(pcap_prefix=prefix))
    assert len(r["pcap"]) == 4
    for direction, (src, dst) in (("uplink", (CLIENT_ADDR, SERVER_ADDR)),
                                  ("downlink", (SERVER_ADDR, CLIENT_ADDR))):
        link = r["links"][direction]
        packets_in = scapy_utils.rdpcap(f"{prefix}-{direction}-in.pcap")
        packets_out = scapy_utils.rdpcap(f"{prefix}-{direction}-out.pcap")
        assert len(packets_in) == link["packets_offered"]
        assert len(packets_out) == link["packets_delivered"]
        first = IP(bytes(packets_in[0]))
        assert (first.src, first[UDP].sport) == src
        assert (first.dst, first[UDP].dport) == dst
        in_bytes = sum(len(bytes(p[UDP].payload)) for p in map(lambda p: IP(bytes(p)),
                                                                packets_in))
        assert in_bytes == link["bytes_offered"]
        times = [float(p.time) for p in packets_out]
        assert times == sorted(times)
        assert times[-1] <= r["simulated_s"]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed "
                    "(CI installs it: apt-get install tshark)")
def test_pcap_readable_by_tshark_as_quic(tmp_path: Path) -> None:
    prefix = str(tmp_path / "cap")
    r = run_scenario(_scenario(duration_s=1), RunOptions(pcap_prefix=prefix))
    path = f"{prefix}-uplink-in.pcap"
    out = subprocess.run(
        ["tshark", "-r", path, "-d", "udp.port==4433,quic", "-T", "fields",
         "-e", "ip.src", "-e", "udp.dstport", "-e", "quic.header_form"],
        capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert len(out) == r["links"]["uplink"]["packets_offered"]
    src, dport, form = out[0].split("\t")
    assert (src, dport) == ("10.0.0.1", "4433")
    assert form == "1"  # the first packet is a long-header Initial


def test_probe_counts_and_exact_spacing() -> None:
    sc = parse_scenario({"name": "p", "duration_s": 1,
                         "link": {"delay_ms": 5, "rate_kbps": 1000}})
    r = run_probe(sc, packets=500, rate_pps=50, size_bytes=500)
    up = r["links"]["uplink"]
    assert up["packets_offered"] == up["packets_delivered"] == 500
    # 500 bytes at 1000 kbit/s = 4 ms on the wire, plus 5 ms: every packet takes 9 ms
    assert up["delay_ms"]["p50"] == up["delay_ms"]["p99"] == pytest.approx(9.0, abs=1e-3)
    with pytest.raises(LocalProtocolError):
        run_probe(sc, packets=0, rate_pps=1, size_bytes=100)
    with pytest.raises(LocalProtocolError):
        run_probe(sc, packets=1, rate_pps=1, size_bytes=70_000)


def test_two_clients_one_server() -> None:
    client_qc, server_qc = simulation_quic_configs()
    cfg = SessionConfig(shared_clock=True)
    server = ServerEndpoint(server_qc, config=cfg)
    sim = Simulator()
    sim.add_endpoint(SERVER_ADDR, server)
    clients = []
    for i, delay in enumerate((10.0, 80.0)):
        addr = (f"10.0.1.{i + 1}", 5000 + i)
        client = Session(client_qc, config=cfg)
        sim.add_endpoint(addr, client)
        sim.connect(addr, SERVER_ADDR,
                    Link(LinkConfig(delay_ms=delay), rng=random.Random(i)),
                    Link(LinkConfig(delay_ms=delay), rng=random.Random(i + 10)))
        client.connect(SERVER_ADDR, now=0.0)
        clients.append(client)
    sim.run(2.0)
    assert len(server.sessions) == 2
    for client in clients:
        events = []
        while (ev := client.next_event()) is not None:
            events.append(ev)
        assert any(isinstance(e, SessionReady) for e in events)
    # the far client's handshake took longer: its RTT estimate says so
    assert clients[1].stats()["rtt_ms"]["min"] > clients[0].stats()["rtt_ms"]["min"] + 100


class _StuckEndpoint:
    """Its timer is always now: the engine must notice instead of spinning forever."""

    def receive_datagram(self, data: bytes, addr: tuple[str, int], *, now: float) -> None:
        pass

    def handle_timer(self, *, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return 0.5

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        return []


def test_stuck_clock_is_reported() -> None:
    sim = Simulator()
    sim.add_endpoint(("10.0.0.9", 1), _StuckEndpoint())
    with pytest.raises(SimulationStuckError, match="stuck"):
        sim.run(1.0)


def test_engine_rejects_misuse() -> None:
    sim = Simulator()
    sim.add_endpoint(("10.0.0.9", 1), _StuckEndpoint())
    with pytest.raises(LocalProtocolError):
        sim.add_endpoint(("10.0.0.9", 1), _StuckEndpoint())
    with pytest.raises(LocalProtocolError):
        sim.run(-1.0)
    with pytest.raises(LocalProtocolError):
        sim.link(("a", 1), ("b", 2))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


SCENARIO_TOML = """
name = "cli"
duration_s = 2
seed = 3
[link]
delay_ms = 15
rate_kbps = 3000
loss = { model = "bernoulli", rate = 0.02 }
[traffic.up]
audio = { bitrate_kbps = 32, deadline_ms = 150 }
"""


def test_cli_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SCENARIO_TOML)
    assert main(["netsim", "run", str(path), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "cli"
    assert out["realtime_factor"] > 1
    assert out["channels"]["up"]["audio"]["sent"] > 0
    assert main(["netsim", "run", str(path), "--json", "--quiet", "--seed", "9"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 9


def test_cli_run_table_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SCENARIO_TOML)
    assert main(["netsim", "run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "uplink" in out
    assert "up audio" in out
    assert "realtime factor" in out


def test_cli_probe_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SCENARIO_TOML)
    assert main(["netsim", "probe", str(path), "--packets", "2000", "--rate", "200",
                 "--size", "300", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    up = out["links"]["uplink"]
    assert up["packets_offered"] == 2000
    assert up["lost_by_model"] + up["packets_delivered"] == 2000


def test_cli_bad_scenario_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SCENARIO_TOML.replace("delay_ms = 15", "delay_ms = -1"))
    assert main(["netsim", "run", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    assert "delay_ms" in err


REPO = Path(__file__).resolve().parents[1]


def test_replay_is_identical_across_processes() -> None:
    """Two processes with different hash seeds (so different memory layouts) give the same
    JSON for a lossy scenario with several streams: no set order, certificate size or
    signature length leaks into the run."""
    import os
    import sys

    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run(
            [sys.executable, "-m", "edgewire.cli.main", "netsim", "run",
             str(REPO / "scenarios" / "bursty-loss.toml"), "--json", "--quiet"],
            capture_output=True, text=True, env=env, timeout=300, check=True)
        result = json.loads(proc.stdout)
        for key in ("wall_s", "realtime_factor"):
            result.pop(key)
        outs.append(result)
    assert outs[0] == outs[1]
    assert outs[0]["links"]["uplink"]["lost_by_model"] > 0
    assert len(outs[0]["channels"]["down"]) >= 2
