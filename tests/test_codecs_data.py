"""Data codecs: the CBOR envelope (RFC 8746 typed arrays), token frames, embeddings."""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import cbor2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal

import edgewire.codecs.envelope as envelope_mod
from edgewire.codecs.base import (
    CodecError,
    available_codecs,
    create_decoder,
    create_encoder,
)
from edgewire.codecs.embeddings import (
    AUTO_LADDER,
    K_ENVELOPE_BYTES,
    PRECISIONS,
    EmbeddingDecoder,
    EmbeddingEncoder,
    bytes_per_vector,
    decode_embeddings,
    encode_embeddings,
)
from edgewire.codecs.envelope import (
    K_MAX_ELEMENTS,
    K_MAX_NDIM,
    array_from_cbor,
    decode_envelope,
    encode_envelope,
)
from edgewire.codecs.tokens import (
    K_MAX_ERROR_BYTES,
    TokenDecoder,
    TokenEncoder,
    TokenFrame,
    decode_token_frame,
    encode_token_frame,
)
from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.transport.qos import ChannelKind

finite = st.floats(allow_nan=False, allow_infinity=False)
TAGGED = ["|u1", "<u2", ">u2", "<u4", ">u4", "<u8", ">u8", "|i1", "<i2", ">i2", "<i4", ">i4",
          "<i8", ">i8", "<f2", ">f2", "<f4", ">f4", "<f8", ">f8"]
