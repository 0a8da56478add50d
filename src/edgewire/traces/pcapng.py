"""pcapng, read by edgewire's own block reader (the layout: RFC draft-ietf-opsawg-pcapng).

Like the classic pcap reader in :mod:`edgewire.traces.capture`: the file is read 4 MiB at a
time, one Python step per block finds the next block (its type and length), and every
packet field is gathered with numpy over all packet blocks of the buffer. Blocks read:

* Section Header Block: byte order (either), version 1; a new section forgets the
  interfaces of the one before.
* Interface Description Block: link type, snaplen, ``if_tsresol`` (10^-n or 2^-n s; µs
  when absent) and ``if_tsoffset`` (seconds added to every timestamp).
* Enhanced Packet Block, the obsolete Packet Block, Simple Packet Block (no timestamp: it
  gets the time of the packet before it, and is cut at interface 0's snaplen).
* anything else (name resolution, statistics, decryption secrets, custom) is skipped.

Record indices in problems count packet blocks from 0, as for pcap. A damaged packet block
whose extent is still known (an undefined interface, a captured length past its block) is
reported and skipped; a block that cannot be delimited (a bad length, a trailer that does
not repeat it, the file ending inside it) ends the reading, keeping everything before it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgewire.traces.capture import K_BLOCK_BYTES, Chunk
from edgewire.traces.problems import Problems

__all__ = ["K_MAX_BLOCK", "iter_pcapng"]

#: a block longer than this is taken as corruption (packets are at most 256 KiB; other
#: blocks, such as decryption secrets, can be longer)
K_MAX_BLOCK = 16 << 20
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14
_HEAD = 28  # bytes of packet block header gathered per packet (an EPB's fixed part)


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units: int = 1_000_000  # timestamp units per second
    offset_s: int = 0


@dataclass(slots=True)
class _Section:
    endian: str = "<"
    interfaces: list[_Interface] = field(default_factory=list)
    last_ts: float = 0.0  # time of the latest packet (for Simple Packet Blocks)


def iter_pcapng(path: Path, problems: Problems, *, block_bytes: int = K_BLOCK_BYTES,
                on_progress: Callable[[int, int], None] | None = None) -> Iterator[Chunk]:
    """The packets of a pcapng file, chunk by chunk (see the module docstring)."""
    total = path.stat().st_size
    with open(path, "rb") as f:
        yield from _Reader(f, problems, block_bytes, total, on_progress).run()


class _Reader:
    def __init__(self, f: BinaryIO, problems: Problems, block_bytes: int, total: int,
                 on_progress: Callable[[int, int], None] | None) -> None:
        self.f = f
        self.problems = problems
        self.block_bytes = block_bytes
        self.total = total
        self.on_progress = on_progress
        self.section = _Section()
        self.record = 0  # packet blocks met so far
        self.done = 0  # file offset of the current buffer's start
        self.stopped = False

    def run(self) -> Iterator[Chunk]:
        carry = b""
        need = 0
        while True:
            block = self.f.read(max(self.block_bytes, need - len(carry)))
            buf = carry + block if carry else block
            pos, need = yield from self._walk(buf)
            if self.stopped:
                return
            self.done += pos
            carry = buf[pos:]
            if not block:
                if carry:
                    self.problems.add("truncated_record", f"the file ends inside a block "
                                      f"({len(carry)} bytes left over)", self.record)
                return

    def _walk(self, buf: bytes) -> Generator[Chunk, None, tuple[int, int]]:
        """Walk the blocks of ``buf``; returns (bytes consumed, bytes the next block needs
        in all) through StopIteration."""
        end = len(buf)
        pos = 0
        head = struct.Struct(self.section.endian + "II").unpack_from
        pending: list[int] = []
        append = pending.append
        need = 0
        while pos + 12 <= end:
            btype, blen = head(buf, pos)
            nxt = pos + blen
            # the one per-packet Python step: an Enhanced Packet Block that fits the buffer
            if btype == EPB and blen >= 32 and nxt <= end:
                append(pos)
                pos = nxt
                continue
            if btype == SHB:
                order = buf[pos + 8:pos + 12]
                endian = ("<" if order == _BYTE_ORDER_MAGIC.to_bytes(4, "little") else
                          ">" if order == _BYTE_ORDER_MAGIC.to_bytes(4, "big") else "")
                if not endian:
                    yield from self._flush(buf, pending)
                    self._corrupt("section header block with a bad byte-order magic")
                    return pos, 0
                (blen,) = struct.unpack_from(endian + "I", buf, pos + 4)
                nxt = pos + blen
            if blen < 12 or blen & 3 or blen > K_MAX_BLOCK or (
                    btype in (EPB, PB) and blen < 32) or (btype == SPB and blen < 16) or (
                    btype == SHB and blen < 28) or (btype == IDB and blen < 20):
                yield from self._flush(buf, pending)
                if not self.stopped:
                    self._corrupt(f"block of type {btype:#x} with a bad length ({blen})")
                return pos, 0
            if nxt > end:
                need = blen
                break
            if btype in (PB, SPB):
                append(pos)
                pos = nxt
                continue
            # any other block: the packets before it belong to the state before it
            yield from self._flush(buf, pending)
            if self.stopped:
                return pos, 0
            if btype == SHB:
                if not self._section_header(buf, pos, blen):
                    return pos, 0
                head = struct.Struct(self.section.endian + "II").unpack_from
            elif btype == IDB:
                self._interface(buf, pos, blen)
            pos = nxt
        yield from self._flush(buf, pending)
        return pos, need

    def _corrupt(self, what: str) -> None:
        self.problems.add("corrupt_block", f"pcapng {what}: the file cannot be read past "
                          "it; packets before it were analysed", self.record)
        self.stopped = True

    def _section_header(self, buf: bytes, pos: int, blen: int) -> bool:
        endian = "<" if buf[pos + 8:pos + 12] == _BYTE_ORDER_MAGIC.to_bytes(4, "little") \
            else ">"
        major, _minor = struct.unpack_from(endian + "HH", buf, pos + 12)
        if major != 1:
            self.problems.add("unsupported_version", f"pcapng version {major} section: "
                              "not read; packets before it were analysed", self.record)
            self.stopped = True
            return False
        self.section = _Section(endian=endian, last_ts=self.section.last_ts)
        return True

    def _interface(self, buf: bytes, pos: int, blen: int) -> None:
        endian = self.section.endian
        linktype, _res, snaplen = struct.unpack_from(endian + "HHI", buf, pos + 8)
        iface = _Interface(linktype=linktype, snaplen=snaplen)
        opt, stop = pos + 16, pos + blen - 4
        while opt + 4 <= stop:
            code, length = struct.unpack_from(endian + "HH", buf, opt)
            value = opt + 4
            if code == 0:
                break
            if value + length > stop:
                self.problems.add("bad_option", "interface description option past the end "
                                  "of its block (ignored)", self.record)
                break
            if code == _OPT_TSRESOL and length >= 1:
                v = buf[value]
                exp = v & 0x7F
                if (v & 0x80 and exp > 62) or (not v & 0x80 and exp > 18):
                    self.problems.add("bad_option", f"if_tsresol {v:#x} is finer than "
                                      "edgewire reads (µs assumed)", self.record)
                else:
                    iface.units = 2 ** exp if v & 0x80 else 10 ** exp
            elif code == _OPT_TSOFFSET and length >= 8:
                (iface.offset_s,) = struct.unpack_from(endian + "q", buf, value)
            opt = value + ((length + 3) & ~3)
        self.section.interfaces.append(iface)

    def _flush(self, buf: bytes, pending: list[int]) -> Iterator[Chunk]:
        """Chunks of the packet blocks at ``pending`` (then cleared)."""
        if not pending:
            return
        n = len(pending)
        base = self.record
        self.record += n
        off = np.asarray(pending, dtype=np.int64)
        pending.clear()
        data = np.frombuffer(buf, dtype=np.uint8)
        endian = self.section.endian
        u4 = np.dtype(endian + "u4")
        idx = np.minimum(off[:, None] + np.arange(_HEAD), len(buf) - 1)
        w = data[idx].copy().view(u4).astype(np.int64)  # (n, 7) header words
        btype, blen = w[:, 0], w[:, 1]
        # the trailer repeats the length: a block that does not is not where we think
        tail = data[(off + blen - 4)[:, None] + np.arange(4)].copy().view(u4)[:, 0]
        bad = np.flatnonzero((tail != blen) | (blen & 3 != 0))
        if bad.size:
            cut = int(bad[0])
            if cut:
                self.record = base
                yield from self._flush(buf, [int(o) for o in off[:cut]])
            self.record = base + cut
            self._corrupt("block whose trailing length differs from its leading length")
            return
        spb = btype == SPB
        epb = ~spb
        iface = np.where(spb, 0, w[:, 2])
        if (btype == PB).any():  # the obsolete block has a 16-bit interface id
            iface = np.where(btype == PB, (w[:, 2] & 0xFFFF) if endian == "<"
                             else (w[:, 2] >> 16), iface)
        ifaces = self.section.interfaces
        known = iface < len(ifaces)
        if not known.all():
            self.problems.add("bad_interface", "packet of an interface no description "
                              "block defined (skipped)", np.flatnonzero(~known) + base)
        iface = np.where(known, iface, 0)
        if ifaces:
            linktypes = np.array([i.linktype for i in ifaces], dtype=np.int64)[iface]
            units = np.array([i.units for i in ifaces], dtype=np.uint64)[iface]
            offsets = np.array([i.offset_s for i in ifaces], dtype=np.float64)[iface]
            snap0 = ifaces[0].snaplen or (1 << 62)
        else:
            linktypes = np.zeros(n, dtype=np.int64)
            units = np.ones(n, dtype=np.uint64)
            offsets = np.zeros(n, dtype=np.float64)
            snap0 = 1 << 62
        wirelen = np.where(spb, w[:, 2], w[:, 6])
        caplen = np.where(spb, np.minimum(np.minimum(w[:, 2], blen - 16), snap0), w[:, 5])
        over = epb & (caplen > blen - 32)
        if over.any():
            self.problems.add("corrupt_block", "packet block whose captured length runs "
                              "past the block (skipped)", np.flatnonzero(over) + base)
        keep = known & ~over
        ticks = (w[:, 3].astype(np.uint64) << np.uint64(32)) | w[:, 4].astype(np.uint64)
        secs = ticks // units
        ts = (secs.astype(np.float64) + (ticks - secs * units).astype(np.float64)
              / units.astype(np.float64) + offsets)
        if spb.any():
            # a Simple Packet Block has no time: the time of the packet before it
            src = np.where(spb | ~keep, -1, np.arange(n))
            src = np.maximum.accumulate(src)
            ts = np.where(src >= 0, ts[np.maximum(src, 0)], self.section.last_ts)
        if keep.any():
            self.section.last_ts = float(ts[np.flatnonzero(keep)[-1]])
        bad_len = keep & (caplen > wirelen)
        if bad_len.any():
            self.problems.add("caplen_over_len", "captured length larger than the original "
                              "length", np.flatnonzero(bad_len) + base)
        start = off + np.where(spb, 12, 28)
        end_offset = self.done + int(off[-1] + blen[-1])
        if keep.all():
            runs = [(0, n)]
        else:
            edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.view(np.int8), [0]))))
            runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
        for a, b in runs:
            yield Chunk(data=data, off=start[a:b], caplen=caplen[a:b], wirelen=wirelen[a:b],
                        ts=ts[a:b], linktype=linktypes[a:b], first_record=base + a,
                        end_offset=end_offset)
        if self.on_progress is not None:
            self.on_progress(end_offset, self.total)
