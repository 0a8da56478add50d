"""Endpoint logs written by edgewire endpoints: the session hook, netsim (per-channel loss from
the logs equals netsim's own count), real sockets (connect/serve), the demo and the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgewire
from edgewire.cli.main import main
from edgewire.errors import LocalProtocolError
from edgewire.netsim.run import RunOptions, run_scenario
from edgewire.netsim.scenario import load_scenario, parse_scenario
from edgewire.traces.endpoint_log import (
    EndpointLogWriter,
    compare_endpoint_logs,
    read_endpoint_log,
)
from edgewire.traces.problems import Problems
from edgewire.transport import TokenMessage, default_qos
from edgewire.transport.session import EndpointLog
from tests.helpers import Pair


class _Memory:
    """An EndpointLog that keeps its records in a list."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float, str, int, int]] = []

    def sent(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        self.records.append(("send", now, channel, seq, size_bytes))

    def received(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        self.records.append(("recv", now, channel, seq, size_bytes))


def _events(log: _Memory, event: str, channel: str) -> list[tuple[str, float, str, int, int]]:
    return [r for r in log.records if r[0] == event and r[2] == channel]


# ---------------------------------------------------------------------- the session hook

def test_session_logs_every_channel_message(pair: Pair) -> None:
    client_log: EndpointLog = _Memory()
    server_log = _Memory()
    assert pair.client.endpoint_log is None  # nothing is recorded unless asked
    pair.client.set_endpoint_log(client_log)
    assert pair.server is not None
    pair.server.set_endpoint_log(server_log)
    now = pair.now
    audio = pair.client.open_channel("audio", name="mic,left", now=now)
    video = pair.client.open_channel("video", now=now)
    tokens = pair.client.open_channel("tokens", now=now)
    emb = pair.client.open_channel("embeddings", now=now)
    pair.run(0.05)
    for i in range(5):
        now = pair.now
        pair.client.send(audio, bytes(80 + i), now=now)
        pair.client.send(video, bytes(3000), now=now, keyframe=i == 0)
        pair.client.send(tokens, TokenMessage(ids=(i,), text=str(i)), now=now)
        pair.client.send(emb, np.ones((2, 8), dtype=np.float32) * i, now=now)
        pair.run(0.02)
    pair.run(0.5)
    assert isinstance(client_log, _Memory)
    # a comma would break the log's columns: it becomes "_"; "#id" tells channels apart
    names = {"mic_left#0", "video#2", "tokens#4", "embeddings#6"}
    assert {r[2] for r in client_log.records} == names
    assert {r[2] for r in server_log.records} == names
    for name in names:
        sent = _events(client_log, "send", name)
        got = _events(server_log, "recv", name)
        assert [r[3] for r in sent] == list(range(5))  # frame ids / message indices
        assert [(r[3], r[4]) for r in got] == [(r[3], r[4]) for r in sent]
        assert all(g[1] - s[1] >= pair.delay for s, g in zip(sent, got, strict=True))
        assert not _events(client_log, "recv", name)
    assert [r[4] for r in _events(client_log, "send", "mic_left#0")] == [80, 81, 82, 83, 84]
    # what the session delivered is what the log says it received
    stats = pair.server.channel_stats(video)
    assert stats.delivered == 5
    assert stats.delivered_bytes == sum(r[4] for r in _events(server_log, "recv", "video#2"))
    pair.client.set_endpoint_log(None)
    before = len(client_log.records)
    pair.client.send(audio, bytes(80), now=pair.now)
    pair.run(0.1)
    assert len(client_log.records) == before


def test_late_and_refused_messages_are_not_logged(cert_pair: tuple[str, str]) -> None:
    p = Pair(*cert_pair, delay=0.1)  # 100 ms each way: a 50 ms audio deadline is missed
    p.run(1.0)
    assert p.server is not None
    client_log, server_log = _Memory(), _Memory()
    p.client.set_endpoint_log(client_log)
    p.server.set_endpoint_log(server_log)
    audio = p.client.open_channel("audio", qos=default_qos("audio").with_(deadline_ms=50),
                                  now=p.now)
    p.run(0.3)
    for _ in range(3):
        p.client.send(audio, bytes(80), now=p.now)
        p.run(0.02)
    with pytest.raises(LocalProtocolError):
        p.client.send(audio, "not bytes", now=p.now)  # refused: not recorded
    p.run(0.5)
    assert len(_events(client_log, "send", "audio#0")) == 3
    assert p.server.channel_stats(audio).late == 3
    assert _events(server_log, "recv", "audio#0") == []


def test_writer_round_trip_with_session_names(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    with EndpointLogWriter(path) as w:
        w.sent(now=1.5, channel="audio#0", seq=0, size_bytes=80)
        w.received(now=1.6, channel="tokens#1", seq=3, size_bytes=12)
    assert w.path == path
    assert list(read_endpoint_log(path, Problems())) == [
        (1.5, "send", "audio#0", 0, 80), (1.6, "recv", "tokens#1", 3, 12)]


# ---------------------------------------------------------------------- netsim

def _lossy(**over: Any) -> Any:
    base: dict[str, Any] = {
        "name": "lossy", "duration_s": 4, "seed": 5,
        "link": {"delay_ms": 20, "jitter_ms": 2, "rate_kbps": 4000, "queue_packets": 60,
                 "loss": {"model": "gilbert", "rate": 0.08, "burst": 2}},
        "transport": {"recovery": "none"},
        "traffic": {"up": {"audio": {"bitrate_kbps": 32}, "video": {"bitrate_kbps": 800}},
                    "down": {"audio": {"bitrate_kbps": 32}, "tokens": {"rate_per_s": 20}}},
    }
    base.update(over)
    return parse_scenario(base)


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items()
            if k not in ("wall_s", "realtime_factor", "endpoint_logs")}


def test_netsim_logs_give_netsims_per_channel_loss(tmp_path: Path) -> None:
    prefix = str(tmp_path / "logs" / "run")
    r = run_scenario(_lossy(), RunOptions(endpoint_log_prefix=prefix))
    client, server = f"{prefix}-client.log", f"{prefix}-server.log"
    assert r["endpoint_logs"] == [client, server]
    lost_somewhere = 0
    for direction, sender, receiver in (("up", client, server), ("down", server, client)):
        cmp = compare_endpoint_logs(sender, receiver)
        assert cmp["problems"] == []
        assert cmp["unmatched_received"] == 0
        rows = r["channels"][direction]
        assert {name.split("#")[0] for name in cmp["flows"]} == set(rows)
        for name, flow in cmp["flows"].items():
            row = rows[name.split("#")[0]]
            # the logs' counts are netsim's, exactly: sent = messages the application
            # handed over, received = messages delivered; what netsim calls dropped is
            # lost on the path, or unresolved when it was among the last messages sent
            # (no later message of the channel arrived to show it was gone)
            assert flow["sent"] == row["sent"]
            assert flow["received"] == row["delivered"]
            assert flow["lost_on_path"] + flow["unresolved_at_end"] == row["dropped"]
            lost_somewhere += flow["lost_on_path"]
            d = flow["delay_ms"]
            assert 20 - 3 * 2 <= d["min"] <= d["p50"] <= d["max"]  # 20 ms link, 2 ms jitter
    assert lost_somewhere > 10


def test_netsim_without_logs_is_unchanged_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = run_scenario(_lossy())
    assert "endpoint_logs" not in plain
    assert list(tmp_path.iterdir()) == []
    logged = run_scenario(_lossy(), RunOptions(endpoint_log_prefix=str(tmp_path / "x")))
    assert _strip(plain) == _strip(logged)  # recording changes nothing


def test_netsim_cli_and_trace_analyze(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "cli"\nduration_s = 3\nseed = 2\n'
        '[link]\ndelay_ms = 15\nrate_kbps = 4000\nloss = { model = "bernoulli", rate = 0.1 }\n'
        '[transport]\nrecovery = "none"\n'
        '[traffic.up]\naudio = { bitrate_kbps = 32 }\n'
        '[traffic.down]\ntokens = { rate_per_s = 20 }\n')
    prefix = tmp_path / "e"
    assert main(["netsim", "run", str(scenario), "--endpoint-log", str(prefix), "--json",
                 "--quiet"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert main(["trace", "analyze", f"{prefix}-client.log", f"{prefix}-server.log",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    (audio,) = got["flows"].values()
    row = run["channels"]["up"]["audio"]
    assert (audio["sent"], audio["received"]) == (row["sent"], row["delivered"])
    assert audio["lost_on_path"] > 0
    (tokens,) = got["reverse"]["flows"].values()  # the server's sends, in the client's log
    assert tokens["received"] == tokens["sent"] == run["channels"]["down"]["tokens"]["sent"]
    assert main(["trace", "analyze", f"{prefix}-client.log", f"{prefix}-server.log"]) == 0
    table = capsys.readouterr().out
    assert "forward   audio#0" in table
    assert "reverse   tokens#1" in table


def test_netsim_log_refused_for_multi_endpoint_scenarios() -> None:
    sc = load_scenario(Path(__file__).parent.parent / "scenarios" / "failover.toml")
    with pytest.raises(LocalProtocolError, match="multi-endpoint"):
        run_scenario(sc, RunOptions(endpoint_log_prefix="never"))


# ---------------------------------------------------------------------- real sockets

async def _reader_server(cert_pair: tuple[str, str], counts: dict[str, int],
                         **kw: Any) -> edgewire.Server:
    async def handler(conn: edgewire.Connection) -> None:
        async def read(ch: edgewire.Channel) -> None:
            async for _msg in ch:
                counts[ch.name] = counts.get(ch.name, 0) + 1

        await asyncio.gather(*[read(await conn.accept()) for _ in range(3)])
        await conn.send_app_message("done")
        await conn.wait_closed()

    return await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                keyfile=cert_pair[1], **kw)


async def _send_mix(conn: edgewire.Connection, n: int) -> None:
    # a deadline no stall of a shared CI loop reaches: this checks the logs, not deadlines
    audio = await conn.channel("audio", qos=default_qos("audio").with_(deadline_ms=30_000))
    tokens = await conn.channel("tokens")
    emb = await conn.channel("embeddings")
    for i in range(n):
        await audio.send(bytes([i]) * 100)
        await tokens.send(TokenMessage(ids=(i,), text=str(i)))
        await emb.send(np.full(64, i, dtype=np.float32))
        await asyncio.sleep(0.002)
    for ch in (audio, tokens, emb):
        await ch.drain()
        await ch.close()
    assert await asyncio.wait_for(conn.recv_app_message(), 10) == "done"


@pytest.mark.asyncio
async def test_connect_and_serve_write_logs_over_loopback(
        cert_pair: tuple[str, str], tmp_path: Path) -> None:
    counts: dict[str, int] = {}
    server = await _reader_server(cert_pair, counts,
                                  endpoint_log=tmp_path / "srv" / "server.log")
    try:
        async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert_pair[0],
                                    endpoint_log=tmp_path / "client.log") as conn:
            await _send_mix(conn, 30)
        # a second session gets a numbered file of its own
        async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert_pair[0],
                                    endpoint_log=tmp_path / "client2.log") as conn:
            await _send_mix(conn, 5)
    finally:
        server.close()
        await server.wait_closed()
    assert counts == {"audio": 35, "tokens": 35, "embeddings": 35}
    cmp = compare_endpoint_logs(tmp_path / "client.log", tmp_path / "srv" / "server.log")
    assert set(cmp["flows"]) == {"audio#0", "tokens#2", "embeddings#4"}
    assert cmp["problems"] == []
    assert cmp["unmatched_received"] == 0
    for flow in cmp["flows"].values():
        assert (flow["sent"], flow["received"], flow["lost_on_path"]) == (30, 30, 0)
        assert flow["loss_rate"] == 0.0
        d = flow["delay_ms"]
        # one host, one monotonic clock: delays are real and small on loopback
        assert 0.0 <= d["min"] <= d["mean"] <= d["max"] < 5000.0
    second = compare_endpoint_logs(tmp_path / "client2.log",
                                   tmp_path / "srv" / "server-2.log")
    assert {f["received"] for f in second["flows"].values()} == {5}


@pytest.mark.asyncio
async def test_caller_owned_log_objects(cert_pair: tuple[str, str], tmp_path: Path) -> None:
    counts: dict[str, int] = {}
    server_logs: list[_Memory] = []

    def per_session(n: int) -> _Memory:
        server_logs.append(_Memory())
        return server_logs[-1]

    server = await _reader_server(cert_pair, counts, endpoint_log=per_session)
    try:
        with EndpointLogWriter(tmp_path / "mine.log") as writer:
            async with edgewire.connect(f"localhost:{server.address[1]}",
                                        cafile=cert_pair[0], endpoint_log=writer) as conn:
                await _send_mix(conn, 4)
            assert writer.records == 12  # the caller's writer stays open for the caller
    finally:
        server.close()
        await server.wait_closed()
    (log,) = server_logs
    assert len([r for r in log.records if r[0] == "recv"]) == 12


@pytest.mark.asyncio
async def test_no_log_by_default(cert_pair: tuple[str, str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    counts: dict[str, int] = {}
    server = await _reader_server(cert_pair, counts)
    try:
        async with edgewire.connect(f"localhost:{server.address[1]}",
                                    cafile=cert_pair[0]) as conn:
            assert conn.session.endpoint_log is None
            await _send_mix(conn, 3)
    finally:
        server.close()
        await server.wait_closed()
    assert counts == {"audio": 3, "tokens": 3, "embeddings": 3}
    assert not any(True for _ in tmp_path.iterdir())  # noqa: ASYNC240  (once, at the end)


def test_demo_writes_both_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    assert main(["demo", "--seconds", "1", "--synthetic", "--json",
                 "--endpoint-log", str(logs)]) == 0
    demo = json.loads(capsys.readouterr().out)
    cmp = compare_endpoint_logs(logs / "client.log", logs / "server.log")
    by_kind = {name.split("#")[0]: flow for name, flow in cmp["flows"].items()}
    assert set(by_kind) == {"audio", "video", "tokens", "embeddings"}
    for kind, flow in by_kind.items():
        assert flow["sent"] == demo["channels"][kind]["sent"]
        assert flow["received"] == demo["channels"][kind]["delivered"]


def test_unwritable_log_is_a_clear_error(cert_pair: tuple[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def go() -> None:
        server = await _reader_server(cert_pair, {})
        try:
            async with edgewire.connect(f"localhost:{server.address[1]}",
                                        cafile=cert_pair[0],
                                        endpoint_log=blocker / "x.log"):
                pass
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(LocalProtocolError, match="cannot write"):
        asyncio.run(go())
