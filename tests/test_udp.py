"""edgewire.aio.udp: batched reads, the bounded send backlog and close, on real sockets."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgewire
from edgewire.aio.udp import UdpEndpoint, bind_udp, open_udp, peer_address
from edgewire.errors import LocalProtocolError


class _Log:
    def __init__(self) -> None:
        self.events: list[object] = []
        self.closed = 0

    def datagram(self, data: bytes, addr: object) -> None:
        self.events.append(data)

    def batch_end(self) -> None:
        self.events.append("end")

    def on_closed(self) -> None:
        self.closed += 1


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind(("127.0.0.1", 0))
    return a, b


async def _until(predicate: Callable[[], bool], limit: float = 2.0) -> None:
    """Poll ``predicate`` while the loop runs the endpoint (its state has no event)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


@pytest.mark.asyncio
@pytest.mark.parametrize(("max_batch", "ends_after"), [(32, [10]), (4, [4, 8, 10])])
async def test_waiting_datagrams_are_read_in_batches(max_batch: int,
                                                     ends_after: list[int]) -> None:
    """Datagrams already waiting when the loop wakes are read together, up to
    ``max_batch``, in order, and each batch is closed by one ``on_batch_end``."""
    mine, peer = _udp_pair()
    log = _Log()
    ep = UdpEndpoint(mine, log.datagram, log.batch_end, max_batch=max_batch)
    for i in range(10):  # all sent before the loop runs the reader
        peer.sendto(bytes([i]), mine.getsockname())
    await _until(lambda: ep.counters.datagrams == 10)
    got = [e for e in log.events if e != "end"]
    assert got == [bytes([i]) for i in range(10)]
    ends = [i - n for n, i in enumerate(k for k, e in enumerate(log.events) if e == "end")]
    assert ends == ends_after
    assert ep.counters.batches == len(ends_after)
    ep.close()
    peer.close()


@pytest.mark.asyncio
async def test_receive_error_is_counted_not_raised() -> None:
    """A connected socket's ICMP "port unreachable" surfaces as an error on the next
    read: counted, the batch ends cleanly, nothing reaches the loop's exception handler."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    gone = closed.getsockname()
    closed.close()  # nothing listens there now
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mine.connect(gone)
    log = _Log()
    ep = UdpEndpoint(mine, log.datagram, log.batch_end)
    ep.sendto(b"hello", gone)
    await _until(lambda: ep.counters.receive_errors == 1)
    assert log.events == []
    assert errors == []
    ep.close()


@pytest.mark.asyncio
async def test_send_backlog_is_bounded_and_drains_in_order(tmp_path: Path) -> None:
    """While the socket refuses more (EAGAIN), datagrams wait in a bounded backlog, in
    order; what does not fit is counted and dropped; close() waits for the backlog.

    A UDP socket on loopback hardly ever returns EAGAIN, so this runs the same code on a
    Unix datagram socket, whose sends block once the receiver's queue is full."""
    path = str(tmp_path / "rx")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.setblocking(False)
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log = _Log()
    ep = UdpEndpoint(tx, log.datagram, log.batch_end, on_closed=log.on_closed,
                     max_send_backlog=20)
    n = 2000
    for i in range(n):
        ep.sendto(i.to_bytes(4, "big"), path)  # type: ignore[arg-type]
    held = ep.send_backlog
    assert held == 20
    assert ep.counters.send_dropped > 0
    accepted = n - ep.counters.send_dropped
    ep.close()  # with datagrams still held: the socket stays open until they leave
    assert log.closed == 0
    got: list[int] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while len(got) < accepted:
            try:
                got.append(int.from_bytes(rx.recv(16), "big"))
            except BlockingIOError:
                await asyncio.sleep(0.001)
    await _until(lambda: log.closed == 1)
    # every datagram the endpoint took arrived, in order: those sent at once, then the
    # backlog; the dropped ones are the last of the burst
    assert got == list(range(accepted))
    assert ep.send_backlog == 0
    assert ep.counters.send_errors == 0
    assert tx.fileno() == -1  # the endpoint closed its socket
    rx.close()
    del loop


