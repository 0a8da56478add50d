"""Reliable record bodies: token messages and numpy arrays (edgewire.transport.messages)."""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal

from edgewire.codecs.envelope import K_MAX_ELEMENTS
from edgewire.codecs.tokens import encode_token_frame
from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.transport.messages import (
    TokenMessage,
    decode_array,
    decode_tokens,
    encode_array,
    encode_tokens,
)

U32 = 1 << 32
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

DTYPES = [
    np.dtype(s)
    for s in (
        "?", "i1", "<i2", "<i4", "<i8", "u1", "<u2", "<u4", "<u8",
        "<f2", "<f4", "<f8", "<c8", "<c16",
        # the sender's byte order travels in the dtype string and must survive
        ">i4", ">u8", ">f8", ">c8",
    )
]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dtype=dt,
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        # NaN with any payload, infinities, subnormals: bytes must come back unchanged
        elements=None,
    )
)


def check_array_round_trip(arr: np.ndarray[Any, Any], ts: float) -> None:
    got, got_ts = decode_array(encode_array(arr, ts))
    assert got.dtype == arr.dtype
    assert got.dtype.str == arr.dtype.str
    assert got.shape == arr.shape
    assert got.tobytes() == np.ascontiguousarray(arr).tobytes()
    assert_array_equal(got, arr, strict=True)
    assert got_ts == ts


# ---------------------------------------------------------------------- arrays


@settings(max_examples=300)
@given(arr=arrays, ts=finite_floats)
def test_array_round_trip(arr: np.ndarray[Any, Any], ts: float) -> None:
    check_array_round_trip(arr, ts)


@pytest.mark.parametrize(
    "arr",
    [
        np.float32(1.5),
        np.array(7, dtype=np.int64),
        np.zeros((0,), dtype=np.float32),
        np.zeros((3, 0, 2), dtype=np.complex64),
        np.array([np.nan, -np.inf, np.inf, -0.0], dtype=np.float64),
        np.array([True, False]),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4).transpose(2, 0, 1),
        np.arange(20, dtype=np.float64)[::3],
        np.ones((1,) * 32, dtype=np.uint8),
    ],
    ids=["0d-scalar", "0d-array", "empty", "empty-3d", "nonfinite", "bool", "transposed",
         "strided", "32-dims"],
)
def test_array_round_trip_examples(arr: Any) -> None:
    check_array_round_trip(np.asarray(arr), 1.25)


def test_list_input_is_converted() -> None:
    got, _ = decode_array(encode_array([[1.0, 2.0], [3.0, 4.0]], 0.0))
    assert_array_equal(got, np.array([[1.0, 2.0], [3.0, 4.0]]), strict=True)


def test_received_array_is_read_only() -> None:
    # the receive path hands out a view over the record bytes instead of copying
    got, _ = decode_array(encode_array(np.arange(4), 0.0))
    assert not got.flags.writeable


def test_array_wire_format() -> None:
    # an "array" envelope; the array is an RFC 8746 typed array (69: uint16 little-endian)
    # inside tag 40 (multi-dimensional), readable by plain cbor2
    obj = cbor2.loads(encode_array(np.array([[1, 2]], dtype="<u2"), 3))
    assert obj == {"v": 1, "type": "array", "ts": 3.0,
                   "data": cbor2.CBORTag(40, ((1, 2), cbor2.CBORTag(69, b"\x01\x00\x02\x00")))}
    assert type(obj["ts"]) is float
    assert cbor2.loads(encode_array(np.array([1.5], dtype=">f8"), 0))["data"] == cbor2.CBORTag(
        82, b"\x3f\xf8" + b"\x00" * 6)
    obj = cbor2.loads(encode_array(np.array([True, False]), 0))
    assert (obj["dtype"], obj["data"]) == ("bool", cbor2.CBORTag(64, b"\x01\x00"))
    obj = cbor2.loads(encode_array(np.array([1 + 2j], dtype="<c8"), 0))
    assert obj["dtype"] == "complex64"
    assert obj["data"] == cbor2.CBORTag(40, ((1, 2), cbor2.CBORTag(
        85, np.array([1, 2], "<f4").tobytes())))


def test_array_record_can_be_compressed() -> None:
    arr = np.zeros((64, 64), dtype=np.int32)
    body = encode_array(arr, 1.0, compress=True)
    assert len(body) < arr.nbytes // 10
    assert "zstd" in cbor2.loads(body)
    got, ts = decode_array(body)
    assert_array_equal(got, arr, strict=True)
    assert ts == 1.0


