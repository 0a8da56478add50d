"""``edgewire bench throughput``: edgewire channels against raw aioquic on loopback.

Both sides of each pair run in this process over real loopback UDP, with the same QUIC
settings (certificate, flow-control windows, congestion control, datagram size), so the
ratio measures what edgewire adds: headers, scheduler, fragmentation, CBOR envelopes, the
asyncio adapter. A third contender runs the same edgewire channel under edgewire's own
congestion controller (the default of every session, pacing at the bandwidth estimate):
its ratio to raw aioquic's Reno is what a user gets on a fast path without choosing a
controller. In the stream mode a fourth, ``edgewire_hub``, sends the same arrays through
a multi-endpoint session (``connect_multi`` to a ``MultiService`` with an edge and a cloud
endpoint, the edge active, edgewire's controller): its ratio to the third is what the
multipath layer (its own sequence numbers, acknowledgements and resend buffer, probes of
the standby) costs. Rounds rotate the contenders so machine noise hits all alike.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve as quic_serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import DatagramFrameReceived, QuicEvent, StreamDataReceived

import edgewire
from edgewire.aio.multi import MultiService, connect_multi
from edgewire.certs import write_self_signed
from edgewire.errors import LocalProtocolError
from edgewire.transport import QoS, quicstats
from edgewire.transport.config import quic_configuration
from edgewire.transport.wire import HEADER_SIZE

__all__ = ["ThroughputConfig", "run_throughput"]

BENCH_ALPN = "edgewire-bench"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputConfig:
    """Parameters of the throughput benchmark."""

    seconds: float = 2.0
    """Measured duration of one run."""
    warmup_s: float = 0.5
    """Time before measuring starts (handshake done, congestion window opened)."""
    rounds: int = 3
    """Runs per contender; the median is reported."""
    video_frame_bytes: int = 32 * 1024
    """Size of one edgewire video frame (fragmented into datagrams)."""
    array_bytes: int = 256 * 1024
    """Size of one embeddings message (float32 array)."""


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0
        self.measuring = False

    def add(self, n: int) -> None:
        if self.measuring:
            self.bytes += n


class _RawServerProtocol(QuicConnectionProtocol):
    counter: _Counter

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            self.counter.add(len(event.data))
        elif isinstance(event, StreamDataReceived):
            self.counter.add(len(event.data))


#: The raw and the first edgewire contender run aioquic's Reno: edgewire's own controller
#: paces at the session's bandwidth estimate, which a raw aioquic connection has none of.
K_CC = "reno"
#: The third contender's controller: edgewire's own, the default of its sessions.
K_DEFAULT_CC = "edgewire"


def _raw_config(is_client: bool, cert: Path, key: Path) -> QuicConfiguration:
    # same windows and datagram size as edgewire's own configuration; only ALPN differs
    base = quic_configuration(is_client=is_client, cafile=str(cert) if is_client else None,
                              certfile=None if is_client else str(cert),
                              keyfile=None if is_client else str(key),
                              server_name="localhost" if is_client else None,
                              congestion_control=K_CC)
    base.alpn_protocols = [BENCH_ALPN]
    return base


async def _measure(
    counter: _Counter, cfg: ThroughputConfig,
    produce: Callable[[], Coroutine[Any, Any, None]], stop: asyncio.Event,
) -> float:
    """Run the producer through warm-up and the measured window; goodput in Mbit/s."""
    task = asyncio.create_task(produce())
    await asyncio.sleep(cfg.warmup_s)
    counter.measuring = True
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(cfg.seconds)
    counter.measuring = False
    mbps = counter.bytes * 8 / (loop.time() - start) / 1e6
    stop.set()
    await task
    return mbps


async def _raw(mode: str, cfg: ThroughputConfig, cert: Path, key: Path) -> float:
    counter = _Counter()

    def make(*args: Any, **kwargs: Any) -> _RawServerProtocol:
        proto = _RawServerProtocol(*args, **kwargs)
        proto.counter = counter
        return proto

    server = await quic_serve("127.0.0.1", 0, configuration=_raw_config(False, cert, key),
                              create_protocol=make)
    assert server._transport is not None
    port = server._transport.get_extra_info("sockname")[1]
    try:
        async with quic_connect("127.0.0.1", port,
                                configuration=_raw_config(True, cert, key)) as client:
            quic = client._quic
            stop = asyncio.Event()

            async def produce() -> None:
                if mode == "datagram":
                    payload = bytes(quicstats.max_datagram_payload(quic))
                    while not stop.is_set():
                        # keep aioquic's unbounded queue short, as an application must
                        while quicstats.pending_datagram_count(quic) < 64:
                            quic.send_datagram_frame(payload)
                        client.transmit()
                        await asyncio.sleep(0)
                else:
                    sid = quic.get_next_available_stream_id(is_unidirectional=True)
                    chunk = bytes(cfg.array_bytes)
                    while not stop.is_set():
                        if quicstats.unsent_stream_bytes(quic, sid) < 4 * cfg.array_bytes:
                            quic.send_stream_data(sid, chunk)
                            client.transmit()
                        await asyncio.sleep(0)

            mbps = await _measure(counter, cfg, produce, stop)
    finally:
        server.close()
    return mbps


async def _edgewire(mode: str, cfg: ThroughputConfig, cert: Path, key: Path,
                    cc: str = K_CC) -> float:
    counter = _Counter()

    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for msg in ch:
            payload = msg.payload
            counter.add(payload.nbytes if isinstance(payload, np.ndarray) else len(payload))

    server = await edgewire.serve("127.0.0.1", 0, handler, congestion_control=cc,
                                  certfile=str(cert),
                                  keyfile=str(key))
    port = server.address[1]
    try:
        async with edgewire.connect(f"localhost:{port}", cafile=str(cert),
                                    congestion_control=cc) as conn:
            stop = asyncio.Event()
            if mode == "datagram":
                # a long deadline: this measures throughput, not timeliness
                ch = await conn.channel("video", qos=QoS(
                    priority=2, deadline_ms=5000.0, reliable=False,
                    max_queue_bytes=8 << 20, max_message_bytes=4 << 20))
                room = quicstats.max_datagram_payload(conn.session.quic) - HEADER_SIZE
                frame = bytes(max(room, cfg.video_frame_bytes // room * room))
            else:
                ch = await conn.channel("embeddings")
                array = np.zeros(cfg.array_bytes // 4, dtype=np.float32)

            async def produce() -> None:
                while not stop.is_set():
                    if mode == "datagram":
                        ch.send_nowait(frame)
                        await ch.drain(low_water_bytes=2 * len(frame))
                    else:
                        await ch.send(array)
                        await ch.drain(low_water_bytes=4 * cfg.array_bytes)

            mbps = await _measure(counter, cfg, produce, stop)
    finally:
        server.close()
        await server.wait_closed()
    return mbps


Runner = Callable[[str, ThroughputConfig, Path, Path], Awaitable[float]]


async def _edgewire_default_cc(mode: str, cfg: ThroughputConfig, cert: Path,
                               key: Path) -> float:
    return await _edgewire(mode, cfg, cert, key, cc=K_DEFAULT_CC)


async def _edgewire_hub(mode: str, cfg: ThroughputConfig, cert: Path, key: Path) -> float:
    if mode != "stream":
        raise LocalProtocolError("the hub contender sends arrays on a stream channel only")
    counter = _Counter()
    service = MultiService()
    edge = await service.listen("edge", "127.0.0.1", 0, certfile=str(cert),
                                keyfile=str(key))
    cloud = await service.listen("cloud", "127.0.0.1", 0, certfile=str(cert),
                                 keyfile=str(key))

    async def serve_one() -> None:
        conn = await service.accept()
        ch = await conn.accept()
        async for msg in ch:
            counter.add(msg.payload.nbytes)

    server_task = asyncio.create_task(serve_one())
    try:
        async with connect_multi({"edge": f"127.0.0.1:{edge[1]}",
                                  "cloud": f"127.0.0.1:{cloud[1]}"},
                                 cafile=str(cert), server_name="localhost") as conn:
            ch = await conn.channel("embeddings")
            array = np.zeros(cfg.array_bytes // 4, dtype=np.float32)
            stop = asyncio.Event()

            async def produce() -> None:
                # send waits while the multipath layer holds its most unacknowledged
                # bytes; a turn of the loop between arrays lets the paths transmit
                while not stop.is_set():
                    await ch.send(array)
                    await asyncio.sleep(0)

            mbps = await _measure(counter, cfg, produce, stop)
    finally:
        server_task.cancel()
        service.close()
    return mbps


#: (name in the output, runner), in the order of the first round.
CONTENDERS: tuple[tuple[str, Runner], ...] = (
    ("aioquic", _raw), ("edgewire", _edgewire), ("edgewire_cc", _edgewire_default_cc))
#: Contenders of the stream mode only.
STREAM_CONTENDERS: tuple[tuple[str, Runner], ...] = (("edgewire_hub", _edgewire_hub),)


async def _run_all(cfg: ThroughputConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = write_self_signed(tmp)
        for mode in ("datagram", "stream"):
            contenders = CONTENDERS + (STREAM_CONTENDERS if mode == "stream" else ())
            runs: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for r in range(cfg.rounds):
                shift = r % len(contenders)
                for name, fn in contenders[shift:] + contenders[:shift]:
                    mbps = await fn(mode, cfg, cert, key)
                    runs[name].append(mbps)
                    progress(f"{mode} round {r + 1}/{cfg.rounds}: {name} {mbps:.1f} Mbit/s")
            raw = statistics.median(runs["aioquic"])
            ours = statistics.median(runs["edgewire"])
            own_cc = statistics.median(runs["edgewire_cc"])
            out[mode] = {
                "aioquic_mbps": round(raw, 2),
                "edgewire_mbps": round(ours, 2),
                "ratio": round(ours / raw, 3) if raw > 0 else None,
                "edgewire_cc_mbps": round(own_cc, 2),
                "edgewire_cc_ratio": round(own_cc / raw, 3) if raw > 0 else None,
                "runs": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
            }
            if runs.get("edgewire_hub"):
                hub = statistics.median(runs["edgewire_hub"])
                out[mode]["edgewire_hub_mbps"] = round(hub, 2)
                out[mode]["edgewire_hub_ratio"] = (round(hub / own_cc, 3) if own_cc > 0
                                                   else None)
    out["config"] = {"seconds": cfg.seconds, "rounds": cfg.rounds, "cc": K_CC,
                     "default_cc": K_DEFAULT_CC,
                     "video_frame_bytes": cfg.video_frame_bytes, "array_bytes": cfg.array_bytes}
    return out


def run_throughput(
    cfg: ThroughputConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"datagram": {...}, "stream": {...}, "config": {...}}``
    (per mode: each contender's median Mbit/s, the edgewire ÷ aioquic ratios, every run)."""
    return asyncio.run(_run_all(cfg, progress))
