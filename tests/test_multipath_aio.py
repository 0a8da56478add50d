"""connect_multi over real loopback UDP with two real servers (edge, cloud), TLS verified:
the edge goes dark mid-stream, the channels move to the cloud, tokens stay complete and in
order in both directions."""

from __future__ import annotations

import asyncio

import pytest

from edgewire import connect_multi
from edgewire.aio.multi import MultiService
from edgewire.health.multipath import MultipathConfig
from edgewire.transport import TokenMessage

N_TOKENS = 120


@pytest.mark.asyncio
async def test_failover_keeps_tokens_complete_and_in_order(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    # generous silence threshold: a loaded test machine stalls the loop now and then
    service = MultiService(config=MultipathConfig(failover_after_s=0.3))
    edge = await service.listen("edge", "127.0.0.1", 0, certfile=cert, keyfile=key)
    cloud = await service.listen("cloud", "127.0.0.1", 0, certfile=cert, keyfile=key)
    up_received: list[int] = []

    async def serve_one() -> None:
        conn = await service.accept()
        ch_up = await conn.accept()
        down = await conn.channel("tokens", name="reply")
        async for msg in ch_up:
            assert isinstance(msg.payload, TokenMessage)
            up_received.append(msg.payload.ids[0])
            await down.send([msg.payload.ids[0] + 1000])
            if msg.payload.end:
                break

    server_task = asyncio.create_task(serve_one())
    try:
        async with connect_multi({"edge": f"edgewire://127.0.0.1:{edge[1]}",
                                  "cloud": f"edgewire://127.0.0.1:{cloud[1]}"},
                                 cafile=cert, server_name="localhost",
                                 failover_after_s=0.3) as conn:
            assert conn.active_path == "edge"
            assert all(row["ready"] for row in conn.paths.values())  # the standby is warm
            tokens = await conn.channel("tokens")
            down_received: list[int] = []

            async def read_replies() -> None:
                ch = await conn.accept()
                async for msg in ch:
                    down_received.append(msg.payload.ids[0])
                    if len(down_received) == N_TOKENS:
                        return

            reader = asyncio.create_task(read_replies())
            for i in range(N_TOKENS):
                if i == N_TOKENS // 2:
                    service.stop_endpoint("edge")  # the edge goes dark
                await tokens.send(TokenMessage(ids=(i,), end=i == N_TOKENS - 1))
                await asyncio.sleep(0.01)
            switch = await asyncio.wait_for(conn.next_switch(), 5.0)
            assert (switch.from_path, switch.to_path, switch.reason) == ("edge", "cloud",
                                                                         "silence")
            await asyncio.wait_for(reader, 10.0)
            await asyncio.wait_for(server_task, 10.0)
            assert conn.active_path == "cloud"
    finally:
        server_task.cancel()
        service.close()
    assert up_received == list(range(N_TOKENS))
    assert down_received == [i + 1000 for i in range(N_TOKENS)]


@pytest.mark.asyncio
async def test_decision_switches_and_rejects(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    service = MultiService()
    edge = await service.listen("edge", "127.0.0.1", 0, certfile=cert, keyfile=key)
    cloud = await service.listen("cloud", "127.0.0.1", 0, certfile=cert, keyfile=key)
    try:
        async with connect_multi({"edge": f"127.0.0.1:{edge[1]}",
                                  "cloud": f"127.0.0.1:{cloud[1]}"},
                                 cafile=cert, server_name="localhost") as conn:
            bad = conn.apply_decision({"action": "switch", "path": "moon"})
            assert not bad["ok"]
            assert "unknown path" in bad["reason"]
            assert not conn.apply_decision({"action": "explode"})["ok"]
            assert conn.active_path == "edge"
            ok = conn.apply_decision({"action": "switch", "path": "cloud"})
            assert ok["ok"]
            assert conn.active_path == "cloud"
            ev = await asyncio.wait_for(conn.next_switch(), 1.0)
            assert ev.reason == "decision"
    finally:
        service.close()
