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
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from edgewire.errors import RemoteProtocolError

__all__ = [
    "FLAG_KEYFRAME",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "RECORD_HEADER_SIZE",
    "STREAM_PREFIX_SIZE",
    "TYPE_MEDIA",
    "WIRE_VERSION",
    "DatagramHeader",
    "ErrorCode",
    "RecordReader",
    "decode_header",
    "encode_header",
    "encode_record",
    "encode_record_header",
]

#: Version of the datagram header layout (high nibble of the first byte).
WIRE_VERSION = 1
#: Version of the edgewire protocol negotiated in the hello.
PROTOCOL_VERSION = 1

#: Datagram types (low nibble of the first byte). Other values are reserved for FEC parity,
#: NACKs and probes; a receiver counts and drops types it does not know.
TYPE_MEDIA = 0

#: Flag bits. Unknown bits are sent as zero and ignored on receipt.
FLAG_KEYFRAME = 0x01

_HEADER = struct.Struct("!BBHIIIHH")
HEADER_SIZE = _HEADER.size  # 20 bytes

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
