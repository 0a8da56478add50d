"""Edge/cloud failover on loopback: two real servers (edge, cloud) sharing one
MultiService, a device connected to both with ``connect_multi``; it streams audio and LLM
tokens to the edge, the edge goes dark (its socket closes), and the channels move to the
cloud. Prints the switch, the longest pause in audio delivery around it, and whether every
token arrived once and in order.

Run: python examples/edge_cloud_failover.py
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile

import edgewire
from edgewire.aio.multi import MultiChannel, MultiService
from edgewire.certs import write_self_signed
from edgewire.health.multipath import MultipathConfig

N_TOKENS = 100
FRAME_S = 0.02  # one 20 ms audio frame per token


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = (str(p) for p in write_self_signed(tmp))
        service = MultiService(config=MultipathConfig(failover_after_s=0.2))
        edge = await service.listen("edge", "127.0.0.1", 0, certfile=cert, keyfile=key)
        cloud = await service.listen("cloud", "127.0.0.1", 0, certfile=cert, keyfile=key)
        audio_at: list[float] = []
        tokens: list[int] = []
        loop = asyncio.get_running_loop()

        async def serve_device() -> None:
            conn = await service.accept()

            async def read(ch: MultiChannel) -> None:
                async for msg in ch:
                    if ch.kind.value == "audio":
                        audio_at.append(loop.time())
                    else:
                        tokens.append(msg.payload.ids[0])

            channels = [await conn.accept(), await conn.accept()]
            await asyncio.gather(*(read(ch) for ch in channels))

        server = asyncio.create_task(serve_device())
        async with edgewire.connect_multi(
                {"edge": f"127.0.0.1:{edge[1]}", "cloud": f"127.0.0.1:{cloud[1]}"},
                cafile=cert, server_name="localhost", failover_after_s=0.2) as conn:
            print(f"connected; active path {conn.active_path}, standby warm: "
                  f"{conn.paths['cloud']['ready']}")
            audio = await conn.channel("audio")
            llm = await conn.channel("tokens")
            dark_at = None
            for i in range(N_TOKENS):
                if i == N_TOKENS // 2:
                    service.stop_endpoint("edge")
                    dark_at = loop.time()
                    print(f"edge goes dark after {i} tokens")
                audio.send_nowait(bytes(160))
                await llm.send(edgewire.TokenMessage(ids=(i,)))
                await asyncio.sleep(FRAME_S)
            switch = await asyncio.wait_for(conn.next_switch(), 5.0)
            print(f"switched {switch.from_path} -> {switch.to_path} ({switch.reason}) "
                  f"{(switch.at_s - (dark_at or 0)) * 1000:.0f} ms after the edge went dark; "
                  f"{switch.resent} token messages resent on the cloud path")
            for _ in range(100):  # let the last messages land
                if len(tokens) >= N_TOKENS:
                    break
                await asyncio.sleep(0.02)
        server.cancel()
        service.close()
    gaps = [b - a for a, b in itertools.pairwise(audio_at)]
    print(f"longest pause in audio delivery: {max(gaps, default=0) * 1000:.0f} ms")
    intact = tokens == list(range(N_TOKENS))
    print(f"tokens received: {len(tokens)} of {N_TOKENS}, "
          f"{'complete, once each, in order' if intact else 'NOT intact'}")


if __name__ == "__main__":
    asyncio.run(main())
