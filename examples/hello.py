"""A server and a client in one process: every channel kind, verification on.

Run: python examples/hello.py
"""

from __future__ import annotations

import asyncio
import tempfile

import numpy as np

import edgewire
from edgewire.certs import write_self_signed


async def handler(session: edgewire.Connection) -> None:
    async def read(channel: edgewire.Channel) -> None:
        async for msg in channel:
            payload = msg.payload
            if isinstance(payload, np.ndarray):
                what = f"array {payload.shape} {payload.dtype}"
            elif isinstance(payload, bytes):
                what = f"{len(payload)} bytes"
            else:
                what = f"tokens {payload.ids} {payload.text!r}"
            print(f"server got {channel.kind.value:<10} {msg.latency * 1000:6.2f} ms  {what}")

    readers = [asyncio.create_task(read(await session.accept())) for _ in range(4)]
    await asyncio.gather(*readers)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = write_self_signed(tmp)
        server = await edgewire.serve("127.0.0.1", 0, handler, certfile=str(cert),
                                      keyfile=str(key))
        port = server.address[1]
        async with edgewire.connect(f"edgewire://localhost:{port}", cafile=str(cert)) as s:
            audio = await s.channel("audio")
            video = await s.channel("video")
            tokens = await s.channel("tokens")
            vectors = await s.channel("embeddings")
            await audio.send(b"\x00" * 80)
            await video.send(bytes(20_000), keyframe=True)
            await tokens.send(edgewire.TokenMessage(ids=(791, 318), text=" the"))
            await vectors.send(np.ones((8, 768), np.float32))
            for ch in (audio, video, tokens, vectors):
                await ch.drain()
                await ch.close()
            await asyncio.sleep(0.3)
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
