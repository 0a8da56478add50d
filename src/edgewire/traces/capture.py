"""Streaming capture readers: classic pcap and pcapng (:mod:`edgewire.traces.pcapng`), both
by edgewire's own block readers.

Both hand out :class:`Chunk` objects: one buffer holding up to a few MiB of packet records
and numpy arrays locating each packet in it. Analysis works chunk by chunk, so memory
depends on the chunk size, never on the capture length.

Why captures are not read through scapy: ``RawPcapReader`` returns one Python tuple per
record (about 2 µs each here; ``RawPcapNgReader`` more) and the record walk is all the work
there is on plain UDP. Here a block of records is read at once and the record headers are
walked with ``struct.unpack_from`` on the length only; the other header fields are gathered
with numpy. See docs/TRACES.md for the measurements.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgewire.traces.problems import Problems, TraceFormatError

__all__ = [
    "K_BLOCK_BYTES",
    "K_MAX_RECORD",
    "Chunk",
    "iter_chunks",
    "sniff_format",
]

#: bytes read at once from a classic pcap file.
K_BLOCK_BYTES = 4 << 20
#: a record longer than this is taken as corruption (the largest snaplen tools use is 256 KiB)
K_MAX_RECORD = 262_144

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


@dataclass(slots=True)
class Chunk:
    """Consecutive packet records of one capture, located in one buffer."""

    data: np.ndarray
    """The buffer (uint8)."""
    off: np.ndarray
    """Offset of each packet's first byte in ``data`` (int64)."""
    caplen: np.ndarray
    """Captured bytes of each packet (int64)."""
    wirelen: np.ndarray
    """Original length of each packet on the wire (int64)."""
    ts: np.ndarray
    """Capture time of each packet, seconds (float64)."""
    linktype: np.ndarray
    """pcap link type of each packet (int64)."""
    first_record: int
    """0-based record index of the first packet of the chunk in its file."""
    end_offset: int = 0
    """File offset reached (for progress)."""


def sniff_format(path: str | Path) -> str:
    """``pcap``, ``pcapng``, ``qlog`` (JSON), ``sqlog`` (JSON-SEQ) or ``endpoint-log``.

    Raises :class:`TraceFormatError` for anything else, and for unreadable files.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise TraceFormatError(f"cannot read {path}: {exc.strerror}") from None
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if head[:4] == _PCAPNG_MAGIC:
        return "pcapng"
    text = head.lstrip()
    if text.startswith(b"\x1e"):
        return "sqlog"
    if text.startswith(b"{"):
        return "qlog"
    if head.startswith(b"# edgewire-endpoint-log"):
        return "endpoint-log"
    if not head:
        raise TraceFormatError(f"{path} is empty: not a capture, qlog or endpoint log")
    raise TraceFormatError(
        f"{path} is not a pcap, pcapng, qlog or edgewire endpoint log file "
        f"(it starts with {head[:8].hex(' ')})")


def iter_chunks(path: str | Path, problems: Problems, *,
                block_bytes: int = K_BLOCK_BYTES,
                on_progress: Callable[[int, int], None] | None = None) -> Iterator[Chunk]:
    """The packets of a pcap or pcapng file, chunk by chunk.

    Damage is reported to ``problems`` with the record index; reading stops at the first
    record that cannot be delimited (a corrupt length, a truncated end) and keeps
    everything before it. ``on_progress(bytes_done, bytes_total)`` is called per chunk.
    """
    kind = sniff_format(path)
    if kind == "pcap":
        yield from _iter_pcap(Path(path), problems, block_bytes, on_progress)
    elif kind == "pcapng":
        from edgewire.traces.pcapng import iter_pcapng

        yield from iter_pcapng(Path(path), problems, block_bytes=block_bytes,
                               on_progress=on_progress)
    else:
        raise TraceFormatError(f"{path} is a {kind} file, not a packet capture")


def _iter_pcap(path: Path, problems: Problems, block_bytes: int,
               on_progress: Callable[[int, int], None] | None) -> Iterator[Chunk]:
    total = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            problems.add("truncated_header", "the file ends inside the pcap file header", 0)
            return
        endian, tick = _PCAP_MAGICS[head[:4]]
        _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII",
                                                                     head[4:24])
        linktype &= 0xFFFF  # the upper bits can carry FCS information
        limit = max(K_MAX_RECORD, snaplen)
        yield from _walk_pcap(f, problems, endian, tick, limit, linktype, block_bytes,
                              total, on_progress)


def _walk_pcap(f: BinaryIO, problems: Problems, endian: str, tick: float, limit: int,
               linktype: int, block_bytes: int, total: int,
               on_progress: Callable[[int, int], None] | None) -> Iterator[Chunk]:
    caplen_at = struct.Struct(endian + "I").unpack_from
    hdr_dtype = np.dtype(endian + "u4")
    carry = b""
    record = 0
    done = 24
    while True:
        block = f.read(max(block_bytes, K_MAX_RECORD + 16))
        buf = carry + block if carry else block
        end = len(buf)
        pos = 0
        offsets: list[int] = []
        append = offsets.append
        corrupt = False
        # the one per-record Python loop: only the caplen is needed to find the next record
        while pos + 16 <= end:
            (cl,) = caplen_at(buf, pos + 8)
            if cl > limit:
                corrupt = True
                break
            nxt = pos + 16 + cl
            if nxt > end:
                break
            append(pos)
            pos = nxt
        n = len(offsets)
        if n:
            data = np.frombuffer(buf, dtype=np.uint8)
            off = np.asarray(offsets, dtype=np.int64)
            heads = data[off[:, None] + np.arange(16)].copy().view(hdr_dtype)
            heads = heads.astype(np.int64)
            caplen = heads[:, 2]
            wirelen = heads[:, 3]
            ts = heads[:, 0].astype(np.float64) + heads[:, 1].astype(np.float64) * tick
            bad = np.flatnonzero(caplen > wirelen)
            if bad.size:
                problems.add("caplen_over_len", "captured length larger than the original "
                             "length", bad + record)
            done += pos
            yield Chunk(data=data, off=off + 16, caplen=caplen, wirelen=wirelen, ts=ts,
                        linktype=np.full(n, linktype, dtype=np.int64), first_record=record,
                        end_offset=done)
            if on_progress is not None:
                on_progress(done, total)
            record += n
        else:
            done += pos
        if corrupt:
            problems.add("corrupt_record", f"record length larger than {limit} bytes: the "
                         "file is corrupt from here on; records before it were analysed",
                         record)
            return
        carry = buf[pos:]
        if not block:
            if carry:
                problems.add("truncated_record", f"the file ends inside a record "
                             f"({len(carry)} bytes left over)", record)
            return
