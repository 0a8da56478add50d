"""Datagram header and stream record framing (edgewire.transport.wire)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import RemoteProtocolError
from edgewire.transport.wire import (
    FLAG_KEYFRAME,
    HEADER_SIZE,
    RECORD_HEADER_SIZE,
    STREAM_PREFIX_SIZE,
    TYPE_MEDIA,
    WIRE_VERSION,
    DatagramHeader,
    ErrorCode,
    RecordReader,
    decode_header,
    encode_header,
    encode_record,
    encode_stream_prefix,
)

U32 = 1 << 32

# Counters are taken modulo 2**32 by the encoder, so feed it values far outside that range
# (negative too) to check the wrap rather than only the identity.
counters = st.integers(min_value=-(1 << 40), max_value=1 << 40)


@st.composite
def fragments(draw: st.DrawFn) -> tuple[int, int]:
    count = draw(st.integers(min_value=1, max_value=0xFFFF))
    index = draw(st.integers(min_value=0, max_value=count - 1))
    return index, count


@st.composite
def header_fields(draw: st.DrawFn) -> dict[str, int]:
    index, count = draw(fragments())
    return {
        "channel_id": draw(st.integers(min_value=0, max_value=0xFFFF)),
        "sequence": draw(counters),
        "timestamp_us": draw(counters),
        "frame_id": draw(counters),
        "frag_index": index,
        "frag_count": count,
        "flags": draw(st.integers(min_value=0, max_value=0xFF)),
        "type": draw(st.integers(min_value=0, max_value=0xF)),
    }


def valid_header(**changes: int) -> bytearray:
    fields = {"channel_id": 2, "sequence": 7, "timestamp_us": 1000, "frame_id": 3}
    fields.update(changes)
    return bytearray(encode_header(**fields))


# ---------------------------------------------------------------------- datagram header


def test_header_size_and_constants() -> None:
    assert HEADER_SIZE == 20
    assert RECORD_HEADER_SIZE == 4
    assert STREAM_PREFIX_SIZE == 2
    assert WIRE_VERSION == 1
    assert TYPE_MEDIA == 0
    assert FLAG_KEYFRAME == 0x01


def test_header_byte_layout() -> None:
    # Pins the layout drawn in docs/PROTOCOL.md, byte by byte.
    data = encode_header(
        channel_id=0x0102, sequence=0x03040506, timestamp_us=0x0708090A, frame_id=0x0B0C0D0E,
        frag_index=0x0F10, frag_count=0x1112, flags=0x81, type=0x5,
    )
    assert data == bytes.fromhex("15 81 0102 03040506 0708090a 0b0c0d0e 0f10 1112")


@settings(max_examples=300)
@given(fields=header_fields(), payload=st.binary(max_size=32))
def test_header_round_trip(fields: dict[str, int], payload: bytes) -> None:
    data = encode_header(**fields)
    assert len(data) == HEADER_SIZE
    # decode must accept the header at the start of a whole datagram, as a memoryview too
    hdr = decode_header(memoryview(data + payload))
    assert hdr == DatagramHeader(
        channel_id=fields["channel_id"],
        sequence=fields["sequence"] % U32,
        timestamp_us=fields["timestamp_us"] % U32,
        frame_id=fields["frame_id"] % U32,
        frag_index=fields["frag_index"],
        frag_count=fields["frag_count"],
        flags=fields["flags"],
        type=fields["type"],
    )
    assert hdr.keyframe == bool(fields["flags"] & FLAG_KEYFRAME)


def test_counters_wrap_at_2_32() -> None:
    hdr = decode_header(encode_header(channel_id=0, sequence=U32 + 5, timestamp_us=-1,
                                      frame_id=U32 - 1))
    assert (hdr.sequence, hdr.timestamp_us, hdr.frame_id) == (5, U32 - 1, U32 - 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"channel_id": -1},
        {"channel_id": 0x10000},
        {"frag_count": 0, "frag_index": 0},
        {"frag_count": 0x10000, "frag_index": 0},
        {"frag_count": 3, "frag_index": 3},
        {"frag_count": 3, "frag_index": -1},
        {"type": 16},
        {"type": -1},
        {"flags": 256},
        {"flags": -1},
    ],
)
def test_encode_header_rejects_out_of_range_fields(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        valid_header(**changes)


def _check_decode(data: bytes) -> None:
    try:
        hdr = decode_header(data)
    except RemoteProtocolError:
        return
    assert isinstance(hdr, DatagramHeader)
    # every header byte is meaningful, so an accepted header re-encodes to the same bytes
    assert encode_header(
        channel_id=hdr.channel_id, sequence=hdr.sequence, timestamp_us=hdr.timestamp_us,
        frame_id=hdr.frame_id, frag_index=hdr.frag_index, frag_count=hdr.frag_count,
        flags=hdr.flags, type=hdr.type,
    ) == bytes(data[:HEADER_SIZE])


@settings(max_examples=500)
@given(data=st.binary(max_size=48))
def test_decode_header_arbitrary_bytes(data: bytes) -> None:
    _check_decode(data)


@settings(max_examples=300)
@given(data=st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE + 8))
def test_decode_header_arbitrary_bytes_with_version_1(data: bytes) -> None:
    # arbitrary bytes rarely carry version 1; force it so the fragment checks get exercised
    _check_decode(bytes([0x10 | (data[0] & 0xF)]) + data[1:])


@pytest.mark.parametrize("size", range(HEADER_SIZE))
def test_decode_header_rejects_short_datagrams(size: int) -> None:
    with pytest.raises(RemoteProtocolError, match="shorter than the header"):
        decode_header(bytes(valid_header())[:size])


@pytest.mark.parametrize("version", [v for v in range(16) if v != WIRE_VERSION])
def test_decode_header_rejects_other_versions(version: int) -> None:
    data = valid_header()
    data[0] = (version << 4) | (data[0] & 0xF)
    with pytest.raises(RemoteProtocolError, match="version"):
        decode_header(bytes(data))


@settings(max_examples=100)
@given(index=st.integers(min_value=0, max_value=0xFFFF))
def test_decode_header_rejects_frag_count_zero(index: int) -> None:
    data = valid_header()
    struct.pack_into("!HH", data, 16, index, 0)
    with pytest.raises(RemoteProtocolError, match="fragment"):
        decode_header(bytes(data))


@settings(max_examples=200)
@given(count=st.integers(min_value=1, max_value=0xFFFF), data=st.data())
def test_decode_header_rejects_frag_index_beyond_count(count: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=count, max_value=0xFFFF))
    raw = valid_header()
    struct.pack_into("!HH", raw, 16, index, count)
    with pytest.raises(RemoteProtocolError, match="fragment"):
        decode_header(bytes(raw))


def test_decode_header_keeps_unknown_type_and_flags() -> None:
    # unknown types and flag bits are the session's to count or ignore, not the parser's
    hdr = decode_header(bytes(valid_header(type=0xF, flags=0xFE)))
    assert hdr.type == 0xF
    assert hdr.flags == 0xFE
    assert not hdr.keyframe


# ---------------------------------------------------------------------- stream framing


def test_encode_record_and_stream_prefix_layout() -> None:
    assert encode_record(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_record(b"") == b"\x00\x00\x00\x00"
    assert encode_stream_prefix(0x1234) == b"\x12\x34"


records_strategy = st.lists(st.binary(max_size=40), max_size=12)


@settings(max_examples=300)
@given(records=records_strategy, data=st.data())
def test_record_reader_reassembles_any_split(records: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_record(r) for r in records)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)),
                                     max_size=20)))
    reader = RecordReader(max_record=40)
    out: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += reader.feed(stream[prev:cut])
        prev = cut
        # whatever has not come out as a record must still be held, nothing more or less
        emitted = sum(RECORD_HEADER_SIZE + len(r) for r in out)
        assert reader.buffered == cut - emitted
    assert out == records
    assert reader.buffered == 0


def test_record_reader_byte_by_byte() -> None:
    records = [b"", b"x", b"hello world", b"\x00" * 9]
    stream = b"".join(encode_record(r) for r in records)
    reader = RecordReader(max_record=100)
    out = [rec for i in range(len(stream)) for rec in reader.feed(stream[i : i + 1])]
    assert out == records


def test_record_reader_accepts_exactly_max_record() -> None:
    reader = RecordReader(max_record=8)
    assert reader.feed(encode_record(b"12345678")) == [b"12345678"]


@settings(max_examples=100)
@given(limit=st.integers(min_value=0, max_value=1 << 20),
       excess=st.integers(min_value=1, max_value=1 << 20))
def test_record_reader_rejects_length_above_limit(limit: int, excess: int) -> None:
    reader = RecordReader(max_record=limit)
    # the length alone must be refused, before the peer sends (and we buffer) the body
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(struct.pack("!I", limit + excess))
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE


def test_record_reader_rejects_oversize_record_after_good_ones() -> None:
    reader = RecordReader(max_record=4)
    assert reader.feed(encode_record(b"ok")) == [b"ok"]
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(encode_record(b"too long"))
    assert info.value.error_code == ErrorCode.MESSAGE_TOO_LARGE


def _model_records(stream: bytes, limit: int) -> tuple[list[bytes], bool]:
    """Records a straightforward parser finds in ``stream``, and whether it hits a bad length."""
    out: list[bytes] = []
    pos = 0
    while len(stream) - pos >= RECORD_HEADER_SIZE:
        (length,) = struct.unpack_from("!I", stream, pos)
        if length > limit:
            return out, True
        end = pos + RECORD_HEADER_SIZE + length
        if end > len(stream):
            break
        out.append(stream[pos + RECORD_HEADER_SIZE : end])
        pos = end
    return out, False


# Plain random bytes almost always start with a length in the gigabytes; mixing in small
# lengths and well-formed records reaches the paths where records complete between garbage.
stream_pieces = st.one_of(
    st.binary(max_size=16),
    st.integers(min_value=0, max_value=80).map(lambda n: struct.pack("!I", n)),
    st.binary(max_size=40).map(encode_record),
)


@settings(max_examples=400)
@given(pieces=st.lists(stream_pieces, max_size=8),
       limit=st.integers(min_value=0, max_value=64), data=st.data())
def test_record_reader_arbitrary_bytes(pieces: list[bytes], limit: int,
                                       data: st.DataObject) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)),
                                     max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    reader = RecordReader(max_record=limit)
    out: list[bytes] = []
    error: RemoteProtocolError | None = None
    try:
        for chunk in chunks:
            out += reader.feed(chunk)
    except RemoteProtocolError as exc:
        error = exc
    expected, bad = _model_records(b"".join(chunks), limit)
    if error is None:
        assert not bad
        assert out == expected
    else:
        assert bad
        assert error.error_code == ErrorCode.MESSAGE_TOO_LARGE
        # records completed by the failing feed() are not returned; earlier ones were
        assert out == expected[: len(out)]


def test_error_codes() -> None:
    # these numbers are on the wire (CONNECTION_CLOSE); docs/PROTOCOL.md lists them
    assert {c.name: c.value for c in ErrorCode} == {
        "NO_ERROR": 0,
        "INTERNAL_ERROR": 1,
        "VERSION_NEGOTIATION_FAILED": 2,
        "CONTROL_PROTOCOL_ERROR": 3,
        "STREAM_PROTOCOL_ERROR": 4,
        "MESSAGE_TOO_LARGE": 5,
        "CHANNEL_LIMIT_EXCEEDED": 6,
        "HELLO_TIMEOUT": 7,
        "RECEIVE_BUFFER_OVERFLOW": 8,
    }
