"""Delayed ACKs (``SessionConfig.ack_delay``): an ACK waits for a packet going the other
way, a second packet makes it due within 1 ms, and nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest
from aioquic import tls

from edgewire.errors import LocalProtocolError
from edgewire.netsim.engine import Simulator
from edgewire.netsim.nodes import ServerEndpoint
from edgewire.netsim.run import CLIENT_ADDR, RunOptions, run_scenario
from edgewire.netsim.scenario import ScenarioError, parse_scenario
from edgewire.transport import Session, SessionConfig
from tests.helpers import simulated_pair


@pytest.mark.parametrize("bad", [0.0, 0.0009, 0.026, 1.0])
def test_ack_delay_outside_what_quic_advertises_is_refused(bad: float) -> None:
    with pytest.raises(LocalProtocolError, match="ack_delay"):
        SessionConfig(ack_delay=bad)


def test_scenario_key_is_checked() -> None:
    with pytest.raises(ScenarioError, match="ack_delay_ms"):
        parse_scenario({"name": "x", "duration_s": 1, "transport": {"ack_delay_ms": 40}})
    sc = parse_scenario({"name": "x", "duration_s": 1, "transport": {"ack_delay_ms": 5}})
    assert sc.transport.ack_delay_ms == 5.0


def _pair(ack_delay: float) -> tuple[Simulator, Session, ServerEndpoint]:
    return simulated_pair(SessionConfig(shared_clock=True, ack_delay=ack_delay))


def _ack_at(session: Session) -> float | None:
    at: float | None = session.quic._spaces[tls.Epoch.ONE_RTT].ack_at
    return at


def test_first_packet_waits_second_makes_the_ack_due() -> None:
    sim, client, server = _pair(0.025)
    sim.run(1.0)  # handshake and hello done, everything acknowledged
    (srv,) = server.sessions.values()
    assert _ack_at(srv) is None
    now = sim.now
    client.quic.send_datagram_frame(b"one")
    first = client.datagrams_to_send(now=now)
    client.quic.send_datagram_frame(b"two")
    second = client.datagrams_to_send(now=now + 0.002)
    assert len(first) == len(second) == 1
    srv.receive_datagram(first[0][0], CLIENT_ADDR, now=now + 0.010)
    assert _ack_at(srv) == pytest.approx(now + 0.010 + 0.025)
    srv.receive_datagram(second[0][0], CLIENT_ADDR, now=now + 0.012)
    assert _ack_at(srv) == pytest.approx(now + 0.012 + 0.001)


def test_aioquic_behaviour_at_one_millisecond() -> None:
    sim, client, server = _pair(0.001)
    sim.run(1.0)
    (srv,) = server.sessions.values()
    now = sim.now
    client.quic.send_datagram_frame(b"one")
    ((packet, _),) = client.datagrams_to_send(now=now)
    srv.receive_datagram(packet, CLIENT_ADDR, now=now + 0.010)
    assert _ack_at(srv) == pytest.approx(now + 0.011)


def _call(ack_delay_ms: float, traffic: dict[str, Any], cc: str = "edgewire") -> dict[str, Any]:
    sc = parse_scenario({
        "name": "ack", "duration_s": 10, "seed": 4,
        "link": {"delay_ms": 20, "rate_kbps": 10000, "queue_packets": 200},
        "transport": {"ack_delay_ms": ack_delay_ms, "cc": cc},
        "traffic": traffic,
    })
    return run_scenario(sc, RunOptions())


def test_two_way_call_piggybacks_acks() -> None:
    traffic = {"up": {"audio": {"bitrate_kbps": 32}}, "down": {"audio": {"bitrate_kbps": 32}}}
    delayed = _call(25, traffic)
    prompt = _call(1, traffic)
    for result in (delayed, prompt):
        for side in ("up", "down"):
            assert result["channels"][side]["audio"]["on_time_ratio"] == 1.0
    sent = sum(delayed["links"][d]["packets_offered"] for d in ("uplink", "downlink"))
    sent_prompt = sum(prompt["links"][d]["packets_offered"] for d in ("uplink", "downlink"))
    # one packet per frame instead of a frame and an ACK-only packet (both runs also
    # carry the same bandwidth feedback)
    assert sent < 0.75 * sent_prompt


def test_bulk_flow_is_acknowledged_as_promptly() -> None:
    traffic = {"up": {"embeddings": {"rate_per_s": 200, "dim": 768, "batch": 16}}}
    # Reno's window grows per ACKed byte: ACKs that came late or in too few batches
    # would show as a slower transfer
    delayed = _call(25, traffic, "reno")
    prompt = _call(1, traffic, "reno")
    got = delayed["channels"]["up"]["embeddings"]["goodput_kbps"]
    got_prompt = prompt["channels"]["up"]["embeddings"]["goodput_kbps"]
    assert got_prompt > 5000  # the flow fills most of the 10 Mbit/s link
    assert got >= 0.97 * got_prompt
