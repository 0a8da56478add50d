"""Binary formats on the hot path: the datagram header and reliable-stream record framing.

Every edgewire QUIC DATAGRAM starts with a fixed 20-byte header (network byte order)::

    0       1       2               4                               8
    +-------+-------+---------------+-------------------------------+
    |ver|typ| flags |  channel id   |        sequence number        |
    +-------+-------+---------------+-------------------------------+
    |      media timestamp (us)     |           frame id            |
    +-------------------------------+---------------+---------------+
    |  frag index   |  frag count   |   payload ...
    +---------------+---------------+

docs/PROTOCOL.md describes each field. Reliable channels use unidirectional QUIC streams that
start with a 2-byte channel id and then carry records: a 4-byte length and that many bytes.

Two more datagram types share the first four bytes (version/type, flags, channel id): FEC
parity (``TYPE_FEC``, a 20-byte header naming the protected group, then one Reed-Solomon
parity symbol) and NACKs (``TYPE_NACK``, ranges of missing sequence numbers).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from edgewire.errors import RemoteProtocolError

__all__ = [
    "FEC_HEADER_SIZE",
    "FLAG_KEYFRAME",
    "FLAG_RETRANSMIT",
    "HEADER_SIZE",
    "MAX_FEC_GROUP",
    "MAX_NACK_RANGES",
    "PROTOCOL_VERSION",
    "RECORD_HEADER_SIZE",
    "STREAM_PREFIX_SIZE",
    "TYPE_FEC",
    "TYPE_FEEDBACK",
    "TYPE_MEDIA",
    "TYPE_NACK",
    "TYPE_PADDING",
    "WIRE_VERSION",
    "DatagramHeader",
    "ErrorCode",
    "FecHeader",
    "RecordReader",
    "as_retransmission",
    "datagram_type",
    "decode_fec_header",
    "decode_header",
    "decode_nack",
    "encode_fec_header",
    "encode_header",
    "encode_nack",
    "encode_record",
    "encode_record_header",
    "sequence_of",
    "with_sequence",
]

#: Version of the datagram header layout (high nibble of the first byte).
WIRE_VERSION = 1
#: Version of the edgewire protocol negotiated in the hello.
PROTOCOL_VERSION = 1

#: Datagram types (low nibble of the first byte). Other values are reserved (probes); a
#: receiver counts and drops types it does not know.
TYPE_MEDIA = 0
#: Reed-Solomon parity over a group of media datagrams of one channel.
TYPE_FEC = 1
#: Sequence numbers of one channel the receiver is missing.
TYPE_NACK = 2
#: Arrival times of QUIC packets, for the sender's bandwidth estimator (transport.feedback).
TYPE_FEEDBACK = 3
#: Filler of a bandwidth probe; the receiver drops it.
TYPE_PADDING = 4

#: Flag bits. Unknown bits are sent as zero and ignored on receipt.
FLAG_KEYFRAME = 0x01
#: Set on a media datagram sent again in answer to a NACK (the bytes are otherwise the same).
FLAG_RETRANSMIT = 0x02

#: Most media datagrams one FEC group can protect (the member mask is 64 bits).
MAX_FEC_GROUP = 64
#: Most ranges in one NACK datagram.
MAX_NACK_RANGES = 128

_HEADER = struct.Struct("!BBHIIIHH")
HEADER_SIZE = _HEADER.size  # 20 bytes

_FEC = struct.Struct("!BBHIQBBBB")
FEC_HEADER_SIZE = _FEC.size  # 20 bytes
_NACK = struct.Struct("!BBHH")
_NACK_RANGE = struct.Struct("!IH")
_SEQ = struct.Struct("!I")

_RECORD = struct.Struct("!I")
RECORD_HEADER_SIZE = _RECORD.size
_STREAM_PREFIX = struct.Struct("!H")
STREAM_PREFIX_SIZE = _STREAM_PREFIX.size

MAX_U16 = 0xFFFF
MAX_U32 = 0xFFFFFFFF


class ErrorCode(enum.IntEnum):
    """QUIC application error codes edgewire closes a connection with (docs/PROTOCOL.md)."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    VERSION_NEGOTIATION_FAILED = 0x2
    CONTROL_PROTOCOL_ERROR = 0x3
    STREAM_PROTOCOL_ERROR = 0x4
    MESSAGE_TOO_LARGE = 0x5
    CHANNEL_LIMIT_EXCEEDED = 0x6
    HELLO_TIMEOUT = 0x7
    RECEIVE_BUFFER_OVERFLOW = 0x8


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramHeader:
    """The fixed header in front of every edgewire datagram."""

    channel_id: int
    """Channel the datagram belongs to (0-65535)."""
    sequence: int
    """Per-channel, per-direction datagram counter (wraps at 2**32)."""
    timestamp_us: int
    """Capture time of the frame on the sender's clock, microseconds modulo 2**32."""
    frame_id: int
    """Per-channel frame counter (wraps at 2**32); all fragments of a frame share it."""
    frag_index: int = 0
    """Index of this fragment within its frame."""
    frag_count: int = 1
    """Number of fragments in the frame (at least 1)."""
    flags: int = 0
    """Flag bits, see ``FLAG_*``."""
    type: int = TYPE_MEDIA
    """Datagram type (low nibble of the first byte)."""

    @property
    def keyframe(self) -> bool:
        """True if the sender marked the frame as a keyframe."""
        return bool(self.flags & FLAG_KEYFRAME)


