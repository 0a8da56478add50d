"""asyncio API over real loopback UDP sockets with TLS verification on."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest

import edgewire
from edgewire.aio import parse_url
from edgewire.cli.main import main
from edgewire.errors import (
    ConnectionClosedError,
    InsecureConnectionWarning,
    LocalProtocolError,
    QueueFullError,
)
from edgewire.transport import QoS, SessionConfig, TokenMessage, default_qos, quicstats
from edgewire.transport.bwe import BweConfig
from tests.helpers import CheckedNothingToSend


async def _echo_server(cert_pair: tuple[str, str], got: dict[str, list[object]]
                       ) -> edgewire.Server:
    async def handler(conn: edgewire.Connection) -> None:
        async def read(ch: edgewire.Channel) -> None:
            async for msg in ch:
                got.setdefault(ch.name, []).append(msg.payload)

        tasks = [asyncio.create_task(read(await conn.accept())) for _ in range(4)]
        await asyncio.gather(*tasks)
        await conn.send_app_message({"done": {k: len(v) for k, v in got.items()}})
        await conn.wait_closed()

    return await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                keyfile=cert_pair[1])


@pytest.mark.asyncio
async def test_four_channels_over_loopback(cert_pair: tuple[str, str]) -> None:
    got: dict[str, list[object]] = {}
    server = await _echo_server(cert_pair, got)
    port = server.address[1]
    array = np.random.default_rng(1).standard_normal((8, 768)).astype(np.float32)
    # 20 video frames of 30 kB in 0.1 s are 48 Mbit/s: a loopback link carries them, but
    # an estimate starting at 300 kbit/s would (rightly) let most of them expire. A start
    # far above what the receiving Python process can take (100 Mbit/s here) loses
    # packets in its socket buffer until the first feedback comes back (docs/BWE.md).
    # The cap keeps it under what that process takes (about 35 Mbit/s): the delivery
    # estimator climbs to 65-100 Mbit/s on loopback, and on a loaded machine 1 run in ~40
    # lost 3.5 % of its packets in the socket buffer, the last video frames among them,
    # which nothing after them could reveal to be NACKed
    fast = SessionConfig(bwe=BweConfig(start_bps=20_000_000, max_bps=30_000_000))
    # This test checks that all four channels carry their data intact over real sockets.
    # Client and server share one event loop here, and on a loaded CI machine that loop can
    # stall for longer than the default 150 ms audio deadline, so the media channels get a
    # deadline no stall reaches; deadline expiry itself is tested in virtual time.
    patient = 30_000.0
    async with edgewire.connect(f"edgewire://localhost:{port}", cafile=cert_pair[0],
                                config=fast) as conn:
        audio = await conn.channel(
            "audio", qos=default_qos("audio").with_(deadline_ms=patient))
        video = await conn.channel(
            "video", qos=default_qos("video").with_(deadline_ms=patient))
        tokens = await conn.channel("tokens")
        emb = await conn.channel("embeddings")
        for i in range(20):
            await audio.send(bytes([i]) * 80)
            await video.send(bytes([i]) * 30_000, keyframe=i == 0)
            await tokens.send(TokenMessage(ids=(i,), text=str(i)))
            await emb.send(array * i)
            await asyncio.sleep(0.005)
        for ch in (audio, video, tokens, emb):
            await ch.drain()
            await ch.close()
        report = await asyncio.wait_for(conn.recv_app_message(), 10)
        assert conn.stats()["rtt_ms"]["smoothed"] is not None
    server.close()
    await server.wait_closed()
    assert report == {"done": {"audio": 20, "video": 20, "tokens": 20, "embeddings": 20}}
    assert [t.ids[0] for t in got["tokens"]] == list(range(20))  # type: ignore[attr-defined]
    for i, received in enumerate(got["embeddings"]):
        assert np.array_equal(received, array * i)  # type: ignore[arg-type]
    assert got["video"][3] == bytes([3]) * 30_000


@pytest.mark.asyncio
async def test_idle_send_shortcut_is_exact_over_loopback(
        cert_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Sessions skip asking aioquic for datagrams when its state shows nothing to send
    # (SessionConfig.skip_idle_sends, on by default). Over real sockets and a real clock,
    # every such answer is checked here against aioquic itself, on both ends
    checked = CheckedNothingToSend()
    monkeypatch.setattr(quicstats, "nothing_to_send", checked)
    assert SessionConfig().skip_idle_sends
    got: dict[str, list[object]] = {}
    server = await _echo_server(cert_pair, got)
    port = server.address[1]
    cfg = SessionConfig(bwe=BweConfig(start_bps=20_000_000, max_bps=30_000_000))
    patient = 30_000.0
    async with edgewire.connect(f"edgewire://localhost:{port}", cafile=cert_pair[0],
                                config=cfg) as conn:
        channels = [await conn.channel(kind, qos=default_qos(kind).with_(deadline_ms=patient))
                    for kind in ("audio", "video")]
        channels += [await conn.channel("tokens"), await conn.channel("embeddings")]
        audio, video, tokens, emb = channels
        for i in range(30):
            await audio.send(bytes([i]) * 80)
            await video.send(bytes([i]) * 20_000, keyframe=i == 0)
            await tokens.send(TokenMessage(ids=(i,), text=str(i)))
            await emb.send(np.full(256, i, dtype=np.float32))
            await asyncio.sleep(0.01)
        for ch in channels:
            await ch.drain()
            await ch.close()
        report = await asyncio.wait_for(conn.recv_app_message(), 10)
    server.close()
    await server.wait_closed()
    assert report == {"done": {"audio": 30, "video": 30, "tokens": 30, "embeddings": 30}}
    assert checked.wrong == []
    assert checked.skips > 50  # the shortcut was taken, and every time rightly


@pytest.mark.asyncio
async def test_untrusted_certificate_is_refused(cert_pair: tuple[str, str]) -> None:
    server = await _echo_server(cert_pair, {})
    port = server.address[1]
    with pytest.raises(ConnectionClosedError, match="certificate"):
        async with edgewire.connect(f"localhost:{port}", handshake_timeout=5):
            pass
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_insecure_warns_and_connects(cert_pair: tuple[str, str]) -> None:
    server = await _echo_server(cert_pair, {})
    port = server.address[1]
    with pytest.warns(InsecureConnectionWarning):
        async with edgewire.connect(f"127.0.0.1:{port}", insecure=True) as conn:
            assert conn.ready
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_reliable_send_waits_for_room(cert_pair: tuple[str, str]) -> None:
    got: dict[str, list[object]] = {}

    async def handler(conn: edgewire.Connection) -> None:
        async def read(ch: edgewire.Channel, key: str) -> None:
            async for msg in ch:
                got.setdefault(key, []).append(msg.payload)

        first = asyncio.create_task(read(await conn.accept(), "e"))
        await read(await conn.accept(), "t")
        await first

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1])
    qos = QoS(priority=3, deadline_ms=None, reliable=True, max_queue_bytes=300_000,
              max_message_bytes=1 << 20)
    async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert_pair[0]) as conn:
        ch = await conn.channel("embeddings", qos=qos)
        block = np.ones(50_000, dtype=np.float32)  # 200 kB: two do not fit the queue
        ch.send_nowait(block)
        with pytest.raises(QueueFullError):
            ch.send_nowait(block)
        for _ in range(10):
            await ch.send(block)  # waits instead of raising
        await ch.drain()
        await ch.close()
        # token messages: the queue's check must use the encoded size, not a guess
        tok = await conn.channel("tokens", qos=QoS(priority=1, deadline_ms=None, reliable=True,
                                                   max_queue_bytes=2000,
                                                   max_message_bytes=2000))
        for i in range(200):
            await tok.send([70000 + i] * 150)  # ~750 bytes each: at most two fit
        await tok.drain()
        await tok.close()
        for _ in range(200):
            if len(got.get("e", [])) == 11 and len(got.get("t", [])) == 200:
                break
            await asyncio.sleep(0.01)
    server.close()
    await server.wait_closed()
    assert len(got["e"]) == 11
    assert [m.ids[0] for m in got["t"]] == [70000 + i for i in range(200)]  # type: ignore[attr-defined]


def test_parse_url() -> None:
    assert parse_url("edgewire://example.org:5000") == ("example.org", 5000)
    assert parse_url("localhost") == ("localhost", 4433)
    assert parse_url("[::1]:7") == ("::1", 7)
    with pytest.raises(LocalProtocolError, match="scheme"):
        parse_url("https://x:1")
    with pytest.raises(LocalProtocolError, match="port"):
        parse_url("edgewire://x:99999")


def test_cli_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", "1.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    channels = result["channels"]
    assert set(channels) == {"audio", "video", "tokens", "embeddings"}
    for row in channels.values():
        assert row["delivered"] > 0
        assert set(row) >= {"sent", "delivered", "dropped", "latency_ms", "goodput_kbps"}
        assert set(row["latency_ms"]) == {"p50", "p95", "p99"}
    for kind in ("tokens", "embeddings"):
        assert channels[kind]["delivered"] == channels[kind]["sent"]
        assert channels[kind]["dropped"] == 0
    assert channels["audio"]["sent"] == 75  # 1.5 s of 20 ms frames


def test_cli_cert_writes_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--out", str(tmp_path), "--host", "edge.local"]) == 0
    assert (tmp_path / "cert.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0


@pytest.mark.asyncio
async def test_keyframe_request_over_loopback(cert_pair: tuple[str, str]) -> None:
    """The receiver of a video channel asks for a keyframe; the sender's callback runs."""
    asked: list[int] = []
    done = asyncio.Event()

    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for _msg in ch:
            assert ch.request_keyframe() is True
            assert ch.request_keyframe() is False  # within 200 ms of the first
            break
        await done.wait()

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1])
    async with edgewire.connect(f"edgewire://localhost:{server.address[1]}",
                                cafile=cert_pair[0]) as conn:
        video = await conn.channel("video")
        video.on_keyframe_request = lambda: asked.append(video.id)
        await video.send(b"\x00" * 500, keyframe=True)
        for _ in range(100):
            if asked:
                break
            await asyncio.sleep(0.01)
        done.set()
    server.close()
    await server.wait_closed()
    assert asked == [video.id]
    assert video.keyframe_requests == 1


