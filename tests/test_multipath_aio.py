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


@pytest.mark.asyncio
async def test_a_sender_held_by_unacknowledged_messages_wakes_on_the_ack(
        cert_pair: tuple[str, str]) -> None:
    """With room for two unacknowledged messages, ``send`` waits on every third; the
    peer's acknowledgement is no event of its own, and the sender must wake on it (it
    used to wait for an unrelated event, and with none coming, for ever)."""
    cert, key = cert_pair
    cfg = MultipathConfig(max_unacked_messages=2)
    service = MultiService(config=cfg)
    edge = await service.listen("edge", "127.0.0.1", 0, certfile=cert, keyfile=key)
    received: list[int] = []

    async def serve_one() -> None:
        conn = await service.accept()
        ch = await conn.accept()
        async for msg in ch:
            received.append(msg.payload.ids[0])
            if msg.payload.end:
                break

    server_task = asyncio.create_task(serve_one())
    try:
        async with connect_multi({"edge": f"127.0.0.1:{edge[1]}"}, cafile=cert,
                                 server_name="localhost", multipath=cfg) as conn:
            tokens = await conn.channel("tokens")

            async def send_all() -> None:
                for i in range(20):
                    await tokens.send(TokenMessage(ids=[i], end=i == 19))

            await asyncio.wait_for(send_all(), 5.0)
            await asyncio.wait_for(server_task, 5.0)
        assert received == list(range(20))
    finally:
        server_task.cancel()
        service.close()


@pytest.mark.asyncio
async def test_the_hub_runs_a_due_deadline_while_it_is_serviced_all_the_time() -> None:
    """Under a steady stream of datagrams every read batch ends in ``service``; a timer
    re-armed by each call never ran, and a receiver's acknowledgements waited for a pause
    in the stream. A deadline already due runs within the stream now."""
    from edgewire.aio.multi import _Hub

    class Target:
        def __init__(self, due: float) -> None:
            self.due: float | None = due
            self.ran_at_call: int | None = None
            self.calls = 0

        def poll(self, *, now: float) -> None:
            self.calls += 1

        def handle_timer(self, *, now: float) -> None:
            if self.ran_at_call is None:
                self.ran_at_call = self.calls
            self.due = None

        def get_timer(self) -> float | None:
            return self.due

    loop = asyncio.get_running_loop()
    target = Target(due=loop.time() - 0.001)
    hub = _Hub(target, lambda: None)
    done = loop.create_future()

    def stream(left: int) -> None:  # one "batch" per loop iteration, 50 in a row
        hub.service()
        if left:
            loop.call_soon(stream, left - 1)
        else:
            done.set_result(None)

    loop.call_soon(stream, 50)
    await done
    hub.stop()
    assert target.ran_at_call is not None
    assert target.ran_at_call <= 1