def encode_header(
    *,
    channel_id: int,
    sequence: int,
    timestamp_us: int,
    frame_id: int,
    frag_index: int = 0,
    frag_count: int = 1,
    flags: int = 0,
    type: int = TYPE_MEDIA,
) -> bytes:
    """Encode a datagram header. Counters wrap; out-of-range fields raise ValueError."""
    if not 0 <= channel_id <= MAX_U16:
        raise ValueError(f"channel_id {channel_id} out of range 0..65535")
    if not 1 <= frag_count <= MAX_U16 or not 0 <= frag_index < frag_count:
        raise ValueError(f"fragment {frag_index}/{frag_count} out of range")
    if not 0 <= type <= 0xF or not 0 <= flags <= 0xFF:
        raise ValueError("type or flags out of range")
    return _HEADER.pack(
        (WIRE_VERSION << 4) | type,
        flags,
        channel_id,
        sequence & MAX_U32,
        timestamp_us & MAX_U32,
        frame_id & MAX_U32,
        frag_index,
        frag_count,
    )


def decode_header(data: bytes | memoryview) -> DatagramHeader:
    """Decode the header at the start of ``data``; the payload follows at ``HEADER_SIZE``.

    Raises :class:`RemoteProtocolError` for a short datagram, an unknown version or
    inconsistent fragment fields.
    """
    if len(data) < HEADER_SIZE:
        raise RemoteProtocolError(f"datagram of {len(data)} bytes is shorter than the header")
    vt, flags, channel_id, seq, ts, frame_id, frag_index, frag_count = _HEADER.unpack_from(data)
    if vt >> 4 != WIRE_VERSION:
        raise RemoteProtocolError(f"unknown datagram version {vt >> 4}")
    if frag_count == 0 or frag_index >= frag_count:
        raise RemoteProtocolError(f"bad fragment fields {frag_index}/{frag_count}")
    return DatagramHeader(
        channel_id=channel_id,
        sequence=seq,
        timestamp_us=ts,
        frame_id=frame_id,
        frag_index=frag_index,
        frag_count=frag_count,
        flags=flags,
        type=vt & 0xF,
    )


def datagram_type(data: bytes | memoryview) -> int:
    """The type nibble of an edgewire datagram; raises :class:`RemoteProtocolError` for one
    shorter than the 4 common bytes or of another wire version."""
    if len(data) < 4:
        raise RemoteProtocolError(f"datagram of {len(data)} bytes is too short")
    vt = data[0]
    if vt >> 4 != WIRE_VERSION:
        raise RemoteProtocolError(f"unknown datagram version {vt >> 4}")
    return vt & 0xF


def with_sequence(datagram: bytes, sequence: int) -> bytes:
    """A media datagram with its sequence number set (numbers are given at send time, so
    that a receiver sees no gap for frames that expired in the sender's queue)."""
    return datagram[:4] + _SEQ.pack(sequence & MAX_U32) + datagram[8:]


def as_retransmission(datagram: bytes) -> bytes:
    """The same media datagram with ``FLAG_RETRANSMIT`` set."""
    return datagram[:1] + bytes((datagram[1] | FLAG_RETRANSMIT,)) + datagram[2:]


def sequence_of(datagram: bytes) -> int:
    """Sequence number of a media datagram (at least ``HEADER_SIZE`` bytes)."""
    seq: int = _SEQ.unpack_from(datagram, 4)[0]
    return seq


@dataclass(frozen=True, slots=True, kw_only=True)
class FecHeader:
    """Header of a parity datagram: which media datagrams it protects, and its place."""

    channel_id: int
    """Channel of the protected datagrams."""
    base_sequence: int
    """Sequence number of bit 0 of ``mask``."""
    mask: int
    """Bit i set: the datagram ``base_sequence + i`` is a member, in order (k = bits set)."""
    k: int
    """Number of members (source symbols)."""
    m: int
    """Number of parity datagrams of the group."""
    index: int
    """This parity symbol's index, 0..m-1 (symbol k + index of the code)."""

    @property
    def members(self) -> list[int]:
        """Sequence numbers of the members, in symbol order (wrapping at 2**32)."""
        base, mask = self.base_sequence, self.mask
        return [(base + i) & MAX_U32 for i in range(MAX_FEC_GROUP) if mask >> i & 1]


def encode_fec_header(*, channel_id: int, base_sequence: int, mask: int, m: int,
                      index: int) -> bytes:
    """Encode a parity datagram's header; the parity symbol follows it."""
    k = mask.bit_count()
    if not 0 < mask < 1 << MAX_FEC_GROUP or not mask & 1:
        raise ValueError("the member mask must be non-zero, start at bit 0 and fit 64 bits")
    if not 1 <= m or k + m > 255 or not 0 <= index < m:
        raise ValueError(f"bad FEC parameters k={k} m={m} index={index}")
    if not 0 <= channel_id <= MAX_U16:
        raise ValueError(f"channel_id {channel_id} out of range 0..65535")
    return _FEC.pack((WIRE_VERSION << 4) | TYPE_FEC, 0, channel_id, base_sequence & MAX_U32,
                     mask, k, m, index, 0)