@pytest.mark.asyncio
async def test_abort_drops_the_backlog(tmp_path: Path) -> None:
    path = str(tmp_path / "rx")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log = _Log()
    ep = UdpEndpoint(tx, log.datagram, on_closed=log.on_closed, max_send_backlog=5)
    for _i in range(2000):
        ep.sendto(b"x", path)  # type: ignore[arg-type]
    dropped = ep.counters.send_dropped
    ep.abort()
    assert ep.counters.send_dropped == dropped + 5
    assert ep.send_backlog == 0
    ep.sendto(b"late", path)  # type: ignore[arg-type]  # ignored once closed
    await _until(lambda: log.closed == 1)
    rx.close()


@pytest.mark.asyncio
async def test_unsendable_datagram_is_counted() -> None:
    mine, peer = _udp_pair()
    ep = UdpEndpoint(mine, _Log().datagram)
    ep.sendto(b"x" * 70_000, peer.getsockname())  # larger than any UDP payload
    assert ep.counters.send_errors == 1
    ep.close()
    peer.close()


@pytest.mark.asyncio
async def test_bad_settings_are_clear_errors() -> None:
    mine, peer = _udp_pair()
    with pytest.raises(LocalProtocolError, match="max_batch"):
        UdpEndpoint(mine, _Log().datagram, max_batch=0)
    with pytest.raises(LocalProtocolError, match="max_send_backlog"):
        UdpEndpoint(mine, _Log().datagram, max_send_backlog=-1)
    mine.close()
    peer.close()


@pytest.mark.asyncio
async def test_bind_udp_binds_and_reports_failures() -> None:
    sock = await bind_udp("127.0.0.1", 0, family=socket.AF_INET)
    port = sock.getsockname()[1]
    assert sock.type == socket.SOCK_DGRAM
    assert port > 0
    with pytest.raises(OSError, match="in use"):
        await bind_udp("127.0.0.1", port, family=socket.AF_INET)  # taken
    sock.close()


async def _collecting_server(cert_pair: tuple[str, str], host: str, got: list[object],
                             keep: Callable[[Any], object], **kwargs: Any) -> edgewire.Server:
    """A server on ``host`` that appends ``keep(payload)`` of every message of the first
    channel of its session to ``got``."""
    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for msg in ch:
            got.append(keep(msg.payload))

    return await edgewire.serve(host, 0, handler, certfile=cert_pair[0],
                                keyfile=cert_pair[1], **kwargs)


@pytest.mark.asyncio
async def test_server_answers_bursts_once_per_batch(cert_pair: tuple[str, str]) -> None:
    """A bulk transfer over loopback: the server reads the client's bursts several
    datagrams per wake-up (and transmits once for each batch), and every byte arrives."""
    got: list[object] = []
    server = await _collecting_server(cert_pair, "127.0.0.1", got,
                                      lambda payload: int(payload.nbytes),
                                      congestion_control="reno")
    array = np.zeros(256 * 1024 // 4, dtype=np.float32)
    async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert_pair[0],
                                congestion_control="reno") as conn:
        ch = await conn.channel("embeddings")
        for _ in range(16):
            await ch.send(array)
        await _until(lambda: len(got) == 16, limit=20)
    counters = server.udp.counters
    server.close()
    await server.wait_closed()
    assert got == [256 * 1024] * 16
    assert counters.datagrams > 4 * 1024 * 1024 // 1200
    assert counters.batches < counters.datagrams / 2