@pytest.mark.asyncio
async def test_delivery_estimator_over_loopback(cert_pair: tuple[str, str]) -> None:
    # real sockets: the client's "delivery" estimator asks the server for a report every
    # 25 ms in the hello; the server's reports reach it and move the estimate off its start
    received: list[int] = []
    waits: list[float] = []

    async def handler(conn: edgewire.Connection) -> None:
        waits.append(conn.session._rate.recorder.max_wait)
        async for msg in await conn.accept():
            received.append(int(np.asarray(msg.payload).size))

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1])
    config = SessionConfig(estimator="delivery")
    async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert_pair[0],
                                config=config) as conn:
        ch = await conn.channel("embeddings")
        block = np.ones(25_000, dtype=np.float32)  # 100 kB
        for _ in range(20):
            await ch.send(block)
        await ch.drain()
        for _ in range(300):
            if len(received) == 20:
                break
            await asyncio.sleep(0.01)
        state = conn.bwe_state()
    server.close()
    await server.wait_closed()
    assert waits == [pytest.approx(0.025)]
    assert received == [25_000] * 20
    assert state["estimator"] == "delivery"
    assert state["feedback_reports"] > 0
    assert state["packets_received"] > 0
    assert state["delivered_bps"] is not None
    assert state["target_bps"] > BweConfig().start_bps  # startup grew it on real feedback