EXPECTED_TAG = {"|u1": 64, ">u2": 65, ">u4": 66, ">u8": 67, "<u2": 69, "<u4": 70, "<u8": 71,
                "|i1": 72, ">i2": 73, ">i4": 74, ">i8": 75, "<i2": 77, "<i4": 78, "<i8": 79,
                ">f2": 80, ">f4": 81, ">f8": 82, "<f2": 84, "<f4": 85, "<f8": 86}


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray[Any, Any]:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosines(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(-1) / np.linalg.norm(a64, axis=-1) / np.linalg.norm(b64, axis=-1)


def only_codec_errors(fn: Any, data: bytes) -> None:
    """``fn(data)`` either succeeds or raises CodecError, nothing else."""
    try:
        fn(data)
    except CodecError:
        pass


# ====================================================================== envelope

arrays = st.sampled_from(TAGGED).flatmap(lambda dt: hnp.arrays(
    dtype=np.dtype(dt), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
plain = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | finite | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=200)
@given(arr=arrays, extra=plain, nested=st.lists(arrays, max_size=2))
def test_envelope_round_trip(arr: np.ndarray[Any, Any], extra: Any,
                             nested: list[np.ndarray[Any, Any]]) -> None:
    env = decode_envelope(encode_envelope("t", {"a": arr, "x": extra, "n": {"l": nested}}))
    assert env.type == "t"
    assert env.compressed is False
    got = env.fields["a"]
    assert (got.dtype.str, got.shape) == (arr.dtype.str, arr.shape)
    assert got.tobytes() == np.ascontiguousarray(arr).tobytes()  # NaN payloads too
    assert not got.flags.writeable
    assert env.fields["x"] == extra
    for want, have in zip(nested, env.fields["n"]["l"], strict=True):
        assert have.tobytes() == np.ascontiguousarray(want).tobytes()
        assert have.shape == want.shape


@pytest.mark.parametrize("dtype", TAGGED)
def test_typed_arrays_decode_with_plain_cbor2(dtype: str) -> None:
    arr = np.arange(6).astype(dtype)
    obj = cbor2.loads(encode_envelope("t", {"flat": arr, "grid": arr.reshape(2, 3)}))
    assert obj["v"] == 1
    assert obj["type"] == "t"
    flat = obj["flat"]
    assert isinstance(flat, cbor2.CBORTag)
    assert (flat.tag, flat.value) == (EXPECTED_TAG[dtype], arr.tobytes())
    grid = obj["grid"]
    assert grid.tag == 40
    dims, inner = grid.value
    assert list(dims) == [2, 3]
    assert (inner.tag, inner.value) == (EXPECTED_TAG[dtype], arr.tobytes())


def test_rfc8746_examples_from_other_encoders() -> None:
    # built by hand, as a peer without edgewire would: uint8 clamped, column-major, 0-d
    assert array_from_cbor(cbor2.CBORTag(68, b"\x01\xff")).tolist() == [1, 255]
    fortran = cbor2.CBORTag(1040, [[2, 3], cbor2.CBORTag(72, bytes([1, 2, 3, 4, 5, 6]))])
    assert array_from_cbor(fortran).tolist() == [[1, 3, 5], [2, 4, 6]]
    scalar = array_from_cbor(cbor2.CBORTag(40, [[], cbor2.CBORTag(86, struct.pack("<d", 2.5))]))
    assert (scalar.shape, float(scalar)) == ((), 2.5)


def _tag40(dims: Any, tag: int = 85, data: bytes = b"\x00" * 8) -> cbor2.CBORTag:
    return cbor2.CBORTag(40, [dims, cbor2.CBORTag(tag, data)])


@pytest.mark.parametrize(
    "obj",
    [
        cbor2.CBORTag(76, b"\x00\x00"),  # reserved
        cbor2.CBORTag(83, b"\x00" * 16),  # float128: refused
        cbor2.CBORTag(87, b"\x00" * 16),
        cbor2.CBORTag(41, [1, 2]),
        cbor2.CBORTag(85, b"\x00" * 7),  # not a multiple of 4
        cbor2.CBORTag(86, b"\x00" * 12),
        cbor2.CBORTag(85, "text"),
        cbor2.CBORTag(85, [0, 0]),
        _tag40([3]),  # 3 elements declared, 2 present
        _tag40([]),
        _tag40([-2]),
        _tag40([2, -1]),
        _tag40([True, 2]),
        _tag40([2.0]),
        _tag40(["2"]),
        _tag40(2),
        _tag40(None),
        _tag40([1] * (K_MAX_NDIM + 1)),
        _tag40([K_MAX_ELEMENTS + 1], data=b""),
        _tag40([0, K_MAX_ELEMENTS + 1], data=b""),
        _tag40([1 << 40, 1 << 40], data=b""),
        cbor2.CBORTag(40, [[2]]),
        cbor2.CBORTag(40, [[2], b"\x00" * 8]),
        cbor2.CBORTag(40, [[1], _tag40([2])]),
        b"\x00" * 8,
    ],
)
def test_bad_typed_arrays_are_refused(obj: Any) -> None:
    with pytest.raises(CodecError):
        array_from_cbor(obj)
    with pytest.raises(CodecError):
        decode_envelope(cbor2.dumps({"v": 1, "type": "t", "a": obj if not isinstance(
            obj, bytes) else cbor2.CBORTag(999, obj)}))


def test_huge_dimensions_are_refused_before_allocation() -> None:
    # 16 bytes of data claiming 2**26 elements: refused without allocating anything large
    body = cbor2.dumps({"v": 1, "type": "t", "a": _tag40([1 << 13, 1 << 13], data=b"\x00" * 16)})
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="do not match"):
            decode_envelope(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_element_budget_spans_all_arrays() -> None:
    arr = np.zeros(100, np.uint8)
    body = encode_envelope("t", {"a": arr, "b": [arr, arr]})
    assert len(decode_envelope(body, max_elements=300).fields["b"]) == 2
    with pytest.raises(CodecError):
        decode_envelope(body, max_elements=299)


@pytest.mark.parametrize(
    "obj",
    [
        {"v": 2, "type": "t"}, {"v": "1", "type": "t"}, {"v": True, "type": "t"},
        {"type": "t"}, {"v": 1}, {"v": 1, "type": ""}, {"v": 1, "type": 5},
        {"v": 1, "type": "t" * 65}, {"v": 1, "type": "t", 5: 1},
        {"v": 1, "type": "t", "x": cbor2.CBORTag(1, 0)},  # a datetime is no envelope value
        {"v": 1, "type": "t", "x": {1: 2}},
        {"v": 1, "type": "t", "x": cbor2.undefined},
        {"v": 1, "type": "t", "x": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]},
        [1, "t"], "t", None, 1,
    ],
)
def test_bad_envelopes_are_refused(obj: Any) -> None:
    with pytest.raises(CodecError):
        decode_envelope(cbor2.dumps(obj))


def test_expected_type_and_size_limit() -> None:
    body = encode_envelope("a", {"x": 1})
    assert decode_envelope(body, expected_type="a").fields == {"x": 1}
    with pytest.raises(CodecError, match="expected"):
        decode_envelope(body, expected_type="b")
    with pytest.raises(CodecError, match="exceeds"):
        decode_envelope(body, max_bytes=len(body) - 1)


@pytest.mark.parametrize("key", ["v", "type", "zstd", "size", 3])
def test_encode_refuses_reserved_or_bad_keys(key: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_envelope("t", {key: 1})


def test_encode_refuses_unencodable_values() -> None:
    with pytest.raises(LocalProtocolError):
        encode_envelope("t", {"x": object()})
    with pytest.raises(LocalProtocolError):
        encode_envelope("t", {"x": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(LocalProtocolError):
        encode_envelope("", {})


def test_compression_only_when_it_pays() -> None:
    zeros = encode_envelope("t", {"a": np.zeros(4096, np.float32)}, compress=True)
    obj = cbor2.loads(zeros)
    assert set(obj) == {"v", "zstd", "size"}
    env = decode_envelope(zeros)
    assert env.compressed
    assert env.size == obj["size"]
    assert_array_equal(env.fields["a"], np.zeros(4096, np.float32))
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
    raw = encode_envelope("t", {"a": noise}, compress=True)
    assert raw == encode_envelope("t", {"a": noise})  # random bytes: not worth it
    small = encode_envelope("t", {"a": np.zeros(8, np.uint8)}, compress=True)
    assert "zstd" not in cbor2.loads(small)  # below the minimum size


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def test_decompression_is_bounded() -> None:
    inner = encode_envelope("t", {"a": np.zeros(100_000, np.uint8)})
    lying = cbor2.dumps({"v": 1, "zstd": _zstd(inner), "size": 1000})
    with pytest.raises(CodecError, match="more than"):
        decode_envelope(lying)
    short = cbor2.dumps({"v": 1, "zstd": _zstd(inner), "size": len(inner) + 1})
    with pytest.raises(CodecError, match="less than"):
        decode_envelope(short)
    with pytest.raises(CodecError, match="size"):
        decode_envelope(cbor2.dumps({"v": 1, "zstd": _zstd(inner), "size": 1 << 40}))
    with pytest.raises(CodecError, match="size"):
        decode_envelope(cbor2.dumps({"v": 1, "zstd": _zstd(inner), "size": len(inner)}),
                        max_bytes=len(inner) - 1)
    nested = cbor2.dumps({"v": 1, "zstd": b"", "size": 0})
    with pytest.raises(CodecError, match="inside"):
        decode_envelope(cbor2.dumps({"v": 1, "zstd": _zstd(nested), "size": len(nested)}))
    for bad in ({"v": 1, "zstd": b"not zstd", "size": 10},
                {"v": 1, "zstd": "text", "size": 10},
                {"v": 1, "zstd": _zstd(inner), "size": len(inner), "type": "t"},
                {"v": 1, "zstd": _zstd(inner), "size": -1}):
        with pytest.raises(CodecError):
            decode_envelope(cbor2.dumps(bad))


def test_without_zstandard(monkeypatch: pytest.MonkeyPatch) -> None:
    compressed = encode_envelope("t", {"a": np.zeros(4096, np.uint8)}, compress=True)
    monkeypatch.setattr(envelope_mod, "zstandard", None)
    assert not envelope_mod.zstd_available()
    plain_body = encode_envelope("t", {"a": np.zeros(4096, np.uint8)}, compress=True)
    assert "zstd" not in cbor2.loads(plain_body)
    with pytest.raises(CodecError, match="zstandard"):
        decode_envelope(compressed)


@settings(max_examples=500)
@given(data=st.binary(max_size=96))
def test_envelope_random_bytes(data: bytes) -> None:
    only_codec_errors(decode_envelope, data)


@settings(max_examples=300)
@given(tag=st.integers(min_value=60, max_value=90) | st.sampled_from([40, 1040]),
       dims=st.lists(st.integers(min_value=-2, max_value=1 << 40), max_size=5),
       data=st.binary(max_size=64), inner=st.integers(min_value=60, max_value=90))
def test_envelope_crafted_typed_arrays(tag: int, dims: list[int], data: bytes,
                                       inner: int) -> None:
    for value in (cbor2.CBORTag(tag, data),
                  cbor2.CBORTag(tag, [dims, cbor2.CBORTag(inner, data)])):
        only_codec_errors(decode_envelope, cbor2.dumps({"v": 1, "type": "t", "a": value}))


# ====================================================================== tokens

ids_st = st.lists(st.integers(min_value=0, max_value=(1 << 32) - 1), max_size=40)
half = st.floats(width=16, allow_nan=False)


@settings(max_examples=300)
@given(ids=ids_st, text=st.none() | st.text(max_size=40), data=st.data(),
       timestamp=st.none() | finite, end=st.booleans(),
       error=st.none() | st.text(max_size=300))
def test_token_frame_round_trip(ids: list[int], text: str | None, data: st.DataObject,
                                timestamp: float | None, end: bool, error: str | None) -> None:
    logprobs = data.draw(st.none() | st.lists(half, min_size=len(ids), max_size=len(ids)))
    body = encode_token_frame(ids, text=text, logprobs=logprobs, timestamp=timestamp,
                              end=end, error=error)
    frame = decode_token_frame(body)
    assert frame.ids == tuple(ids)
    assert frame.text == text
    assert frame.timestamp == timestamp
    assert frame.logprobs == (None if logprobs is None else tuple(logprobs))
    assert frame.end == (end or error is not None)
    if error is None:
        assert frame.error is None
    else:
        assert frame.error is not None
        assert len(frame.error.encode()) <= K_MAX_ERROR_BYTES
        assert error.startswith(frame.error)


def test_token_frame_layout() -> None:
    # one id below 128, a 20 ms delta: header, delta (zigzag 40), id -- 3 bytes
    assert encode_token_frame([42], timestamp=1.02, previous_timestamp=1.0) == b"\x50\x28\x2a"
    # ids only, no timestamp: header and varint ids
    assert encode_token_frame([300]) == b"\x40\xac\x02"
    assert encode_token_frame([1, 2]) == b"\x48\x02\x01\x02"
    assert encode_token_frame([]) == b"\x48\x00"
    # end of stream with an error message: CTRL byte 0x03 after the header
    assert encode_token_frame([], error="oom") == b"\x49\x03\x00\x03oom"
    # text and a float16 logprob: -0.5 is 0xb800
    assert encode_token_frame([7], text="a", logprobs=[-0.5]) == b"\x46\x07\x01a\x00\xb8"
    assert len(encode_token_frame([(1 << 32) - 1])) == 6


def test_logprobs_are_float16() -> None:
    frame = decode_token_frame(encode_token_frame([1, 2, 3], logprobs=[-0.1234, -1e6, 0.0]))
    assert frame.logprobs is not None
    assert frame.logprobs[0] == pytest.approx(-0.1234, rel=1e-3)
    assert frame.logprobs[1] == -math.inf
    assert frame.logprobs[2] == 0.0


def test_error_message_cut_at_a_character() -> None:
    frame = decode_token_frame(encode_token_frame([], error="é" * 200))
    assert frame.error == "é" * (K_MAX_ERROR_BYTES // 2)
    frame = decode_token_frame(encode_token_frame([], error="x" + "é" * 200))
    assert frame.error == "x" + "é" * ((K_MAX_ERROR_BYTES - 1) // 2)


@settings(max_examples=200)
@given(steps=st.lists(st.tuples(st.floats(min_value=-5.0, max_value=5.0),
                                st.lists(st.integers(min_value=0, max_value=200_000),
                                         max_size=4)),
                      min_size=1, max_size=40),
       start=st.floats(min_value=-1e9, max_value=1e9), resync=st.integers(0, 5))
def test_token_stream_time_deltas(steps: list[tuple[float, list[int]]], start: float,
                                  resync: int) -> None:
    enc, dec = TokenEncoder(resync_every=resync), TokenDecoder()
    t = start
    for gap, ids in steps:
        t += gap
        (packet,) = enc.encode(ids, timestamp=t)
        (frame,) = dec.decode(packet.data, timestamp=0.0)
        assert frame.ids == tuple(ids)
        # millisecond deltas from what the decoder reconstructed: the error never grows
        assert frame.timestamp == pytest.approx(t, abs=0.0005 + 1e-9 * abs(t))
    assert enc.stats()["frames"] == dec.stats()["frames"] == len(steps)


def test_token_encoder_items_and_end() -> None:
    enc, dec = create_encoder("tokens"), create_decoder("tokens")
    assert (enc.name, enc.kind, dec.kind) == ("tokens", ChannelKind.TOKENS, ChannelKind.TOKENS)
    assert {"tokens", "embeddings"} <= set(available_codecs())
    packets = enc.encode(5, timestamp=10.0) + enc.encode([6, 7], timestamp=10.03)
    packets += enc.encode(TokenFrame(ids=(8,), text=" x", logprobs=(-1.0,)), timestamp=10.05)
    assert isinstance(enc, TokenEncoder)
    packets += enc.encode_end(timestamp=10.06, error="cancelled")
    frames = [f for p in packets for f in dec.decode(p.data, timestamp=0.0)]
    assert [f.ids for f in frames] == [(5,), (6, 7), (8,), ()]
    assert frames[2].text == " x"
    assert frames[2].logprobs == (-1.0,)
    assert (frames[3].end, frames[3].error) == (True, "cancelled")
    assert [p.meta["absolute_time"] for p in packets] == [True, False, False, False]
    assert len(packets[0].data) == 1 + 8 + 1
    assert len(packets[1].data) == 1 + 1 + 1 + 2
    assert dec.decode(None, timestamp=0.0) == []
    none_enc = TokenEncoder(timestamps="none")
    (p,) = none_enc.encode([1], timestamp=3.0)
    assert dec.decode(p.data, timestamp=7.5)[0].timestamp == 7.5


@pytest.mark.parametrize(
    ("options", "item"),
    [
        ({"timestamps": "sometimes"}, [1]),
        ({"resync_every": -1}, [1]),
        ({"bogus": 1}, [1]),
        ({}, [-1]),
        ({}, [1 << 32]),
        ({}, [True]),
        ({}, [1.0]),
        ({}, "12"),
        ({}, b"12"),
        ({}, 1.5),
        ({}, TokenFrame(ids=(1,), text=b"x")),  # type: ignore[arg-type]
        ({}, TokenFrame(ids=(1,), logprobs=(0.0, 0.0))),
        ({}, TokenFrame(ids=(1,), text="\ud800")),
    ],
)
def test_token_encoder_refuses(options: dict[str, Any], item: Any) -> None:
    with pytest.raises(LocalProtocolError):
        TokenEncoder(**options).encode(item, timestamp=0.0)


def test_token_encoder_refuses_non_finite_time() -> None:
    with pytest.raises(LocalProtocolError):
        encode_token_frame([1], timestamp=math.nan)


@pytest.mark.parametrize(
    "body",
    [
        b"", b"\x00", b"\x80\x01", b"\xc0\x01",  # version 0, 2, 3
        b"\x40", b"\x48", b"\x48\x02\x01",  # missing id, missing ids
        b"\x40\x80", b"\x40\xff\xff\xff\xff\xff\x01",  # truncated, too long
        b"\x40\x80\x00", b"\x40\x80\x80\x80\x80\x10",  # non-minimal, 2**32
        b"\x48\x80\x80\x04" + b"\x01" * 10,  # count 65536 > bytes left
        b"\x44\x01\x03ab", b"\x44\x01\x02\xc3\x28",  # text beyond the frame, bad UTF-8
        b"\x42\x01\x00",  # logprob truncated
        b"\x41", b"\x41\x04\x01", b"\x41\x02\x01",  # ctrl: missing, reserved, ERROR w/o END
        b"\x41\x03\x01\x04ab", b"\x41\x03\x01\x02\xff\xff",  # error beyond / bad UTF-8
        b"\x41\x03\x01" + bytes([K_MAX_ERROR_BYTES + 1 - 128 | 0x80, 2]) + b"x" * 257,
        b"\x50\x01", b"\x70\x01", b"\x60\x00\x00",  # delta w/o previous, reserved, truncated
        b"\x60" + struct.pack("<d", math.inf) + b"\x01",
        b"\x40\x01\x00",  # trailing byte
    ],
)
def test_bad_token_frames(body: bytes) -> None:
    with pytest.raises(CodecError):
        decode_token_frame(body)
    dec = TokenDecoder()
    with pytest.raises(CodecError):
        dec.decode(body, timestamp=0.0)
    assert dec.stats()["errors"] == 1


def test_delta_range_is_checked() -> None:
    with pytest.raises(CodecError, match="out of range"):
        decode_token_frame(b"\x50\xff\xff\xff\xff\x0f\x01", previous_timestamp=0.0)
    # a gap too long for a delta falls back to an absolute timestamp
    body = encode_token_frame([1], timestamp=1e7, previous_timestamp=0.0)
    assert decode_token_frame(body).timestamp == 1e7


@settings(max_examples=1000)
@given(body=st.binary(max_size=40), previous=st.none() | finite)
def test_token_frames_random_bytes(body: bytes, previous: float | None) -> None:
    only_codec_errors(lambda b: decode_token_frame(b, previous_timestamp=previous), body)
    only_codec_errors(lambda b: decode_token_frame(b, previous_timestamp=previous),
                      bytes([0x40 | (body[0] & 0x3F) if body else 0x40]) + body[1:])


# ====================================================================== embeddings

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape", [(768,), (16, 768), (3, 7), (1, 1), (0, 5), (4, 0), (33,)])
def test_embeddings_round_trip(precision: str, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    body = encode_embeddings(x, precision=precision, timestamp=4.5)
    got, p, ts = decode_embeddings(body)
    assert (p, ts, got.shape, got.dtype) == (precision, 4.5, shape, np.float32)
    assert got.flags.writeable
    dim = shape[-1]
    if precision == "float32":
        assert_array_equal(got, x, strict=True)
    elif precision == "float16":
        assert_array_equal(got, x.astype(np.float16).astype(np.float32))
    elif precision == "bfloat16":
        assert np.all(np.abs(got - x) <= np.abs(x) * 2.0 ** -8)
    elif precision == "int8":
        scale = np.abs(x).max(axis=-1, keepdims=True) / 127 if dim else 0
        assert np.all(np.abs(got - x) <= scale * 0.5 * (1 + 1e-5) + 1e-12)
    else:
        groups = -(-dim // 32)
        pad = np.zeros((*shape[:-1], groups * 32), np.float32)
        pad[..., :dim] = x
        peak = np.abs(pad.reshape(*shape[:-1], groups, 32)).max(axis=-1, initial=0.0) / 7
        bound = np.repeat(peak, 32, axis=-1)[..., :dim]
        assert np.all(np.abs(got - x) <= bound * 0.5 * (1 + 1e-5) + 1e-12)


def _bf16_reference(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Nearest bfloat16 by exhaustive comparison of the two neighbours, ties to even."""
    u = x.view(np.uint32).astype(np.int64)
    lo = (u >> 16) << 16
    hi = lo + (1 << 16)
    as_f = lambda v: v.astype(np.uint32).view(np.float32).astype(np.float64)  # noqa: E731
    d_lo = np.abs(x.astype(np.float64) - as_f(lo))
    d_hi = np.abs(as_f(hi) - x.astype(np.float64))
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (((lo >> 16) & 1) == 1))
    return np.where(pick_hi, hi, lo).astype(np.uint32).view(np.float32)


def test_bfloat16_rounds_to_nearest_even() -> None:
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(20000) * np.exp(rng.uniform(-20, 20, 20000))).astype(np.float32)
    # exact ties: the low 16 bits are 0x8000
    ties = ((rng.integers(0, 1 << 15, 64, dtype=np.uint32) << 16) | 0x8000).view(np.float32)
    x = np.concatenate([x, ties, np.float32([0.0, -0.0, 1.0, 3.39e38, -3.39e38, -1e-40])])
    got, _, _ = decode_embeddings(encode_embeddings(x, precision="bfloat16", timestamp=0.0))
    assert_array_equal(got.view(np.uint32), _bf16_reference(x).view(np.uint32))
    # 3.4e38 is finite in float32 but rounds to infinity in bfloat16: refused
    with pytest.raises(LocalProtocolError, match="bfloat16"):
        encode_embeddings(np.float32([1.0, 3.4e38]), precision="bfloat16", timestamp=0.0)


@settings(max_examples=150)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                    elements=st.floats(-1e4, 1e4, width=32)),
       precision=st.sampled_from(PRECISIONS), group=st.sampled_from([1, 2, 8, 32, 64]))
def test_embeddings_error_bounds(x: np.ndarray[Any, Any], precision: str, group: int) -> None:
    got, _, _ = decode_embeddings(encode_embeddings(x, precision=precision, timestamp=0.0,
                                                    group_size=group))
    assert got.shape == x.shape
    peak = float(np.abs(x).max()) if x.size else 0.0
    err = float(np.abs(got - x).max()) if x.size else 0.0
    bound = {"float32": 0.0, "float16": peak * 2.0 ** -11 + 2.0 ** -24,
             "bfloat16": peak * 2.0 ** -8, "int8": peak / 254 * 1.0001,
             "int4": peak / 14 * 1.0001}[precision]
    # a vector (int8) or group (int4) whose scale would be subnormal is sent as zeros
    tiny = float(np.finfo(np.float32).tiny) * (127 if precision == "int8" else 7)
    assert err <= max(bound, tiny)


def test_fidelity_on_normalized_vectors() -> None:
    x = unit_vectors(256, 768)
    by_precision = {p: decode_embeddings(encode_embeddings(x, precision=p, timestamp=0.0))[0]
                    for p in PRECISIONS}
    assert cosines(x, by_precision["float32"]).min() == pytest.approx(1.0, abs=1e-12)
    assert cosines(x, by_precision["float16"]).min() >= 0.99999
    assert cosines(x, by_precision["bfloat16"]).min() >= 0.9999
    assert cosines(x, by_precision["int8"]).mean() >= 0.999
    assert cosines(x, by_precision["int8"]).min() >= 0.999
    assert cosines(x, by_precision["int4"]).mean() >= 0.99


def test_sizes_match_bytes_per_vector() -> None:
    x = unit_vectors(16, 768)
    for p in PRECISIONS:
        body = encode_embeddings(x, precision=p, timestamp=0.0)
        payload = 16 * bytes_per_vector(p, 768)
        assert payload < len(body) <= payload + 100  # the envelope, shared by 16 vectors
    assert bytes_per_vector("int8", 768) == 772
    assert bytes_per_vector("int4", 768, 64) == 384 + 48


def test_embedding_packets_are_plain_rfc8746() -> None:
    x = unit_vectors(2, 6)
    obj = cbor2.loads(encode_embeddings(x, precision="int8", timestamp=1.0))
    assert (obj["v"], obj["type"], obj["p"], obj["ts"]) == (1, "emb", "int8", 1.0)
    dims, inner = obj["data"].value
    assert (obj["data"].tag, list(dims), inner.tag) == (40, [2, 6], 72)
    scale = obj["scale"]
    assert scale.tag == 85
    q = np.frombuffer(inner.value, np.int8).reshape(2, 6)
    s = np.frombuffer(scale.value, "<f4")
    assert np.abs(q).max(axis=1).tolist() == [127, 127]
    assert np.allclose(q * s[:, None], x, atol=float(s.max()))
    obj = cbor2.loads(encode_embeddings(x[0], precision="int4", timestamp=1.0, group_size=4))
    assert (obj["data"].tag, obj["shape"], obj["g"]) == (64, [6], 4)
    assert len(obj["data"].value) == 3
    assert obj["scale"].tag == 85
    assert len(obj["scale"].value) == 8  # two groups of float32
    assert cbor2.loads(encode_embeddings(x, precision="bfloat16", timestamp=1.0))[
        "data"].value[1].tag == 69


def _packet(**changes: Any) -> bytes:
    fields: dict[str, Any] = {"ts": 1.0, "p": "int4", "shape": [2, 5], "g": 4,
                              "data": np.zeros((2, 3), np.uint8),
                              "scale": np.ones((2, 2), np.float32)}
    for k, v in changes.items():
        if v is KeyError:
            del fields[k]
        else:
            fields[k] = v
    return encode_envelope("emb", fields)


def test_crafted_packet_base_is_valid() -> None:
    got, p, _ = decode_embeddings(_packet())
    assert (got.shape, p) == ((2, 5), "int4")


@pytest.mark.parametrize(
    "changes",
    [
        {"p": "float64"}, {"p": 8}, {"p": None}, {"p": ["int8"]},
        {"ts": 1}, {"ts": math.inf}, {"ts": KeyError},
        {"shape": [2, 7]}, {"shape": [2, 4]}, {"shape": [5]}, {"shape": [2, -5]},
        {"shape": [2, 1 << 40]}, {"shape": "2x5"}, {"shape": KeyError},
        {"g": 0}, {"g": 1 << 20}, {"g": 4.0}, {"g": KeyError}, {"g": 2},  # 2 -> 3 groups
        {"scale": np.ones((2, 3), np.float32)}, {"scale": np.ones((2, 2), np.float64)},
        {"scale": -np.ones((2, 2), np.float32)}, {"scale": np.full((2, 2), np.nan, np.float32)},
        {"scale": KeyError}, {"extra": 1},
        {"scale": np.full((2, 2), 3e38, np.float32)},  # q * scale would overflow
        {"p": "float32", "data": np.float32([1.0, np.nan]), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"p": "float16", "data": np.float16([np.inf]), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"p": "bfloat16", "data": np.uint16([0x7F80]), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"data": np.zeros((2, 3), np.int8)}, {"data": np.zeros((2, 1, 3), np.uint8)},
        {"p": "int8", "shape": KeyError, "g": KeyError},  # int8 data must be int8
        {"p": "int8", "data": np.zeros((2, 3), np.int8), "shape": KeyError, "g": KeyError},
        {"p": "float32", "data": np.zeros(3, np.float16), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"p": "float16", "data": np.zeros(3, np.float32), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"p": "bfloat16", "data": np.zeros(3, np.int16), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
        {"p": "float32", "data": np.zeros((), np.float32), "shape": KeyError, "g": KeyError,
         "scale": KeyError},
    ],
)
def test_bad_embedding_packets(changes: dict[str, Any]) -> None:
    dec = EmbeddingDecoder()
    with pytest.raises(CodecError):
        dec.decode(_packet(**changes), timestamp=0.0)
    assert dec.stats()["errors"] == 1


def test_int4_logical_shape_refused_before_allocation() -> None:
    body = _packet(shape=[2, 1 << 30], data=np.zeros((2, 3), np.uint8))
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            decode_embeddings(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@settings(max_examples=500)
@given(body=st.binary(max_size=80))
def test_embedding_decoder_random_bytes(body: bytes) -> None:
    only_codec_errors(lambda b: EmbeddingDecoder().decode(b, timestamp=0.0), body)


field_values = st.one_of(
    st.none(), st.integers(-3, 70), finite, st.sampled_from(PRECISIONS), st.text(max_size=3),
    st.lists(st.integers(-1, 9), max_size=3),
    st.sampled_from(["<f4", "<f2", "<u2", "|i1", "|u1", "<f8"]).flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3,
                                                             min_side=0, max_side=4))))


@st.composite
def crafted_packets(draw: st.DrawFn) -> tuple[bytes, tuple[int, ...] | None]:
    """A valid packet with (usually) one field replaced or removed; its shape if valid."""
    precision = draw(st.sampled_from(PRECISIONS))
    shape = draw(st.sampled_from([(3,), (2, 5), (1, 8), (0, 4), (2, 0)]))
    x = draw(hnp.arrays(np.float32, shape, elements=st.floats(-100, 100, width=32)))
    body = encode_embeddings(x, precision=precision, timestamp=1.0,
                             group_size=draw(st.sampled_from([1, 2, 4, 32])))
    fields = dict(decode_envelope(body).fields)
    wrong = draw(st.sampled_from(["nothing", "nothing", "ts", "p", "data", "scale", "shape",
                                  "g", "missing", "extra"]))
    if wrong == "nothing":
        return body, shape
    if wrong == "missing":
        del fields[draw(st.sampled_from(sorted(fields)))]
    else:
        fields[wrong] = draw(field_values)
    return encode_envelope("emb", fields), None


@settings(max_examples=500)
@given(case=crafted_packets())
def test_embedding_decoder_crafted_packets(
        case: tuple[bytes, tuple[int, ...] | None]) -> None:
    body, shape = case
    try:
        got, _, _ = decode_embeddings(body)
    except CodecError:
        assert shape is None  # an untouched packet always decodes
        return
    assert got.dtype == np.float32
    assert got.ndim in (1, 2)
    assert np.isfinite(got).all()
    if shape is not None:
        assert got.shape == shape


@pytest.mark.parametrize(
    ("options", "item"),
    [
        ({"precision": "float8"}, np.zeros(4)),
        ({"window_s": 0}, np.zeros(4)),
        ({"group_size": 0}, np.zeros(4)),
        ({"bogus": True}, np.zeros(4)),
        ({}, np.zeros((2, 2, 2))),
        ({}, np.float32(1.0)),
        ({}, np.array([1.0, np.nan])),
        ({}, np.array([np.inf])),
        ({}, np.array([1e39])),  # beyond float32
        ({}, np.array(["a"])),
        ({}, np.array([1 + 1j])),
        ({"precision": "float16"}, np.array([1e5])),
    ],
)
def test_embedding_encoder_refuses(options: dict[str, Any], item: Any) -> None:
    with pytest.raises(LocalProtocolError):
        EmbeddingEncoder(**options).encode(item, timestamp=0.0)


def test_embedding_encoder_refuses_bad_target() -> None:
    enc = EmbeddingEncoder()
    with pytest.raises(LocalProtocolError):
        enc.set_target_bitrate(0)


def _run(enc: EmbeddingEncoder, start: float, seconds: float,
         batch: np.ndarray[Any, Any]) -> list[str]:
    """Encode a 16-vector batch every 100 ms; the precisions chosen."""
    dec = EmbeddingDecoder()
    chosen = []
    for k in range(round(seconds * 10)):
        (packet,) = enc.encode(batch, timestamp=start + 0.1 * k)
        (got,) = dec.decode(packet.data, timestamp=0.0)
        assert got.shape == batch.shape
        chosen.append(packet.meta["precision"])
    return chosen


def test_auto_precision_follows_the_estimate() -> None:
    enc = create_encoder("embeddings")
    assert isinstance(enc, EmbeddingEncoder)
    batch = unit_vectors(16, 768)
    # 160 vectors/s: float32 needs ~3.94 Mbit/s, float16 ~1.97, int8 ~0.99, int4 ~0.62
    assert _run(enc, 0.0, 1.0, batch)[-1] == "float32"  # no target yet
    t = 1.0
    seen = []
    for target, want in [(10e6, "float32"), (3e6, "float16"), (1.4e6, "int8"),
                         (0.5e6, "int4"), (0.1e6, "int4"), (1.4e6, "int8"), (3e6, "float16"),
                         (10e6, "float32")]:
        enc.set_target_bitrate(target)
        chosen = _run(enc, t, 2.0, batch)
        t += 2.0
        assert set(chosen) == {want}, (target, chosen)
        seen.append(want)
    assert set(seen) == set(AUTO_LADDER)
    rate = enc.offered_bps("float32")
    assert rate == pytest.approx(10 * (16 * 3072 + K_ENVELOPE_BYTES) * 8, rel=1e-6)
    assert enc.stats()["packets"]["bfloat16"] == 0


def test_auto_precision_hysteresis() -> None:
    batch = unit_vectors(16, 768)
    need = 10 * (16 * 3072 + K_ENVELOPE_BYTES) * 8  # float32 at 10 packets/s
    # the target fits float32 with 5% to spare: stay there, but do not step up to it
    target = need / 0.9 / 0.95
    staying = EmbeddingEncoder(target_bps=target)
    assert set(_run(staying, 0.0, 2.0, batch)[1:]) == {"float32"}
    climbing = EmbeddingEncoder()
    climbing.set_target_bitrate(need * 0.6)  # float16 needs about half of float32
    assert _run(climbing, 0.0, 2.0, batch)[-1] == "float16"
    climbing.set_target_bitrate(target)
    assert set(_run(climbing, 2.0, 2.0, batch)) == {"float16"}
    climbing.set_target_bitrate(need / 0.9 / 0.85)
    assert _run(climbing, 4.0, 1.0, batch)[-1] == "float32"


def test_auto_skips_float16_out_of_range() -> None:
    # a target where float16 would be chosen, but the values exceed float16's range
    target = 0.8 * 10 * (16 * 3072 + K_ENVELOPE_BYTES) * 8
    assert _run(EmbeddingEncoder(target_bps=target), 0.0, 1.0, unit_vectors(16, 768))[
        -1] == "float16"
    chosen = _run(EmbeddingEncoder(target_bps=target), 0.0, 1.0, unit_vectors(16, 768) * 1e6)
    assert chosen[-1] == "int8"


def test_explicit_precision_and_compression() -> None:
    enc = EmbeddingEncoder(precision="bfloat16", target_bps=1.0)
    (packet,) = enc.encode(unit_vectors(4, 64), timestamp=0.0)
    assert packet.meta["precision"] == "bfloat16"
    zeros = np.zeros((16, 768), np.float32)
    (small,) = EmbeddingEncoder(precision="float32", compress=True).encode(zeros, timestamp=0.0)
    assert len(small.data) < 1000
    (got,) = EmbeddingDecoder().decode(small.data, timestamp=0.0)
    assert_array_equal(got, zeros)


def test_encoder_compresses_int8_by_default() -> None:
    """The encoder's default zstd pays for int8 batches of realistic vectors: the packet is
    at least 5 % below the uncompressed envelope, and decodes to the same vectors."""
    from edgewire.cli.bench_codecs_data import _make_model, synthetic_embeddings

    rng = np.random.default_rng(5)
    batch = synthetic_embeddings(16, 768, rng=rng, model=_make_model(768, rng))
    (packet,) = EmbeddingEncoder(precision="int8").encode(batch, timestamp=1.0)
    plain = encode_embeddings(batch, precision="int8", timestamp=1.0)
    assert "zstd" in cbor2.loads(packet.data)
    assert "zstd" not in cbor2.loads(plain)
    assert len(packet.data) <= 0.95 * len(plain)
    assert len(packet.data) < 16 * 768  # under a quarter of float32 (4 * 768 per vector)
    (got,) = EmbeddingDecoder().decode(packet.data, timestamp=1.0)
    assert_array_equal(got, decode_embeddings(plain)[0])
    (off,) = EmbeddingEncoder(precision="int8", compress=False).encode(batch, timestamp=1.0)
    assert off.data == plain


# ====================================================================== measurements


def test_bench_functions_smoke() -> None:
    from edgewire.cli.bench_codecs_data import bench_embeddings, bench_tokens

    tokens = bench_tokens(n_tokens=200, seed=3)
    assert tokens["bytes_per_token"] < tokens["bytes_per_token_with_text"]
    assert tokens["ratio"] == pytest.approx(tokens["sse_bytes_per_token"]
                                            / tokens["bytes_per_token"])
    assert tokens["bytes_per_token_no_time"] < tokens["bytes_per_token"]
    emb = bench_embeddings(n_corpus=300, n_queries=20, dim=64, seed=3)
    assert set(emb) == set(PRECISIONS)
    assert emb["float32"]["recall_at_10"] == 1.0
    assert emb["float32"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert emb["int8"]["bytes_per_vector"] < emb["float16"]["bytes_per_vector"]
    assert emb["int4"]["cosine_mean"] < emb["int8"]["cosine_mean"]
    for figures in emb.values():
        assert figures["encode_MBps"] > 0
        assert 0.0 <= figures["recall_at_10"] <= 1.0


def test_codec_errors_are_remote_protocol_errors() -> None:
    assert issubclass(CodecError, RemoteProtocolError)
