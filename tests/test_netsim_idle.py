"""The simulator's shortcut for idle endpoints (``quicstats.nothing_to_send``): it must
answer "nothing" only when aioquic would build nothing, and change no outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aioquic import tls

from edgewire.netsim.engine import Simulator
from edgewire.netsim.nodes import ServerEndpoint
from edgewire.netsim.run import CLIENT_ADDR, RunOptions, run_scenario
from edgewire.netsim.scenario import load_scenario, parse_scenario
from edgewire.transport import Session, SessionConfig, quicstats
from edgewire.transport.bwe import BweConfig
from tests.helpers import CheckedNothingToSend, simulated_pair

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("wall_s", "realtime_factor")}
    out["engine"] = {k: v for k, v in out["engine"].items() if k != "idle_sends_skipped"}
    return out


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> CheckedNothingToSend:
    check = CheckedNothingToSend()
    monkeypatch.setattr(quicstats, "nothing_to_send", check)
    return check


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_identical_with_and_without_the_shortcut(
        path: Path, checked: CheckedNothingToSend) -> None:
    sc = load_scenario(path)
    fast = run_scenario(sc, RunOptions(skip_idle_sends=True))
    assert checked.wrong == []
    assert checked.skips == fast["engine"]["idle_sends_skipped"]
    slow = run_scenario(sc, RunOptions(skip_idle_sends=False))
    assert slow["engine"]["idle_sends_skipped"] == 0
    assert fast["engine"]["idle_sends_skipped"] > 100  # the shortcut was taken
    assert _strip(fast) == _strip(slow)


def test_lossy_streams_identical_with_and_without_the_shortcut(
        checked: CheckedNothingToSend) -> None:
    # heavy loss and a small queue: retransmitted stream data, MAX_STREAM_DATA and
    # MAX_STREAMS updates and PTO probes all happen while the shortcut is active
    sc = parse_scenario({
        "name": "lossy-streams", "duration_s": 8, "seed": 9,
        "link": {"delay_ms": 25, "jitter_ms": 3, "rate_kbps": 1500, "queue_packets": 20,
                 "loss": {"model": "gilbert", "rate": 0.08, "burst": 3}},
        "traffic": {"up": {"audio": {"bitrate_kbps": 32},
                           "embeddings": {"rate_per_s": 20, "dim": 768, "batch": 8}},
                    "down": {"tokens": {"rate_per_s": 200}, "audio": {"bitrate_kbps": 32}}},
    })
    fast = run_scenario(sc, RunOptions(skip_idle_sends=True))
    assert checked.wrong == []
    slow = run_scenario(sc, RunOptions(skip_idle_sends=False))
    assert fast["links"]["uplink"]["lost_by_model"] > 10
    assert fast["engine"]["idle_sends_skipped"] > 20
    assert _strip(fast) == _strip(slow)


def _pair(max_data: int | None = None) -> tuple[Simulator, Session, ServerEndpoint]:
    # raw QUIC streams of several MB: start the estimate high so they move in seconds
    cfg = SessionConfig(shared_clock=True, skip_idle_sends=True,
                        bwe=BweConfig(start_bps=50_000_000))
    return simulated_pair(cfg, max_data=max_data)


def test_nothing_to_send_follows_aioquic_state() -> None:
    sim, client, _ = _pair()
    quic = client.quic
    # before the handshake is confirmed: never certain
    assert not quicstats.nothing_to_send(quic, 0.0)
    sim.run(1.0)
    now = sim.now
    assert quicstats.nothing_to_send(quic, now)
    assert quic.datagrams_to_send(now=now) == []  # and aioquic agrees

    # each reason aioquic has to send makes the answer False, and aioquic then sends
    quic.send_datagram_frame(b"x")
    assert not quicstats.nothing_to_send(quic, now)
    assert quic.datagrams_to_send(now=now)
    assert quicstats.nothing_to_send(quic, now)

    sid = quic.get_next_available_stream_id(is_unidirectional=True)
    quic.send_stream_data(sid, b"hello")
    assert not quicstats.nothing_to_send(quic, now)
    assert quic.datagrams_to_send(now=now)

    quic.send_ping(7)
    assert not quicstats.nothing_to_send(quic, now)
    assert quic.datagrams_to_send(now=now)

    sim.run(2.0)  # the server's ACKs arrive; the client acknowledges what it got
    now = sim.now
    assert quicstats.nothing_to_send(quic, now)
    one_rtt = quic._spaces[tls.Epoch.ONE_RTT]
    one_rtt.ack_at = now  # an ACK is due now
    assert not quicstats.nothing_to_send(quic, now)
    one_rtt.ack_at = now + 0.001  # due later: nothing now
    assert quicstats.nothing_to_send(quic, now)
    one_rtt.ack_at = None

    quic.close(error_code=0, reason_phrase="bye")
    assert not quicstats.nothing_to_send(quic, now)
    assert quic.datagrams_to_send(now=now)


def test_receive_window_update_is_not_skipped(checked: CheckedNothingToSend) -> None:
    """A peer that fills half of a stream's receive window must get MAX_STREAM_DATA: the
    shortcut has to see that, though no application data waits."""
    sim, client, server = _pair()
    sim.run(1.0)
    session = server.sessions[CLIENT_ADDR]
    quic = client.quic
    sid = quic.get_next_available_stream_id(is_unidirectional=True)
    window = session.quic._configuration.max_stream_data
    quic.send_stream_data(sid, b"\0" * (window // 2 + 1000))
    sim.run(3.0)
    assert session.idle_sends_skipped > 0
    assert checked.wrong == []
    server_quic = session.quic
    stream = server_quic._streams[sid]
    # the server raised the window and told the client so
    assert stream.max_stream_data_local > window
    assert stream.max_stream_data_local_sent == stream.max_stream_data_local
    assert quic._streams[sid].max_stream_data_remote == stream.max_stream_data_local
    assert not session.closed


def test_connection_window_update_is_not_skipped(checked: CheckedNothingToSend) -> None:
    """Many streams, each under half of its own window, together over half of the
    connection's: only MAX_DATA is due, and the shortcut must see it."""
    sim, client, server = _pair(max_data=4 << 20)
    sim.run(1.0)
    session = server.sessions[CLIENT_ADDR]
    quic = client.quic
    conn_window = session.quic._local_max_data.value
    piece = min(session.quic._local_max_stream_data_uni // 2 - 1000, conn_window // 8)
    for _ in range(conn_window // (2 * piece) + 1):
        sid = quic.get_next_available_stream_id(is_unidirectional=True)
        quic.send_stream_data(sid, b"\0" * piece)
    sim.run(5.0)
    assert session.idle_sends_skipped > 0
    assert checked.wrong == []
    assert session.quic._local_max_data.value > conn_window
    assert session.quic._local_max_data.sent == session.quic._local_max_data.value
    assert not session.closed


def test_empty_pacing_bucket_is_left_to_aioquic() -> None:
    """With an empty pacing bucket aioquic arms a pacing timer even when it has nothing to
    send; the shortcut must not hide that change."""
    sim, client, _ = _pair()
    sim.run(1.0)
    now = sim.now
    quic = client.quic
    assert quicstats.nothing_to_send(quic, now)
    pacer = quic._loss._pacer
    pacer.packet_time = 0.002
    pacer.bucket_time = 0.0
    pacer.evaluation_time = now
    assert not quicstats.nothing_to_send(quic, now)
    timer = quic.get_timer()
    assert quic.datagrams_to_send(now=now) == []
    assert quic.get_timer() != timer  # the pacing timer aioquic armed