@pytest.mark.asyncio
async def test_serve_and_connect_on_sockets_the_caller_made(
        cert_pair: tuple[str, str]) -> None:
    # as a program would with sockets made inside network namespaces (kernel backend)
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind(("127.0.0.1", 0))
    got: list[int] = []

    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for msg in ch:
            got.append(msg.payload.ids[0])
        await conn.send_app_message("done")
        await conn.wait_closed()

    server = await edgewire.serve("ignored", 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1], sock=srv)
    try:
        async with edgewire.connect(f"edgewire://127.0.0.1:{srv.getsockname()[1]}",
                                    cafile=cert_pair[0], server_name="localhost",
                                    sock=cli) as conn:
            tokens = await conn.channel("tokens")
            for i in range(5):
                await tokens.send(TokenMessage(ids=(i,), text=str(i)))
            await tokens.close()
            assert await asyncio.wait_for(conn.recv_app_message(), 5) == "done"
    finally:
        server.close()
        await server.wait_closed()
    assert got == [0, 1, 2, 3, 4]
    # the connection used (and then closed) the socket it was given
    assert cli.fileno() == -1


@pytest.mark.asyncio
async def test_sockets_edgewire_cannot_use_are_clear_errors(
        cert_pair: tuple[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, pytest.raises(
            LocalProtocolError, match="UDP"):
        await edgewire.serve("", 0, lambda conn: asyncio.sleep(0), certfile=cert_pair[0],
                             keyfile=cert_pair[1], sock=tcp)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as v6, pytest.raises(
            LocalProtocolError, match="family"):
        async with edgewire.connect("edgewire://127.0.0.1:9", cafile=cert_pair[0],
                                    sock=v6):
            pass
