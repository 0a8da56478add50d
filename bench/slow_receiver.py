"""A video channel sent at full speed to a receiving process that falls behind: packets
lost, goodput and estimate with the system's default socket receive buffer, with the
416 KiB Linux grants for edgewire's request under its default ``net.core.rmem_max``,
and with the one edgewire asks for (``edgewire.aio.udp.K_RECV_BUFFER``), in turn, in one
run.

The receiver is a second process (``edgewire.serve`` on loopback) whose reader spends
``--work-ms`` of its event loop on every 32 KiB frame, as an application running a model
on each frame would; the sender (``edgewire.connect``, edgewire's congestion controller)
sends frames as fast as its channel drains. A full receive buffer drops datagrams with no
queueing delay to show for it; a deeper one lets the wait show, and the delay-based
estimate answers it. What the buffer drops all the same, the receiver reports, and the
sender backs off (``receiver_drops``, ``receiver_backoffs``; docs/BWE.md, "A receiver
that falls behind").

Run: ``.venv/bin/python bench/slow_receiver.py [--rounds N] [--seconds S] [--work-ms W]
[--max-mbps M] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from typing import Any

import edgewire
import edgewire.aio.udp as udp
from edgewire.certs import write_self_signed
from edgewire.transport import QoS, quicstats
from edgewire.transport.bwe import BweConfig
from edgewire.transport.config import SessionConfig
from edgewire.transport.wire import HEADER_SIZE

#: Bytes of one video frame.
K_FRAME_BYTES = 32 * 1024
#: Linux grants a receive buffer of twice what is asked, up to twice
#: ``net.core.rmem_max`` (212,992 bytes by default): asking that much gives the 416 KiB
#: edgewire's own request is granted on a system with the default.
K_STOCK_REQUEST = 212_992


def _receiver(cert: str, key: str, recv_buffer: int, work_s: float, seconds: float,
              out: Any) -> None:
    """The receiving process: serve one connection, spend ``work_s`` on every frame."""
    udp.K_RECV_BUFFER = recv_buffer

    async def run() -> None:
        got = [0]

        async def handler(conn: edgewire.Connection) -> None:
            ch = await conn.accept()
            async for msg in ch:
                got[0] += len(msg.payload)
                end = time.perf_counter() + work_s
                while time.perf_counter() < end:
                    pass

        server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert, keyfile=key)
        out.put((server.address[1], server.udp.recv_buffer_bytes))
        await asyncio.sleep(seconds + 3.0)
        out.put(got[0])
        server.close()

    asyncio.run(run())


async def _send(port: int, seconds: float, cafile: str,
                max_bps: float | None) -> dict[str, float]:
    config = None if max_bps is None else SessionConfig(bwe=BweConfig(max_bps=max_bps))
    async with edgewire.connect(f"localhost:{port}", cafile=cafile, config=config) as conn:
        ch = await conn.channel("video", qos=QoS(
            priority=2, deadline_ms=5000.0, reliable=False, max_queue_bytes=8 << 20,
            max_message_bytes=4 << 20))
        room = quicstats.max_datagram_payload(conn.session.quic) - HEADER_SIZE
        frame = bytes(K_FRAME_BYTES // room * room)
        estimates: list[float] = []

        async def produce() -> None:
            while True:
                ch.send_nowait(frame)
                await ch.drain(low_water_bytes=2 * len(frame))

        task = asyncio.create_task(produce())
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(0.25)
            estimates.append(conn.session.bandwidth_estimate_bps)
        task.cancel()
        state = conn.session.bwe_state()
        lost = float(state.get("packets_lost") or 0)
        received = float(state.get("packets_received") or 0)
        return {"lost": lost, "received": received,
                "estimate_mbps": statistics.mean(estimates) / 1e6,
                "receiver_drops": float(state.get("receiver_drops") or 0),
                "receiver_backoffs": float(state.get("receiver_backoffs") or 0)}


def run_one(cert: str, key: str, recv_buffer: int, work_ms: float,
            seconds: float, max_bps: float | None = None) -> dict[str, float]:
    """One transfer; the receiver's buffer is ``recv_buffer`` (0: the system's), the
    sender's ceiling ``max_bps`` (None: ``BweConfig``'s)."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    proc = ctx.Process(
        target=_receiver, args=(cert, key, recv_buffer, work_ms / 1000.0, seconds, out))
    proc.start()
    try:
        port, buffer_bytes = out.get(timeout=30)
        sent = asyncio.run(_send(port, seconds, cert, max_bps))
        got = out.get(timeout=30)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    total = sent["lost"] + sent["received"]
    return {"loss_percent": 100.0 * sent["lost"] / total if total else 0.0,
            "goodput_mbps": got * 8 / seconds / 1e6,
            "estimate_mbps": sent["estimate_mbps"],
            "receiver_drops": sent["receiver_drops"],
            "receiver_backoffs": sent["receiver_backoffs"],
            "recv_buffer_bytes": float(buffer_bytes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--work-ms", type=float, default=5.0,
                        help="time the reader spends on each frame (default 5)")
    parser.add_argument("--max-mbps", type=float, default=None,
                        help="the sender's BweConfig.max_bps in Mbit/s (default: "
                             "BweConfig's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    max_bps = None if args.max_mbps is None else args.max_mbps * 1e6
    variants = {"system": 0, "416KiB": K_STOCK_REQUEST, "edgewire": udp.K_RECV_BUFFER}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = write_self_signed(tmp)
        for r in range(args.rounds):
            order = list(variants)[r % len(variants):] + list(variants)[:r % len(variants)]
            for name in order:
                row = run_one(str(cert), str(key), variants[name], args.work_ms, args.seconds,
                              max_bps)
                runs[name].append(row)
                print(f"round {r + 1}/{args.rounds} {name}: {row}", file=sys.stderr)
    out = {name: {k: round(statistics.median(row[k] for row in rows), 3) for k in rows[0]}
           for name, rows in runs.items()}
    result = {"params": {"rounds": args.rounds, "seconds": args.seconds,
                         "work_ms": args.work_ms, "frame_bytes": K_FRAME_BYTES,
                         "max_mbps": args.max_mbps},
              "median": out, "runs": runs}
    if args.json:
        print(json.dumps(result))
    else:
        for name, row in out.items():
            print(f"{name:<9} receive buffer {row['recv_buffer_bytes']:9.0f} B   loss "
                  f"{row['loss_percent']:6.2f} %   goodput {row['goodput_mbps']:6.1f} Mbit/s   "
                  f"estimate {row['estimate_mbps']:6.1f} Mbit/s   receiver drops "
                  f"{row['receiver_drops']:5.0f} ({row['receiver_backoffs']:.0f} backoffs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