def decode_fec_header(data: bytes | memoryview) -> FecHeader:
    """Decode a parity datagram's header (the symbol follows at ``FEC_HEADER_SIZE``).

    Raises :class:`RemoteProtocolError` for a short datagram or impossible parameters.
    """
    if len(data) < FEC_HEADER_SIZE:
        raise RemoteProtocolError(f"parity datagram of {len(data)} bytes is too short")
    vt, _flags, channel_id, base, mask, k, m, index, _ = _FEC.unpack_from(data)
    if vt != (WIRE_VERSION << 4) | TYPE_FEC:
        raise RemoteProtocolError("not a parity datagram")
    if mask == 0 or not mask & 1 or mask.bit_count() != k:
        raise RemoteProtocolError(f"member mask disagrees with k={k}")
    if m == 0 or k + m > 255 or index >= m:
        raise RemoteProtocolError(f"bad FEC parameters k={k} m={m} index={index}")
    return FecHeader(channel_id=channel_id, base_sequence=base, mask=mask, k=k, m=m,
                     index=index)


def encode_nack(channel_id: int, ranges: list[tuple[int, int]]) -> bytes:
    """A NACK for ``ranges`` of (first sequence, count) missing on ``channel_id``."""
    if not 0 < len(ranges) <= MAX_NACK_RANGES:
        raise ValueError(f"a NACK carries 1..{MAX_NACK_RANGES} ranges")
    if not 0 <= channel_id <= MAX_U16:
        raise ValueError(f"channel_id {channel_id} out of range 0..65535")
    out = [_NACK.pack((WIRE_VERSION << 4) | TYPE_NACK, 0, channel_id, len(ranges))]
    for first, count in ranges:
        if not 1 <= count <= MAX_U16 + 1:
            raise ValueError(f"range count {count} out of 1..65536")
        out.append(_NACK_RANGE.pack(first & MAX_U32, count - 1))
    return b"".join(out)


def decode_nack(data: bytes | memoryview) -> tuple[int, list[tuple[int, int]]]:
    """Decode a NACK: (channel id, [(first sequence, count), ...]).

    Raises :class:`RemoteProtocolError` when the length disagrees with the range count or
    the count is 0 or above ``MAX_NACK_RANGES``.
    """
    if len(data) < _NACK.size:
        raise RemoteProtocolError(f"NACK of {len(data)} bytes is too short")
    vt, _flags, channel_id, n = _NACK.unpack_from(data)
    if vt != (WIRE_VERSION << 4) | TYPE_NACK:
        raise RemoteProtocolError("not a NACK")
    if not 0 < n <= MAX_NACK_RANGES or len(data) != _NACK.size + n * _NACK_RANGE.size:
        raise RemoteProtocolError(f"NACK length {len(data)} disagrees with {n} ranges")
    ranges = [(first, extra + 1) for first, extra in
              (_NACK_RANGE.unpack_from(data, _NACK.size + i * _NACK_RANGE.size)
               for i in range(n))]
    return channel_id, ranges


def encode_stream_prefix(channel_id: int) -> bytes:
    """The two bytes that open a reliable channel's unidirectional stream."""
    return _STREAM_PREFIX.pack(channel_id)


def encode_record_header(length: int) -> bytes:
    """The 4-byte length that precedes a record body of ``length`` bytes."""
    if length > MAX_U32:
        raise ValueError("record body larger than 4 GiB")
    return _RECORD.pack(length)


def encode_record(body: bytes) -> bytes:
    """Frame one message for a stream: 4-byte big-endian length, then the body."""
    if len(body) > MAX_U32:
        raise ValueError("record body larger than 4 GiB")
    return _RECORD.pack(len(body)) + body


class RecordReader:
    """Reassembles length-prefixed records from stream data that arrives in pieces.

    ``max_record`` bounds how much a peer can make it buffer: a length above it raises
    :class:`RemoteProtocolError` with ``MESSAGE_TOO_LARGE`` before any of the body is kept.
    """

    __slots__ = ("_buf", "max_record")

    def __init__(self, *, max_record: int) -> None:
        self._buf = bytearray()
        self.max_record = max_record

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a record."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add stream bytes; return every record they complete, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= RECORD_HEADER_SIZE:
            (length,) = _RECORD.unpack_from(buf, pos)
            if length > self.max_record:
                raise RemoteProtocolError(
                    f"record of {length} bytes exceeds the limit of {self.max_record}",
                    error_code=ErrorCode.MESSAGE_TOO_LARGE,
                )
            end = pos + RECORD_HEADER_SIZE + length
            if end > n:
                break
            out.append(bytes(buf[pos + RECORD_HEADER_SIZE : end]))
            pos = end
        if pos:
            del buf[:pos]
        return out
