"""The real-socket relay (``edgewire netsim relay``): link models applied in real time to
any UDP traffic, here edgewire's own client and server and plain UDP echo."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import edgewire
from edgewire.aio.relay import Relay, start_relay
from edgewire.cli.netsim_relay import (
    add_relay_parser,
    format_stats_line,
    parse_host_port,
    run_relay,
)
from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import BernoulliLoss, LinkConfig
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport import TokenMessage

LOOPBACK = "127.0.0.1"


class _Echo(asyncio.DatagramProtocol):
    """A UDP server that sends every datagram back (or only records it with echo=False)."""

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self.received: list[tuple[float, bytes]] = []
        self.sent = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)
            self.sent += 1


class _Client(asyncio.DatagramProtocol):
    """A UDP client recording what comes back."""

    def __init__(self) -> None:
        self.received: list[tuple[float, bytes]] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((asyncio.get_running_loop().time(), data))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


async def _udp_server(host: str = LOOPBACK, *, echo: bool = True
                      ) -> tuple[asyncio.DatagramTransport, _Echo]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return await loop.create_datagram_endpoint(lambda: _Echo(echo=echo),
                                               local_addr=(host, 0), family=family)


async def _udp_client(addr: tuple[str, int]) -> tuple[asyncio.DatagramTransport, _Client]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return await loop.create_datagram_endpoint(_Client, remote_addr=addr, family=family)


async def _until(condition: Any, limit_s: float = 3.0) -> None:
    """Poll ``condition()`` until true; fail the test after ``limit_s`` seconds."""
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"condition still false after {limit_s} s")


def _port(transport: asyncio.DatagramTransport) -> int:
    return int(transport.get_extra_info("sockname")[1])


def _scenario(link: dict[str, Any], **extra: Any) -> Any:
    return parse_scenario({"name": "relay-test", "duration_s": 10, "link": link, **extra})


def _have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------- edgewire


@pytest.mark.asyncio
async def test_edgewire_session_through_delaying_relay(cert_pair: tuple[str, str]) -> None:
    got: list[int] = []

    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for msg in ch:
            got.append(msg.payload.ids[0])
        await conn.send_app_message({"count": len(got)})
        await conn.wait_closed()

    server = await edgewire.serve(LOOPBACK, 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1])
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, server.address[1]),
                              _scenario({"delay_ms": 20}))
    loop = asyncio.get_running_loop()
    try:
        t_start = loop.time()
        async with edgewire.connect(f"edgewire://localhost:{relay.address[1]}",
                                    cafile=cert_pair[0]) as conn:
            handshake_s = loop.time() - t_start
            tokens = await conn.channel("tokens")
            for i in range(20):
                await tokens.send(TokenMessage(ids=(i,), text=str(i)))
            await tokens.drain()
            await tokens.close()
            report = await asyncio.wait_for(conn.recv_app_message(), 5)
            rtt = conn.stats()["rtt_ms"]
        # the CONNECTION_CLOSE is still crossing the relay: let the links drain
        await _until(lambda: relay._uplink.in_flight == relay._downlink.in_flight == 0)
        stats = relay.stats()
    finally:
        relay.close()
        await relay.wait_closed()
        server.close()
        await server.wait_closed()
    assert report == {"count": 20}
    assert got == list(range(20))
    # every packet waited 20 ms each way in the relay, so no RTT sample can be shorter
    assert rtt["min"] >= 40.0
    assert rtt["smoothed"] >= 40.0
    assert handshake_s >= 0.04
    assert stats["clients_total"] == 1
    for name in ("uplink", "downlink"):
        link = stats["links"][name]
        assert link["packets_delivered"] == link["packets_offered"] > 0
        assert link["delay_ms"]["p50"] == pytest.approx(20.0)
    assert stats["datagrams"]["to_upstream"] == stats["links"]["uplink"]["packets_delivered"]
    assert stats["datagrams"]["to_clients"] == stats["links"]["downlink"]["packets_delivered"]
    assert stats["late_ms"]["samples"] > 0
    assert stats["late_ms"]["p50"] is not None
    assert sum(stats["socket_errors"].values()) == 0


# ---------------------------------------------------------------------------- loss


@pytest.mark.asyncio
async def test_bernoulli_loss_matches_link_stats() -> None:
    n, p_up = 400, 0.5
    st, server = await _udp_server()
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, _port(st)), (
        LinkConfig(delay_ms=2, loss=BernoulliLoss(rate=p_up)),
        LinkConfig(delay_ms=2, loss=BernoulliLoss(rate=0.1))), seed=7)
    ct, client = await _udp_client(relay.address)
    try:
        for i in range(n):
            ct.sendto(i.to_bytes(4, "big") + bytes(60))
            if i % 20 == 19:
                await asyncio.sleep(0.002)  # stay well inside the loopback socket buffers
        up = relay._uplink
        down = relay._downlink
        await _until(lambda: relay.stats()["datagrams"]["from_clients"] == n
                     and up.in_flight == 0 and down.in_flight == 0
                     and len(server.received) == up.stats.packets_delivered
                     and len(client.received) == down.stats.packets_delivered)
        stats = relay.stats()
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
        st.close()
    up_s, down_s = stats["links"]["uplink"], stats["links"]["downlink"]
    # the endpoints saw exactly what the relay's links say they delivered
    assert up_s["packets_offered"] == n
    assert up_s["packets_delivered"] == len(server.received)
    assert up_s["lost_by_model"] == n - len(server.received)
    assert down_s["packets_offered"] == server.sent == len(server.received)
    assert down_s["packets_delivered"] == len(client.received)
    # observed loss within 5 binomial standard deviations of the model's rate
    lost = n - len(server.received)
    assert abs(lost - n * p_up) <= 5 * math.sqrt(n * p_up * (1 - p_up))
    m = len(server.received)
    lost_down = m - len(client.received)
    assert abs(lost_down - m * 0.1) <= 5 * math.sqrt(m * 0.1 * 0.9) + 1
    # order is kept (no reorder configured)
    ids = [int.from_bytes(d[:4], "big") for _, d in client.received]
    assert ids == sorted(ids)


@pytest.mark.asyncio
async def test_relay_sockets_get_the_deep_receive_buffer() -> None:
    """A burst the relay cannot read at once waits in its sockets (and its lateness is
    reported) instead of being dropped before the link model sees it: both of its sockets
    ask for edgewire's receive buffer, as every endpoint's does."""
    from edgewire.aio.udp import bind_udp

    def rcvbuf(sock: socket.socket) -> int:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    probe = await bind_udp(LOOPBACK, 0)
    granted = rcvbuf(probe)
    probe.close()
    st, _server = await _udp_server()
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, _port(st)),
                              (LinkConfig(), LinkConfig()), seed=1)
    ct, _client = await _udp_client(relay.address)
    try:
        ct.sendto(b"hello")  # makes the client's upstream socket
        await _until(lambda: any(c.socket is not None and c.socket.transport is not None
                                 for c in relay._clients.values()))
        listen = relay._listen.transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert rcvbuf(listen) == granted
        (client,) = relay._clients.values()
        upstream = client.socket.transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert rcvbuf(upstream) == granted
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
        st.close()


# ---------------------------------------------------------------------------- rate


@pytest.mark.asyncio
async def test_rate_limit_spreads_a_burst() -> None:
    count, size, rate_kbps = 40, 1000, 1000.0
    st, sink = await _udp_server(echo=False)
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, _port(st)),
                              _scenario({}, uplink={"rate_kbps": rate_kbps}))
    ct, _ = await _udp_client(relay.address)
    try:
        for i in range(count):
            ct.sendto(i.to_bytes(4, "big") + bytes(size - 4))
        await _until(lambda: len(sink.received) == count, limit_s=5)
        stats = relay.stats()
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
        st.close()
    times = [t for t, _ in sink.received]
    span = times[-1] - times[0]
    # count - 1 packets were serialized between the first and the last arrival
    kbps = (count - 1) * size * 8 / span / 1000.0
    assert 0.7 * rate_kbps <= kbps <= 1.3 * rate_kbps
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    expected_gap = size * 8 / (rate_kbps * 1000.0)  # 8 ms
    assert gaps[len(gaps) // 2] == pytest.approx(expected_gap, abs=0.003)
    assert stats["links"]["uplink"]["dropped_by_queue"] == 0
    assert stats["links"]["uplink"]["queue_delay_ms"]["p95"] > 200.0


# ---------------------------------------------------------------------------- events


@pytest.mark.asyncio
async def test_scenario_event_applies_at_its_time() -> None:
    scenario = parse_scenario({"name": "step", "duration_s": 1, "link": {"delay_ms": 0},
                               "events": [{"at_s": 0.25, "link": {"delay_ms": 30}}]})
    st, _ = await _udp_server()
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, _port(st)), scenario)
    ct, client = await _udp_client(relay.address)
    loop = asyncio.get_running_loop()

    async def ping(tag: bytes) -> float:
        before = len(client.received)
        sent = loop.time()
        ct.sendto(tag)
        await _until(lambda: len(client.received) > before)
        return client.received[-1][0] - sent

    try:
        early = await ping(b"early")
        await asyncio.sleep(0.3)
        late = await ping(b"late")
        stats = relay.stats()
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
        st.close()
    assert early < 0.03
    assert late >= 0.06
    assert stats["events_applied"] == 1


# ---------------------------------------------------------------------------- addresses


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:4433") == ("127.0.0.1", 4433)
    assert parse_host_port("localhost:0") == ("localhost", 0)
    assert parse_host_port("[::1]:5000") == ("::1", 5000)
    assert parse_host_port("[::]:7") == ("::", 7)
    assert parse_host_port(" edge-1.example.org:80 ") == ("edge-1.example.org", 80)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("localhost", "no port"),
    ("127.0.0.1:", "not a number"),
    ("127.0.0.1:http", "not a number"),
    ("127.0.0.1:-1", "not a number"),
    ("127.0.0.1:70000", "outside"),
    (":4433", "no host"),
    ("::1:4433", "brackets"),
    ("[::1]4433", "no port"),
    ("[::1:4433", "without"),
    ("[127.0.0.1]:4433", "not an IPv6"),
    ("host name:1", "whitespace"),
    ("ho/st:1", "not a host name"),
])
def test_parse_host_port_errors(text: str, reason: str) -> None:
    with pytest.raises(LocalProtocolError, match=reason):
        parse_host_port(text, what="--listen")


def test_upstream_port_zero_refused() -> None:
    with pytest.raises(LocalProtocolError, match=r"--upstream: port 0 is outside 1\.\.65535"):
        parse_host_port("127.0.0.1:0", what="--upstream", allow_port_zero=False)


def _relay_args(tmp_path: Path, *extra: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="edgewire netsim")
    add_relay_parser(parser.add_subparsers(dest="netsim"))
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "cli"\nduration_s = 5\n[link]\ndelay_ms = 5\n')
    return parser.parse_args(["relay", "--scenario", str(scenario), *extra])


def test_cli_bad_addresses_raise_clear_errors(tmp_path: Path) -> None:
    args = _relay_args(tmp_path, "--listen", "::1:9000", "--upstream", "127.0.0.1:4433")
    with pytest.raises(LocalProtocolError, match=r"--listen: .*brackets"):
        run_relay(args)
    args = _relay_args(tmp_path, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1")
    with pytest.raises(LocalProtocolError, match=r"--upstream: .*no port"):
        run_relay(args)
    args = _relay_args(tmp_path, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1",
                       "--stats-interval", "-1")
    with pytest.raises(LocalProtocolError, match="stats-interval"):
        run_relay(args)


@pytest.mark.asyncio
async def test_unresolvable_upstream_is_a_clear_error() -> None:
    with pytest.raises(LocalProtocolError, match="upstream: cannot resolve"):
        await start_relay((LOOPBACK, 0), ("no-such-host.invalid", 9), (LinkConfig(),
                                                                        LinkConfig()))


@pytest.mark.asyncio
async def test_listen_address_in_use_is_a_clear_error() -> None:
    st, _ = await _udp_server()
    try:
        with pytest.raises(LocalProtocolError, match="listen: cannot bind"):
            await start_relay((LOOPBACK, _port(st)), (LOOPBACK, 9), (LinkConfig(),
                                                                      LinkConfig()))
    finally:
        st.close()


@pytest.mark.asyncio
@pytest.mark.skipif(not _have_ipv6(), reason="no IPv6 loopback")
async def test_ipv6_listen_to_ipv4_upstream() -> None:
    st, _ = await _udp_server()
    relay = await start_relay(("::1", 0), (LOOPBACK, _port(st)),
                              (LinkConfig(delay_ms=1), LinkConfig(delay_ms=1)))
    ct, client = await _udp_client(("::1", relay.address[1]))
    try:
        for i in range(5):
            ct.sendto(bytes([i]))
        await _until(lambda: len(client.received) == 5)
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
        st.close()
    assert relay.address[0] == "::1"
    assert sorted(d for _, d in client.received) == [bytes([i]) for i in range(5)]


# ---------------------------------------------------------------------------- limits


@pytest.mark.asyncio
async def test_client_limit_and_idle_expiry() -> None:
    st, _ = await _udp_server()
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, _port(st)),
                              (LinkConfig(), LinkConfig()), max_clients=2,
                              idle_timeout_s=0.2)
    clients = [await _udp_client(relay.address) for _ in range(3)]
    try:
        clients[0][0].sendto(b"a")
        clients[1][0].sendto(b"b")
        await _until(lambda: len(clients[0][1].received) == len(clients[1][1].received) == 1)
        clients[2][0].sendto(b"c")  # a third address: refused while the table is full
        await asyncio.sleep(0.05)
        full = relay.stats()
        # silent for longer than the idle timeout: both are forgotten, sockets closed
        await _until(lambda: relay.stats()["clients"] == 0, limit_s=2)
        clients[2][0].sendto(b"c2")
        await _until(lambda: len(clients[2][1].received) == 1)
        after = relay.stats()
    finally:
        for t, _ in clients:
            t.close()
        relay.close()
        await relay.wait_closed()
        st.close()
    assert full["clients"] == 2
    assert full["clients_refused"] == 1
    assert [d for _, d in clients[2][1].received] == [b"c2"]
    assert after["clients_expired"] == 2
    assert after["clients_total"] == 3
    assert after["clients"] == 1
    assert relay.stats()["clients"] == 0  # close forgets everyone


@pytest.mark.asyncio
async def test_unreachable_upstream_is_counted_not_fatal() -> None:
    # a port nobody listens on: the kernel answers with ICMP port unreachable
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        dead_port = s.getsockname()[1]
    relay = await start_relay((LOOPBACK, 0), (LOOPBACK, dead_port), (LinkConfig(),
                                                                      LinkConfig()))
    ct, _ = await _udp_client(relay.address)
    try:
        for _ in range(5):
            ct.sendto(b"x")
            await asyncio.sleep(0.01)
        await _until(lambda: relay.stats()["socket_errors"]["refused"] > 0)
        stats = relay.stats()
    finally:
        ct.close()
        relay.close()
        await relay.wait_closed()
    assert stats["datagrams"]["from_clients"] == 5
    assert stats["clients"] == 1
    assert "relay" in format_stats_line(stats)


@pytest.mark.asyncio
async def test_relay_context_manager_closes_sockets() -> None:
    relay: Relay
    async with await start_relay((LOOPBACK, 0), (LOOPBACK, 9),
                                 (LinkConfig(), LinkConfig())) as relay:
        port = relay.address[1]
    assert relay.closed
    # the port is free again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, port))


# ---------------------------------------------------------------------------- command


def test_cli_runs_until_interrupted(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "cli"\nduration_s = 5\n[link]\ndelay_ms = 5\n')
    code = ("import argparse, sys\n"
            "from edgewire.cli.netsim_relay import add_relay_parser, run_relay\n"
            "p = argparse.ArgumentParser()\n"
            "add_relay_parser(p.add_subparsers(dest='netsim'))\n"
            "sys.exit(run_relay(p.parse_args(sys.argv[1:])))\n")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "relay", "--listen", "127.0.0.1:0", "--upstream",
         "127.0.0.1:9", "--scenario", str(scenario), "--stats-interval", "0.1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "listening on 127.0.0.1:" in first
        second = proc.stderr.readline()
        assert second.startswith("relay ")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert stats["clients"] == 0
    assert set(stats["links"]) == {"uplink", "downlink"}
    assert "Traceback" not in err


@pytest.mark.asyncio
async def test_a_simulated_receiving_process_is_refused() -> None:
    """netsim's reader model stands for the receiving program, which behind the relay is
    real: a scenario with one, in its links or in an event, is a clear error."""
    base = {"name": "r", "duration_s": 1, "link": {"delay_ms": 5}}
    for table in ({**base, "downlink": {"read_kbps": 1000}},
                  {**base, "events": [{"at_s": 0.5, "uplink": {"read_stall_ms": 2}}]}):
        with pytest.raises(LocalProtocolError, match="receiving process"):
            await start_relay(("127.0.0.1", 0), ("127.0.0.1", 9), parse_scenario(table))
