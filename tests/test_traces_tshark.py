"""edgewire.traces against independent oracles: tshark's RTP statistics on real ffmpeg
RTP traffic through netsim's relay, and netsim's own loss counts on its pcaps."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgewire.netsim.run import RunOptions, run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.traces.analyze import analyze_capture
from edgewire.traces.match import capture_packets, match_streams
from edgewire.traces.problems import Problems

SCENARIO = """name = "rtp-test"
duration_s = 30
seed = 11
[link]
delay_ms = 20
jitter_ms = 8
loss = { model = "gilbert", rate = 0.05, burst = 2 }
"""


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("tshark") is None
                    or shutil.which("dumpcap") is None,
                    reason="needs ffmpeg, tshark and dumpcap (CI installs ffmpeg and tshark)")
def test_rtp_figures_agree_with_tshark(tmp_path: Path) -> None:
    scen = tmp_path / "s.toml"
    scen.write_text(SCENARIO)
    relay_port, dst_port = _free_port(), _free_port()
    cap = tmp_path / "rtp.pcap"
    dump = subprocess.Popen(["dumpcap", "-P", "-i", "lo", "-f", f"udp dst port {dst_port}",
                             "-w", str(cap)], stderr=subprocess.PIPE, text=True)
    relay = subprocess.Popen([sys.executable, "-m", "edgewire.cli.main", "netsim", "relay",
                              "--listen", f"127.0.0.1:{relay_port}", "--upstream",
                              f"127.0.0.1:{dst_port}", "--scenario", str(scen),
                              "--stats-interval", "0"], stderr=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL)
    try:
        assert dump.stderr is not None
        deadline = time.monotonic() + 10
        while "Capturing on" not in dump.stderr.readline():
            assert time.monotonic() < deadline, "dumpcap did not start"
        time.sleep(1.0)  # the relay's socket
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                        "-i", "sine=frequency=440:sample_rate=8000:duration=5", "-c:a",
                        "pcm_mulaw", "-f", "rtp",
                        f"rtp://127.0.0.1:{relay_port}?pkt_size=172"],
                       check=True, timeout=30, capture_output=True)
        time.sleep(0.5)  # packets still in the emulated link
    finally:
        relay.send_signal(signal.SIGINT)
        dump.send_signal(signal.SIGINT)
        relay.wait(timeout=10)
        dump.wait(timeout=10)
        if dump.stderr is not None:
            dump.stderr.close()
    out = subprocess.run(["tshark", "-q", "-z", "rtp,streams", "-o", "rtp.heuristic_rtp:TRUE",
                          "-r", str(cap)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    rows = [ln.split() for ln in out.splitlines() if re.search(r"0x[0-9A-F]{8}", ln)]
    assert len(rows) == 1, out
    row = rows[0]
    i = next(k for k, c in enumerate(row) if c.startswith("0x"))
    ssrc, pkts, lost = int(row[i], 16), int(row[i + 2]), int(row[i + 3])
    max_delta, mean_jit, max_jit = float(row[i + 7]), float(row[i + 9]), float(row[i + 10])
    flows = [f for f in analyze_capture(cap).flows if f["kind"] == "rtp"]
    assert len(flows) == 1
    rtp = flows[0]["rtp"]
    assert rtp["ssrc"] == ssrc
    assert (rtp["packets"], rtp["lost"]) == (pkts, lost)
    assert lost > 0
    assert pkts > 100
    assert rtp["max_delta_ms"] == pytest.approx(max_delta, rel=0.01)
    assert rtp["jitter_ms_max"] == pytest.approx(max_jit, rel=0.01)
    assert rtp["jitter_ms_mean"] == pytest.approx(mean_jit, rel=0.01)


def test_netsim_pcap_round_trip(tmp_path: Path) -> None:
    sc = parse_scenario({"name": "rt", "duration_s": 3, "seed": 4,
                         "link": {"delay_ms": 15, "jitter_ms": 1, "rate_kbps": 3000,
                                  "loss": {"model": "gilbert", "rate": 0.04, "burst": 2}},
                         "traffic": {"up": {"audio": {"bitrate_kbps": 32},
                                            "video": {"bitrate_kbps": 800}}}})
    prefix = str(tmp_path / "cap")
    r = run_scenario(sc, RunOptions(pcap_prefix=prefix))
    up = r["links"]["uplink"]
    sent, got = f"{prefix}-uplink-in.pcap", f"{prefix}-uplink-out.pcap"
    a_in, a_out = analyze_capture(sent), analyze_capture(got)
    assert a_in.flows[0]["kind"] == "quic"
    assert a_in.flows[0]["packets"] == up["packets_offered"]
    assert a_out.flows[0]["packets"] == up["packets_delivered"]
    probs = Problems()
    path = match_streams(capture_packets(sent, probs), capture_packets(got, probs))
    (flow,) = path["flows"].values()
    lost = up["lost_by_model"] + up["lost_down"] + up["dropped_by_queue"]
    assert lost > 0
    # what was still in the link when the run stopped is unresolved, not lost; so is a
    # loss after the last packet that arrived: a capture cannot tell it from one in flight
    in_flight = up["packets_offered"] - up["packets_delivered"] - lost
    tail_lost = lost - flow["lost_on_path"]
    assert 0 <= tail_lost <= flow["unresolved_at_end"]
    assert flow["unresolved_at_end"] == in_flight + tail_lost
    assert flow["sent"] == up["packets_offered"]
    # netsim reports the mean burst length rounded to 4 decimals
    if tail_lost == 0:
        assert flow["burst_mean"] == pytest.approx(up["mean_burst_length"], abs=5e-5)
    else:  # the tail's losses are one burst more for netsim
        bursts = round(flow["lost_on_path"] / flow["burst_mean"])
        assert round(lost / up["mean_burst_length"]) == bursts + 1
    # 15 ms of propagation, 1 ms of jitter, then queueing at 3 Mbit/s
    assert 10.0 < flow["delay_ms"]["min"] < flow["delay_ms"]["p50"] < 40.0