@pytest.mark.asyncio
async def test_loop_that_cannot_watch_sockets_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A proactor loop (Windows' default) has no ``add_reader``: said plainly."""
    loop = asyncio.get_running_loop()

    def no_readers(*_args: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(loop, "add_reader", no_readers)
    mine, peer = _udp_pair()
    with pytest.raises(LocalProtocolError, match="add_reader"):
        UdpEndpoint(mine, _Log().datagram)
    assert mine.fileno() != -1  # a constructor that raised left the socket to its caller
    mine.close()
    peer.close()
    with pytest.raises(LocalProtocolError, match="add_reader"):
        await open_udp("127.0.0.1", 0, _Log().datagram, family=socket.AF_INET)


@pytest.mark.asyncio
async def test_open_udp_binds_and_reads() -> None:
    log = _Log()
    ep = await open_udp("127.0.0.1", 0, log.datagram, log.batch_end, family=socket.AF_INET)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.sendto(b"hi", ep.sockname)
    await _until(lambda: ep.counters.datagrams == 1)
    assert log.events == [b"hi", "end"]
    ep.close()
    peer.close()


@pytest.mark.asyncio
async def test_session_over_ipv6_loopback(cert_pair: tuple[str, str]) -> None:
    """``serve`` on ``::1`` and ``connect`` to ``[::1]:port``: the endpoints bind and
    address IPv6 (4-tuple addresses) as they do IPv4."""
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    got: list[object] = []
    server = await _collecting_server(cert_pair, "::1", got,
                                      lambda payload: bytes(payload.ids))
    host, port = server.address
    assert host == "::1"
    async with edgewire.connect(f"edgewire://[::1]:{port}", cafile=cert_pair[0],
                                server_name="localhost") as conn:
        tokens = await conn.channel("tokens")
        await tokens.send(edgewire.TokenMessage(ids=(1, 2, 3)))
        await _until(lambda: len(got) == 1, limit=10)
    server.close()
    await server.wait_closed()
    assert got == [bytes((1, 2, 3))]


def test_peer_address_has_recvfroms_form() -> None:
    assert peer_address(("127.0.0.1", 4433)) == ("127.0.0.1", 4433)
    assert peer_address(("::1", 4433, 0, 0)) == ("::1", 4433, 0, 0)
    v6 = socket.getaddrinfo("::1", 4433, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
    assert len(peer_address(v6)) == 4


@pytest.mark.asyncio
async def test_a_failing_handler_loses_no_other_datagram() -> None:
    """A handler that raises on one datagram: the loop's exception handler gets it, the
    batch still ends, and the datagrams after it are read on the next wake-up."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    mine, peer = _udp_pair()
    log = _Log()

    def handle(data: bytes, addr: object) -> None:
        if data == b"bad":
            raise ValueError("bad datagram")
        log.datagram(data, addr)

    ep = UdpEndpoint(mine, handle, log.batch_end)
    for data in (b"1", b"bad", b"3"):
        peer.sendto(data, mine.getsockname())
    await _until(lambda: ep.counters.datagrams == 3)
    assert [e for e in log.events if e != "end"] == [b"1", b"3"]
    assert log.events.count("end") == 2
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], ValueError)
    ep.close()
    peer.close()


def _rcvbuf(sock: socket.socket) -> int:
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def _granted(size: int, default: int) -> int | None:
    """What Linux reports for a request of ``size`` bytes (twice the request, up to twice
    net.core.rmem_max, never below the default); None where that is not known."""
    rmem_max = Path("/proc/sys/net/core/rmem_max")
    if not rmem_max.exists():
        return None
    return max(2 * min(size, int(rmem_max.read_text())), default)


@pytest.mark.asyncio
async def test_sockets_ask_for_a_deep_receive_buffer() -> None:
    """A receiver that falls behind should show it as delay, not drop without a trace:
    every socket asks for K_RECV_BUFFER; 0 keeps the system's default, and a negative
    size is refused."""
    from edgewire.aio.udp import K_RECV_BUFFER, request_recv_buffer

    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    default = _rcvbuf(plain)
    sock = await bind_udp("127.0.0.1", 0)
    kept = await bind_udp("127.0.0.1", 0, recv_buffer=0)
    try:
        assert _rcvbuf(kept) == default
        expected = _granted(K_RECV_BUFFER, default)
        assert _rcvbuf(sock) == expected if expected is not None else _rcvbuf(sock) >= default
        request_recv_buffer(plain, 4 * 65536)
        expected = _granted(4 * 65536, default)
        assert _rcvbuf(plain) == expected if expected is not None else _rcvbuf(plain) > 0
        with pytest.raises(LocalProtocolError, match="recv_buffer"):
            request_recv_buffer(plain, -1)
        with pytest.raises(LocalProtocolError, match="recv_buffer"):
            await bind_udp("127.0.0.1", 0, recv_buffer=-1)
        log = _Log()
        endpoint = UdpEndpoint(sock, log.datagram, log.batch_end)
        assert endpoint.recv_buffer_bytes == _rcvbuf(sock)
        endpoint.abort()
        assert endpoint.recv_buffer_bytes == 0
    finally:
        plain.close()
        kept.close()


@pytest.mark.asyncio
async def test_connect_and_serve_sockets_get_the_buffer(
        cert_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import edgewire.aio.client as client_module
    from edgewire.aio.udp import request_recv_buffer

    cert, key = cert_pair
    client_buffers: list[int] = []

    def recording(sock: socket.socket, size: int | None = None) -> None:
        request_recv_buffer(sock, size)
        client_buffers.append(_rcvbuf(sock))

    monkeypatch.setattr(client_module, "request_recv_buffer", recording)

    async def handler(conn: edgewire.Connection) -> None:
        await conn.wait_closed()

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert, keyfile=key)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert):
            pass
        probe = await bind_udp("127.0.0.1", 0)  # what any endpoint's socket is granted
        granted = _rcvbuf(probe)
        probe.close()
        assert server.udp.recv_buffer_bytes == granted
        assert client_buffers == [granted]
        assert granted >= _rcvbuf(plain)
    finally:
        plain.close()
        server.close()


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the socket drop counter is read with Linux's "
                                       "SO_MEMINFO")


@linux_only
@pytest.mark.asyncio
async def test_datagrams_the_kernel_dropped_are_counted() -> None:
    """What a full receive buffer dropped is counted, once, before the next batch: every
    datagram sent over loopback was either read or dropped."""
    mine = await bind_udp("127.0.0.1", 0, recv_buffer=4096)  # the kernel's least
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    log = _Log()
    ep = UdpEndpoint(mine, log.datagram, log.batch_end)
    try:
        assert ep.socket_drops == 0
        for _ in range(300):  # more than the buffer holds, before the loop reads any
            peer.sendto(bytes(1200), mine.getsockname())
        await _until(lambda: ep.counters.datagrams + (ep.socket_drops or 0) == 300)
        assert ep.socket_drops is not None
        assert 0 < ep.socket_drops < 300
        assert ep.counters.kernel_drops == ep.socket_drops
        # a later wake-up with nothing dropped adds nothing
        peer.sendto(b"x", mine.getsockname())
        await _until(lambda: ep.counters.datagrams + ep.socket_drops == 301)
        assert ep.counters.kernel_drops == ep.socket_drops == 300 - ep.counters.datagrams + 1
    finally:
        ep.abort()
        peer.close()


@linux_only
@pytest.mark.asyncio
async def test_a_receiver_that_overflows_tells_the_sender(cert_pair: tuple[str, str]) -> None:
    """Over real sockets: datagrams the server's socket dropped while its loop was busy
    reach the client's estimator as the receiver's drops (and cut its rate), not as the
    path's loss alone."""
    cert, key = cert_pair
    served: list[edgewire.Connection] = []

    async def handler(conn: edgewire.Connection) -> None:
        served.append(conn)
        async for _ in await conn.accept():
            pass

    sock = await bind_udp("127.0.0.1", 0, recv_buffer=4096)
    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert, keyfile=key,
                                  sock=sock)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with edgewire.connect(f"localhost:{server.address[1]}", cafile=cert) as conn:
            ch = await conn.channel("tokens")
            await ch.send([1, 2, 3])
            before = conn.session.bwe_state()
            assert before["receiver_drops"] == 0
            for _ in range(300):  # the server's loop is this one: it reads none meanwhile
                flood.sendto(bytes(1200), server.address)
            for i in range(20):
                await ch.send([i])
                await asyncio.sleep(0.01)
            await _until(lambda: conn.session.bwe_state()["receiver_drops"] > 0)
            state = conn.session.bwe_state()
            assert state["receiver_backoffs"] >= 1
            dropped = server.udp.counters.kernel_drops
            assert 0 < state["receiver_drops"] <= dropped
            assert [c.bwe_state()["socket_drops"] for c in served] == [dropped]
    finally:
        flood.close()
        server.close()
