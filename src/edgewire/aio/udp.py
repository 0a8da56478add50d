"""A UDP socket on the event loop that reads every waiting datagram in one wake-up.

asyncio's datagram transport hands its protocol one datagram each time the loop wakes for
the socket. An endpoint that answers every datagram at once (with ACKs, or the packets its
window now allows) then runs its whole send path, and its timer bookkeeping, once per
datagram received. ``UdpEndpoint`` reads up to ``max_batch`` datagrams when the socket
becomes readable, hands each to ``on_datagram`` and then calls ``on_batch_end`` once, so
an endpoint can transmit once per batch. Under load the batches fill by themselves: while
the loop runs one connection's send path, datagrams for the others wait in the socket.

Sending is as with asyncio's transport: straight to the socket, and while the socket's
send buffer is full, into a bounded backlog that drains when it is writable again (UDP
may drop; what does not fit is counted, never queued without bound).

Every socket asks the kernel for a receive buffer of ``K_RECV_BUFFER`` bytes. A receiving
process that falls behind (an application busy with a frame on the same loop) leaves
datagrams in that buffer, and the wait shows in their one-way delay, which the sender's
delay-based estimate answers; a full buffer drops them with no delay to show for it, and
loss without a queue is what a lossy radio looks like too, which the estimate tolerates.
With Linux's default buffer (about 200 KiB) a video channel sent at full speed to a
reader spending 5 ms on each frame lost about 10 % of its packets; with this one, none
(``bench/slow_receiver.py``). The kernel caps the request at twice
``net.core.rmem_max`` (by default about 416 KiB then: fewer drops, not none).

What the buffer still drops, the endpoint counts: on Linux the socket's own drop counter
(``SO_MEMINFO``) is read once per wake-up, before the batch, and ``socket_drops`` holds
its total. The drivers hand it to the session with every datagram, and the session tells
its peer (``transport.feedback``): the sender then knows that the receiver, not the
path, lost those packets, and slows to the rate the receiver reads at. Where the counter
cannot be read (another system), ``socket_drops`` is None and nothing changes.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgewire.errors import LocalProtocolError

__all__ = ["K_MAX_BATCH", "K_MAX_SEND_BACKLOG", "K_RECV_BUFFER", "UdpCounters", "UdpEndpoint",
           "bind_udp", "open_udp", "peer_address", "request_recv_buffer"]

Address = tuple[str, int] | tuple[str, int, int, int]

#: Datagrams read in one wake-up before the endpoint transmits. The benefit is in the
#: first dozen or so: a prototype of the batching on ``edgewire bench throughput``
#: (DATAGRAM / stream ratio to raw aioquic) gave 0.91 / 0.99 with up to 5 datagrams per
#: batch, 1.09 / 1.20 with 17 and 1.08 / 1.16 with 65; a larger batch only delays the
#: answer to the first datagram of a burst.
K_MAX_BATCH = 32
#: Datagrams held while the socket's send buffer is full; more are dropped and counted.
K_MAX_SEND_BACKLOG = 4096
#: Receive buffer size of one ``recvfrom``: the largest UDP payload.
K_MAX_DATAGRAM = 65535
#: Socket receive buffer asked of the kernel for every endpoint (bytes; 0 keeps the
#: system's default). See the module docstring.
K_RECV_BUFFER = 1 << 20
#: Linux's SO_MEMINFO socket option: an array of 32-bit counters, the ninth of which
#: (SK_MEMINFO_DROPS) counts datagrams the socket dropped (a full receive buffer, mostly).
#: Python's socket module does not name it.
K_SO_MEMINFO = 55
K_MEMINFO_DROPS = 8
_MEMINFO = struct.Struct(f"{K_MEMINFO_DROPS + 1}I")


@dataclass
class UdpCounters:
    """What the endpoint could not do, counted (never raised into the loop)."""

    receive_errors: int = 0
    """``recvfrom`` failures other than "nothing to read" (an ICMP error, say)."""
    send_errors: int = 0
    """Datagrams the socket refused (no route, too large, ...): dropped."""
    send_dropped: int = 0
    """Datagrams dropped because the send backlog was full."""
    batches: int = 0
    """Wake-ups that read at least one datagram."""
    datagrams: int = 0
    """Datagrams read."""
    kernel_drops: int = 0
    """Datagrams the kernel dropped for this socket since the endpoint took it over (its
    receive buffer was full); 0 where the system does not say (``socket_drops``)."""


class UdpEndpoint:
    """One non-blocking UDP socket on the running loop (see the module's docstring).

    ``on_datagram(data, addr)`` is called for every datagram read, ``on_batch_end()`` once
    after each wake-up that read any, ``on_closed()`` once the socket is closed (after the
    send backlog has drained). Once constructed, the endpoint owns ``sock`` and closes it
    (a constructor that raises leaves it to the caller).
    """

    def __init__(
        self,
        sock: socket.socket,
        on_datagram: Callable[[bytes, Address], None],
        on_batch_end: Callable[[], None] = lambda: None,
        *,
        on_closed: Callable[[], None] = lambda: None,
        max_batch: int = K_MAX_BATCH,
        max_send_backlog: int = K_MAX_SEND_BACKLOG,
    ) -> None:
        if max_batch < 1:
            raise LocalProtocolError(f"max_batch must be at least 1, got {max_batch}")
        if max_send_backlog < 0:
            raise LocalProtocolError(
                f"max_send_backlog must be at least 0, got {max_send_backlog}")
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._on_datagram = on_datagram
        self._on_batch_end = on_batch_end
        self._on_closed = on_closed
        self._max_batch = max_batch
        self._max_backlog = max_send_backlog
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._closing = False
        self._closed = False
        self.counters = UdpCounters()
        # the kernel's drop counter when last read (None: the system does not say)
        self._drops_seen = self._read_drops()
        sock.setblocking(False)
        try:
            self._loop.add_reader(self._fd, self._read_ready)
        except NotImplementedError:
            raise LocalProtocolError(
                f"edgewire's UDP endpoint needs an event loop that can watch a socket "
                f"(loop.add_reader): {type(self._loop).__name__} cannot; on Windows use "
                f"asyncio.WindowsSelectorEventLoopPolicy") from None

    @property
    def sockname(self) -> Address:
        """The local address the socket is bound to."""
        name: Address = self._sock.getsockname()
        return name

    @property
    def recv_buffer_bytes(self) -> int:
        """The socket's receive buffer as the kernel reports it (Linux reports twice what
        it grants for data, its bookkeeping included); 0 once closed."""
        if self._closed:
            return 0
        return int(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    @property
    def socket_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket since the endpoint took it over,
        as of the latest wake-up (``counters.kernel_drops``); None where the system does
        not say."""
        return None if self._drops_seen is None else self.counters.kernel_drops

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closing

    @property
    def send_backlog(self) -> int:
        """Datagrams waiting for room in the socket's send buffer."""
        return len(self._backlog)

    def _read_drops(self) -> int | None:
        """The kernel's drop counter of the socket, or None where it cannot be read."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, K_SO_MEMINFO, _MEMINFO.size)
        except OSError:
            return None
        if len(raw) < _MEMINFO.size:
            return None
        return int(_MEMINFO.unpack_from(raw)[K_MEMINFO_DROPS])

    def _note_drops(self) -> None:
        seen, total = self._drops_seen, self._read_drops()
        if seen is not None and total is not None:  # a 32-bit counter: it wraps
            self.counters.kernel_drops += (total - seen) & 0xFFFFFFFF
            self._drops_seen = total

    def _read_ready(self) -> None:
        if self._drops_seen is not None:
            self._note_drops()  # before the batch: what overflowed while it waited
        read = 0
        try:
            while read < self._max_batch and not self._closing:
                try:
                    data, addr = self._sock.recvfrom(K_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.counters.receive_errors += 1
                    break
                read += 1
                self._on_datagram(data, addr)
        finally:
            if read:
                self.counters.batches += 1
                self.counters.datagrams += read
                self._on_batch_end()

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram now, or hold it while the send buffer is full."""
        if self._closing:
            return
        if self._backlog:
            self._hold(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._hold(data, addr)
            self._loop.add_writer(self._fd, self._write_ready)
        except OSError:
            self.counters.send_errors += 1

    def _hold(self, data: bytes, addr: Address) -> None:
        if len(self._backlog) >= self._max_backlog:
            self.counters.send_dropped += 1
        else:
            self._backlog.append((data, addr))

    def _write_ready(self) -> None:
        while self._backlog:
            data, addr = self._backlog[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters.send_errors += 1
            self._backlog.popleft()
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._finish_close()

    def close(self) -> None:
        """Stop reading; close the socket once what is held for sending has left."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._backlog:
            self._finish_close()

    def abort(self) -> None:
        """Close now, dropping what is held for sending."""
        self._closing = True
        self.counters.send_dropped += len(self._backlog)
        self._backlog.clear()
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._finish_close()

    def _finish_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sock.close()
        self._loop.call_soon(self._on_closed)


def _recv_buffer_size(size: int | None) -> int:
    """``size``, or ``K_RECV_BUFFER`` for None; a negative size is a clear error."""
    size = K_RECV_BUFFER if size is None else size
    if size < 0:
        raise LocalProtocolError(f"recv_buffer must be at least 0, got {size}")
    return size


def request_recv_buffer(sock: socket.socket, size: int | None = None) -> None:
    """Ask the kernel for a receive buffer of ``size`` bytes on ``sock`` (default
    ``K_RECV_BUFFER``; 0 asks nothing). A kernel that refuses keeps its own buffer, as
    without the request; Linux grants at most twice ``net.core.rmem_max``."""
    size = _recv_buffer_size(size)
    if size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass  # the system's own buffer, as without the request


async def bind_udp(host: str | None, port: int, *, family: int = socket.AF_UNSPEC,
                   recv_buffer: int | None = None) -> socket.socket:
    """A UDP socket bound to the first of ``host:port``'s addresses that binds, with a
    receive buffer of ``recv_buffer`` bytes asked of the kernel (default
    ``K_RECV_BUFFER``; 0 keeps the system's; a kernel that refuses keeps its own)."""
    size = _recv_buffer_size(recv_buffer)  # checked before any socket is made
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM,
                                   proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    error: OSError | None = None
    for fam, kind, proto, _, addr in infos:
        sock = socket.socket(fam, kind, proto)
        try:
            sock.setblocking(False)
            request_recv_buffer(sock, size)
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    assert error is not None
    raise error


async def open_udp(
    host: str | None, port: int, on_datagram: Callable[[bytes, Address], None],
    on_batch_end: Callable[[], None] = lambda: None, *, family: int = socket.AF_UNSPEC,
    on_closed: Callable[[], None] = lambda: None,
) -> UdpEndpoint:
    """A ``UdpEndpoint`` on a new socket bound to ``host:port`` (closed again if the
    endpoint cannot be made)."""
    sock = await bind_udp(host, port, family=family)
    try:
        return UdpEndpoint(sock, on_datagram, on_batch_end, on_closed=on_closed)
    except BaseException:
        sock.close()
        raise


def peer_address(sockaddr: tuple[object, ...]) -> Address:
    """A resolved address in the form ``recvfrom`` reports datagrams from it: (host, port)
    for IPv4, (host, port, flowinfo, scope_id) for IPv6. QUIC matches a datagram's
    source against the path it sent on, so the address a client connects to must have
    the same form, or its peer's replies look like a new path."""
    host, port = str(sockaddr[0]), int(sockaddr[1])  # type: ignore[call-overload]
    if len(sockaddr) >= 4:
        return (host, port, int(sockaddr[2]), int(sockaddr[3]))  # type: ignore[call-overload]
    return (host, port)