@pytest.mark.parametrize(
    "arr",
    [
        np.array([object()], dtype=object),
        np.array(["a", "bc"]),
        np.array([b"a"]),
        np.zeros(2, dtype="V8"),
        np.zeros(2, dtype="i4,f8"),
        np.zeros(2, dtype="M8[s]"),
        np.zeros(2, dtype="m8[s]"),
        np.ones((1,) * 33, dtype=np.uint8),
        np.ones((1,) * 32, dtype=np.complex64),
        np.zeros(2, dtype=np.longdouble),
    ],
    ids=["object", "unicode", "bytes", "void", "structured", "datetime", "timedelta",
         "33-dims", "32-dims-complex", "longdouble"],
)
def test_encode_array_refuses_non_numeric(arr: np.ndarray[Any, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_array(arr, 0.0)


def _array_map(**changes: Any) -> bytes:
    """A valid array record (2 float32 zeros), with fields changed (KeyError: removed)."""
    obj: dict[str, Any] = {"v": 1, "type": "array", "ts": 1.0,
                           "data": cbor2.CBORTag(85, b"\x00" * 8)}
    for key, value in changes.items():
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return cbor2.dumps(obj)


def _dims(dims: Any, tag: int = 85, data: bytes = b"\x00" * 8) -> cbor2.CBORTag:
    return cbor2.CBORTag(40, [dims, cbor2.CBORTag(tag, data)])


def test_base_array_map_is_valid() -> None:
    arr, ts = decode_array(_array_map())
    assert (arr.shape, arr.dtype.str, ts) == ((2,), "<f4", 1.0)


def assert_array_rejected(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_array(body)


@pytest.mark.parametrize(
    "tag", [76, 83, 87, 88, 63, 41, 1040 + 1, 2, 0, 1, 258, 1 << 20],
)
def test_decode_array_rejects_bad_tag(tag: int) -> None:
    # 76 is reserved, 83/87 are 128-bit floats; the rest are not typed arrays
    assert_array_rejected(_array_map(data=cbor2.CBORTag(tag, b"\x00" * 16)))


@pytest.mark.parametrize(
    "changes",
    [
        {"data": cbor2.CBORTag(85, b"\x00" * 7)},  # not a multiple of the element size
        {"data": cbor2.CBORTag(86, b"\x00" * 12)},
        {"data": cbor2.CBORTag(85, "\x00" * 8)},  # text, not bytes
        {"data": _dims([3])},  # size mismatch
        {"data": _dims([])},  # a scalar of 4 bytes, but 8 bytes of data
        {"data": _dims([-2])},
        {"data": _dims([True, 2])},
        {"data": _dims([2.0])},
        {"data": _dims([1 << 63])},
        {"data": _dims([1 << 62, 1 << 62])},
        {"data": _dims([1] * 33)},
        {"data": _dims(2)},
        {"data": _dims(None)},
        {"data": cbor2.CBORTag(40, [[2]])},
        {"data": cbor2.CBORTag(40, [[2], b"\x00" * 8])},
        {"data": cbor2.CBORTag(40, [[1], _dims([1])])},
        {"data": b"\x00" * 8},
        {"data": [0] * 8},
        {"data": KeyError},
        {"dtype": "float32"},
        {"dtype": 4},
        {"dtype": None},
        {"dtype": "bool"},  # bool travels as uint8
        {"dtype": "bool", "data": cbor2.CBORTag(64, b"\x00\x02")},
        {"dtype": "complex64", "data": cbor2.CBORTag(86, b"\x00" * 16)},  # float64 pairs
        {"dtype": "complex128", "data": cbor2.CBORTag(85, b"\x00" * 16)},
        {"dtype": "complex64", "data": _dims([2, 1])},  # not pairs
        {"extra": 1},
        {"ts": 1},  # timestamps are floats on the wire
        {"ts": math.nan},
        {"ts": math.inf},
        {"ts": True},
        {"ts": None},
        {"ts": KeyError},
        {"v": 2},
        {"v": "1"},
        {"v": KeyError},
        {"type": "emb"},
        {"type": KeyError},
        {"zstd": b"\x00"},
    ],
)
def test_decode_array_rejects_bad_map(changes: dict[str, Any]) -> None:
    assert_array_rejected(_array_map(**changes))


@pytest.mark.parametrize("obj", [[], [1.0, "<f4", [2], b""], "x", 1, None, b"\x00"])
def test_decode_array_rejects_non_maps(obj: Any) -> None:
    assert_array_rejected(cbor2.dumps(obj))


def check_decode_array(body: bytes) -> None:
    error: RemoteProtocolError | None = None
    try:
        arr, ts = decode_array(body)
    except RemoteProtocolError as exc:
        error = exc
    if error is None:
        assert isinstance(arr, np.ndarray)
        assert arr.dtype.kind in "biufc"
        assert math.isfinite(ts)


@settings(max_examples=500)
@given(body=st.binary(max_size=64))
def test_decode_array_arbitrary_bytes(body: bytes) -> None:
    check_decode_array(body)


@st.composite
def crafted_array_maps(draw: st.DrawFn) -> bytes:
    """Envelopes that look like array records: valid ones and ones with one part wrong."""
    typed = [t for t in range(64, 88) if t not in (76, 83, 87)]
    wrong = draw(st.sampled_from(["nothing", "nothing", "nothing", "tag", "shape", "data",
                                  "v", "type", "ts", "dtype", "missing"]))
    tag = draw(st.integers(min_value=60, max_value=90) if wrong == "tag"
               else st.sampled_from(typed))
    dims = st.one_of(st.integers(min_value=0, max_value=6),
                     st.sampled_from([-1, 1 << 31, (1 << 63) - 1, 1 << 63, 1 << 64]),
                     st.booleans(), finite_floats)
    shape = draw(st.lists(dims, max_size=34) if wrong == "shape"
                 else st.lists(st.integers(min_value=0, max_value=4), max_size=4))
    size = math.prod(d for d in shape if isinstance(d, int) and 0 <= d < 100) * (
        1 << (tag & 3) if 64 <= tag <= 87 else 4)
    data = draw(st.binary(max_size=64)) if wrong == "data" else b"\x00" * size
    outer = draw(st.sampled_from([40, 1040]))
    value = [cbor2.CBORTag(tag, data), cbor2.CBORTag(outer, [shape, cbor2.CBORTag(tag, data)])
             ][draw(st.integers(min_value=0, max_value=1))]
    obj: dict[str, Any] = {"v": 1, "type": "array", "ts": draw(finite_floats), "data": value}
    if wrong == "v":
        obj["v"] = draw(st.sampled_from([0, 2, "1", None, 1.0]))
    elif wrong == "type":
        obj["type"] = draw(st.sampled_from(["emb", "", None, 1]))
    elif wrong == "ts":
        obj["ts"] = draw(st.one_of(st.floats(), st.integers(), st.none()))
    elif wrong == "dtype":
        obj["dtype"] = draw(st.sampled_from(["bool", "complex64", "complex128", "x", None]))
    elif wrong == "missing":
        del obj[draw(st.sampled_from(sorted(obj)))]
    return cbor2.dumps(obj)


@settings(max_examples=500)
@given(body=crafted_array_maps())
def test_decode_array_crafted_maps(body: bytes) -> None:
    check_decode_array(body)


@pytest.mark.parametrize(
    "shape", [[0, 1 << 62, 1 << 62], [(1 << 63) - 1, 0, 4], [0] + [(1 << 63) - 1] * 31,
              [0, 1 << 40], [0, K_MAX_ELEMENTS + 1]]
)
def test_decode_array_zero_size_with_huge_dims(shape: list[int]) -> None:
    # the element count is 0, so the size check alone would pass; dimensions are bounded
    assert_array_rejected(_array_map(data=_dims(shape, data=b"")))


def test_decode_array_zero_size_with_bounded_dims() -> None:
    arr, _ = decode_array(_array_map(data=_dims([0, K_MAX_ELEMENTS], data=b"")))
    assert arr.shape == (0, K_MAX_ELEMENTS)


# ---------------------------------------------------------------------- tokens

token_ids = st.lists(st.integers(min_value=0, max_value=U32 - 1), max_size=50).map(tuple)


@settings(max_examples=300)
@given(ids=token_ids, text=st.one_of(st.none(), st.text(max_size=100)), ts=finite_floats)
def test_tokens_round_trip(ids: tuple[int, ...], text: str | None, ts: float) -> None:
    got = decode_tokens(encode_tokens(ids, text, ts))
    assert (got.ids, got.text, got.timestamp) == (ids, text, ts)
    assert type(got.timestamp) is float
    assert (got.logprobs, got.end, got.error) == (None, False, None)


def test_tokens_wire_format() -> None:
    # header 0x6c: version 1, absolute float64 timestamp, MULTI (count), TEXT
    assert encode_tokens((5, 7), "hi", 2) == (
        b"\x6c" + struct.pack("<d", 2.0) + b"\x02\x05\x07\x02hi")
    assert encode_tokens((), None, 0.5) == b"\x68" + struct.pack("<d", 0.5) + b"\x00"
    # one id and no text: no count, the id as a LEB128 varint
    assert encode_tokens((300,), None, 0.0) == b"\x60" + bytes(8) + b"\xac\x02"


@pytest.mark.parametrize("bad", [-1, U32, 1 << 70, True, False, 1.0, "1", None, b"\x01"])
def test_encode_tokens_rejects_bad_ids(bad: Any) -> None:
    with pytest.raises(LocalProtocolError, match="token id"):
        encode_tokens((1, bad), None, 0.0)


@pytest.mark.parametrize("text", [b"hi", 5, ["hi"]])
def test_encode_tokens_rejects_bad_text(text: Any) -> None:
    with pytest.raises(LocalProtocolError, match="text"):
        encode_tokens((1,), text, 0.0)


_TS = struct.pack("<d", 1.0)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x20" + _TS + b"\x01",  # version 0
        b"\xa0" + _TS + b"\x01",  # version 2 (a CBOR array of the former format)
        b"\x83\xf9\x3c\x00\x81\x01\xf6",  # the former CBOR record [1.0, [1], null]
        b"\x40\x01",  # no timestamp: a record needs one
        b"\x50\x02\x01",  # a millisecond delta, with nothing to add it to
        b"\x70" + _TS + b"\x01",  # reserved timestamp mode
        b"\x60" + _TS[:5],  # truncated timestamp
        b"\x60" + struct.pack("<d", math.nan) + b"\x01",
        b"\x60" + struct.pack("<d", math.inf) + b"\x01",
        b"\x60" + _TS,  # the id is missing
        b"\x60" + _TS + b"\x81",  # truncated varint
        b"\x60" + _TS + b"\x80\x80\x80\x80\x80\x01",  # varint longer than 5 bytes
        b"\x60" + _TS + b"\x81\x00",  # non-minimal varint
        b"\x60" + _TS + b"\x80\x80\x80\x80\x10",  # id 2**32
        b"\x68" + _TS + b"\x05\x01\x02",  # count beyond the frame
        b"\x68" + _TS + b"\xff\xff\xff\xff\x0f",  # huge count
        b"\x64" + _TS + b"\x01\x05hi",  # text length beyond the frame
        b"\x64" + _TS + b"\x01\x02\xff\xfe",  # text not UTF-8
        b"\x62" + _TS + b"\x01\x00",  # truncated logprob
        b"\x61\x04" + _TS + b"\x01",  # reserved control bit
        b"\x61\x02" + _TS + b"\x01\x00",  # ERROR without END
        b"\x61\x03" + _TS + b"\x01\x05ab",  # error message beyond the frame
        b"\x60" + _TS + b"\x01\x00",  # trailing byte
    ],
)
def test_decode_tokens_rejects(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_tokens(body)


def test_decode_tokens_carries_logprobs_end_and_error() -> None:
    body = encode_token_frame((3,), text="a", logprobs=(-0.5,), timestamp=2.0, end=True)
    assert decode_tokens(body) == TokenMessage(ids=(3,), text="a", timestamp=2.0,
                                               logprobs=(-0.5,), end=True)
    body = encode_tokens((), None, 1.0, error="model overloaded")
    assert decode_tokens(body) == TokenMessage(ids=(), timestamp=1.0, end=True,
                                               error="model overloaded")


def check_decode_tokens(body: bytes) -> None:
    error: RemoteProtocolError | None = None
    try:
        msg = decode_tokens(body)
        ids, text, ts = msg.ids, msg.text, msg.timestamp
    except RemoteProtocolError as exc:
        error = exc
    if error is None:
        assert all(type(i) is int and 0 <= i < U32 for i in ids)
        assert text is None or isinstance(text, str)
        assert type(ts) is float
        assert math.isfinite(ts)


@settings(max_examples=500)
@given(body=st.binary(max_size=64))
def test_decode_tokens_arbitrary_bytes(body: bytes) -> None:
    check_decode_tokens(body)


@settings(max_examples=500)
@given(head=st.integers(min_value=0x40, max_value=0x7F),
       ctrl=st.sampled_from([b"", b"\x01", b"\x03", b"\x02", b"\x80"]),
       ts=st.one_of(st.floats().map(lambda f: struct.pack("<d", f)), st.binary(max_size=9)),
       tail=st.binary(max_size=24))
def test_decode_tokens_crafted_frames(head: int, ctrl: bytes, ts: bytes, tail: bytes) -> None:
    check_decode_tokens(bytes([head]) + ctrl + ts + tail)
