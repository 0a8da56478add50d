"""The CBOR envelope of typed messages, with numpy arrays as RFC 8746 typed arrays.

An envelope is one CBOR map::

    {"v": 1, "type": <text>, <field>: <value>, ...}

``v`` is the envelope version (1; any other value is refused) and ``type`` names the message
(``"array"`` for a record of an embeddings channel, ``"emb"`` for the embeddings codec, ...).
The other fields belong to the message type. Values are plain CBOR (null, bool, integers,
floats, text, bytes, arrays, maps with text keys) plus numpy arrays, which travel as the
standard typed arrays of RFC 8746 so that a peer in another language, or ``cbor2.loads``
without any edgewire hook, reads them:

* a one-dimensional array is ``tag(N, bytes)``, where ``N`` (64..87) names the element type
  and byte order: 64 uint8, 72 int8, 65/69 uint16 big/little-endian, 66/70 uint32,
  67/71 uint64, 73/77 int16, 74/78 int32, 75/79 int64, 80/84 float16, 81/85 float32,
  82/86 float64 (68, uint8 "clamped", is read as uint8);
* any other number of dimensions (0 included) is ``tag(40, [[d0, d1, ...], tag(N, bytes)])``
  with the elements in row-major order; ``tag(1040, ...)`` (column-major) is read too.

Element types RFC 8746 has no tag for are carried in a tagged type plus a field the message
type declares (the embeddings codec's ``"p"``, the array record's ``"dtype"``): bfloat16 as
uint16, int4 as packed uint8, bool as uint8, complex as float with a trailing dimension of 2.
128-bit floats (tags 83 and 87) are refused.

Compression (needs the ``zstandard`` package, a dependency of edgewire): when asked, or
when ``compress`` is left to ``None`` and the message is at least :data:`K_ZSTD_MIN_BYTES`,
the encoder tries
zstd and keeps it only if it saves at least :data:`K_ZSTD_MIN_SAVING` of the size. The
compressed form is another envelope::

    {"v": 1, "zstd": <bytes: the zstd frame of the whole envelope>, "size": <uint>}

``size`` is the length of the decompressed envelope; the decoder refuses it above its limit
(default :data:`K_MAX_ENVELOPE_BYTES`) before decompressing and reads at most that many
bytes, and a compressed envelope may not contain another.

Decoding validates before it allocates: the tag must be known, the byte string a multiple of
the element size, the dimensions non-negative integers, at most :data:`K_MAX_NDIM` of them,
the product of the non-zero ones at most :data:`K_MAX_ELEMENTS`, and their product times the
element size equal to the byte length. Anything else raises
:class:`~edgewire.codecs.base.CodecError`. Decoded arrays are read-only views of the
received bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cbor2
import numpy as np

from edgewire.codecs.base import CodecError
from edgewire.errors import LocalProtocolError

zstandard: ModuleType | None
try:  # optional: envelopes work without it, only compression needs it
    import zstandard
except ImportError:  # pragma: no cover - zstandard is installed in the test environment
    zstandard = None

__all__ = [
    "K_ENVELOPE_VERSION",
    "K_MAX_ELEMENTS",
    "K_MAX_ENVELOPE_BYTES",
    "K_MAX_NDIM",
    "K_ZSTD_MIN_BYTES",
    "K_ZSTD_MIN_SAVING",
    "TAG_COLUMN_MAJOR",
    "TAG_MULTI_DIM",
    "Envelope",
    "array_from_cbor",
    "array_to_cbor",
    "decode_envelope",
    "encode_envelope",
    "typed_array_tag",
    "zstd_available",
]

K_ENVELOPE_VERSION = 1
K_MAX_NDIM = 32
"""Most dimensions a decoded array may have."""
K_MAX_ELEMENTS = 1 << 26
"""Most elements a decoded array may have (product of its non-zero dimensions): 64 Mi."""
K_MAX_ENVELOPE_BYTES = 64 << 20  # bytes: the receive limit of one reliable record
K_ZSTD_MIN_BYTES = 256  # bytes: below this, automatic compression is not tried
K_ZSTD_MIN_SAVING = 0.05
"""Fraction of the size zstd must save to be kept. Compressing and decompressing a batch of
embeddings costs far less time than sending 5 % more bytes over any link edgewire meets;
below that the second decode pass is not worth it. int8 batches of vectors without outlier
dimensions save 6-8 % (zstd's entropy coding of values that cluster near zero)."""
K_ZSTD_LEVEL = 3
K_MAX_DEPTH = 16  # nesting of lists and maps inside an envelope

TAG_MULTI_DIM = 40
TAG_COLUMN_MAJOR = 1040

# RFC 8746 section 2.1: tag = 0b010_f_s_e_ll, f float, s signed, e little-endian, ll size
_TAG_DTYPES: dict[int, np.dtype[Any]] = {
    tag: np.dtype(code)
    for tag, code in {
        64: "|u1", 65: ">u2", 66: ">u4", 67: ">u8",
        68: "|u1", 69: "<u2", 70: "<u4", 71: "<u8",
        72: "|i1", 73: ">i2", 74: ">i4", 75: ">i8",
        77: "<i2", 78: "<i4", 79: "<i8",
        80: ">f2", 81: ">f4", 82: ">f8", 84: "<f2", 85: "<f4", 86: "<f8",
    }.items()
}
_DTYPE_TAGS: dict[str, int] = {dt.str: tag for tag, dt in _TAG_DTYPES.items() if tag != 68}
_RESERVED = ("v", "type", "zstd", "size")


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package is importable (compression possible)."""
    return zstandard is not None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope: its type, its fields (arrays as numpy arrays), how it came."""

    type: str
    """The message type (the ``"type"`` key)."""
    fields: dict[str, Any]
    """Every key but ``"v"`` and ``"type"``; typed arrays are read-only numpy arrays."""
    compressed: bool = False
    """True when it travelled zstd-compressed."""
    size: int = 0
    """Bytes of the (decompressed) envelope."""


# ------------------------------------------------------------------ typed arrays


def typed_array_tag(dtype: np.dtype[Any]) -> int:
    """The RFC 8746 tag of a numpy dtype; LocalProtocolError if it has none."""
    tag = _DTYPE_TAGS.get(np.dtype(dtype).str)
    if tag is None:
        raise LocalProtocolError(f"dtype {np.dtype(dtype)} has no RFC 8746 typed-array tag")
    return tag


def array_to_cbor(array: np.ndarray[Any, Any]) -> cbor2.CBORTag:
    """A numpy array as an RFC 8746 typed array (tag 40 around it unless it is 1-D)."""
    arr = np.asarray(array)
    if arr.ndim > K_MAX_NDIM:
        raise LocalProtocolError(f"array has {arr.ndim} dimensions, at most {K_MAX_NDIM}")
    inner = cbor2.CBORTag(typed_array_tag(arr.dtype), np.ascontiguousarray(arr).tobytes())
    if arr.ndim == 1:
        return inner
    return cbor2.CBORTag(TAG_MULTI_DIM, [list(arr.shape), inner])


def array_from_cbor(obj: object, *, max_elements: int = K_MAX_ELEMENTS,
                    max_ndim: int = K_MAX_NDIM) -> np.ndarray[Any, Any]:
    """Validate an RFC 8746 typed array (as cbor2 decodes it) and view it as numpy.

    Accepts ``tag(64..87, bytes)`` and ``tag(40 or 1040, [dims, tag(64..87, bytes)])``.
    Every check happens before numpy sees the data; the result is a read-only view.
    """
    if not isinstance(obj, cbor2.CBORTag):
        raise CodecError("expected a typed array (CBOR tag)")
    dims: list[int] | None = None
    column_major = False
    if obj.tag in (TAG_MULTI_DIM, TAG_COLUMN_MAJOR):
        column_major = obj.tag == TAG_COLUMN_MAJOR
        value = obj.value
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise CodecError("multi-dimensional array is not [dimensions, elements]")
        raw_dims, obj = value
        dims = _check_dims(raw_dims, max_elements=max_elements, max_ndim=max_ndim)
        if not isinstance(obj, cbor2.CBORTag):
            raise CodecError("multi-dimensional array elements are not a typed array")
    dtype = _TAG_DTYPES.get(obj.tag)
    if dtype is None:
        raise CodecError(f"unsupported typed-array tag {obj.tag}")
    data = obj.value
    if not isinstance(data, bytes):
        raise CodecError(f"typed array (tag {obj.tag}) is not a byte string")
    if len(data) % dtype.itemsize:
        raise CodecError(f"typed array of {len(data)} bytes is not a multiple of "
                         f"{dtype.itemsize}-byte elements")
    count = len(data) // dtype.itemsize
    if count > max_elements:
        raise CodecError(f"typed array has {count} elements, at most {max_elements}")
    if dims is None:
        dims = [count]
    elif _product(dims) != count:
        raise CodecError(f"dimensions {dims[:8]} do not match {count} elements")
    flat: np.ndarray[Any, Any] = np.frombuffer(data, dtype=dtype)
    return flat.reshape(dims, order="F" if column_major else "C")


def _check_dims(raw: object, *, max_elements: int, max_ndim: int) -> list[int]:
    if not isinstance(raw, list | tuple):
        raise CodecError("array dimensions are not an array")
    if len(raw) > max_ndim:
        raise CodecError(f"array has {len(raw)} dimensions, at most {max_ndim}")
    dims: list[int] = []
    nonzero = 1
    for d in raw:
        if type(d) is not int or d < 0:
            raise CodecError("array dimension is not a non-negative integer")
        if d:
            nonzero *= d
            if nonzero > max_elements:
                raise CodecError(f"array dimensions exceed {max_elements} elements")
        dims.append(d)
    return dims


def _product(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


# ------------------------------------------------------------------ envelopes


def encode_envelope(msg_type: str, fields: Mapping[str, Any], *, compress: bool = False,
                    level: int = K_ZSTD_LEVEL) -> bytes:
    """Encode one message: ``{"v": 1, "type": msg_type, **fields}`` as CBOR.

    numpy arrays anywhere in ``fields`` (in lists and maps too) become RFC 8746 typed
    arrays. With ``compress=True`` the envelope is zstd-compressed when it is at least
    :data:`K_ZSTD_MIN_BYTES` long, ``zstandard`` is installed and it saves at least
    :data:`K_ZSTD_MIN_SAVING`; otherwise it is sent as it is.
    """
    if not isinstance(msg_type, str) or not msg_type:
        raise LocalProtocolError("envelope type must be a non-empty string")
    body: dict[str, Any] = {"v": K_ENVELOPE_VERSION, "type": msg_type}
    for key, value in fields.items():
        if not isinstance(key, str) or key in _RESERVED:
            raise LocalProtocolError(f"envelope field name {key!r} is not allowed")
        body[key] = _to_cbor(value, 0)
    try:
        raw = bytes(cbor2.dumps(body))
    except Exception as exc:  # cbor2 raises several types for values it cannot encode
        raise LocalProtocolError(f"envelope field cannot be encoded as CBOR: {exc}") from None
    if compress and zstandard is not None and len(raw) >= K_ZSTD_MIN_BYTES:
        packed = zstandard.ZstdCompressor(level=level).compress(raw)
        wrapped = bytes(cbor2.dumps({"v": K_ENVELOPE_VERSION, "zstd": packed,
                                     "size": len(raw)}))
        if len(wrapped) <= len(raw) * (1.0 - K_ZSTD_MIN_SAVING):
            return wrapped
    return raw


def decode_envelope(data: bytes, *, expected_type: str | None = None,
                    max_bytes: int = K_MAX_ENVELOPE_BYTES,
                    max_elements: int = K_MAX_ELEMENTS) -> Envelope:
    """Decode and validate an envelope; CodecError for anything malformed.

    ``max_bytes`` bounds the envelope (after decompression), ``max_elements`` the elements
    of all its arrays together. ``expected_type`` refuses any other message type.
    """
    if len(data) > max_bytes:
        raise CodecError(f"envelope of {len(data)} bytes exceeds {max_bytes}")
    obj = _loads(data)
    compressed = False
    size = len(data)
    if isinstance(obj, dict) and "zstd" in obj:
        _check_version(obj)
        blob, declared = obj.get("zstd"), obj.get("size")
        if set(obj) != {"v", "zstd", "size"} or not isinstance(blob, bytes):
            raise CodecError("compressed envelope is not {v, zstd, size}")
        if type(declared) is not int or not 0 <= declared <= max_bytes:
            raise CodecError(f"compressed envelope size {declared!r} is not in "
                             f"0..{max_bytes}")
        size = declared
        obj = _loads(_decompress(blob, size))
        if isinstance(obj, dict) and "zstd" in obj:
            raise CodecError("compressed envelope inside a compressed envelope")
        compressed = True
    if not isinstance(obj, dict):
        raise CodecError("envelope is not a CBOR map")
    _check_version(obj)
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not 0 < len(msg_type) <= 64:
        raise CodecError("envelope type is missing or not a short string")
    if expected_type is not None and msg_type != expected_type:
        raise CodecError(f"envelope type {msg_type[:64]!r}, expected {expected_type!r}")
    budget = [max_elements]
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CodecError("envelope keys must be text")
        if key not in ("v", "type"):
            fields[key] = _from_cbor(value, 0, budget)
    return Envelope(type=msg_type, fields=fields, compressed=compressed, size=size)


def _check_version(obj: dict[Any, Any]) -> None:
    version = obj.get("v")
    if type(version) is not int or version != K_ENVELOPE_VERSION:
        raise CodecError(f"envelope version {version!r} is not {K_ENVELOPE_VERSION}")


def _to_cbor(value: Any, depth: int) -> Any:
    if depth > K_MAX_DEPTH:
        raise LocalProtocolError(f"envelope nests deeper than {K_MAX_DEPTH} levels")
    if isinstance(value, np.ndarray):
        return array_to_cbor(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_to_cbor(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {k: _to_cbor(v, depth + 1) for k, v in value.items()}
    return value


def _from_cbor(value: Any, depth: int, budget: list[int]) -> Any:
    """Plain CBOR values through, typed arrays to numpy, anything else refused."""
    if depth > K_MAX_DEPTH:
        raise CodecError(f"envelope nests deeper than {K_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, cbor2.CBORTag):
        arr = array_from_cbor(value, max_elements=budget[0])
        budget[0] -= arr.size
        return arr
    if isinstance(value, list | tuple):
        return [_from_cbor(v, depth + 1, budget) for v in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CodecError("envelope map keys must be text")
            out[k] = _from_cbor(v, depth + 1, budget)
        return out
    raise CodecError(f"unsupported CBOR value in envelope ({type(value).__name__})")


def _decompress(blob: bytes, size: int) -> bytes:
    if zstandard is None:
        raise CodecError("compressed envelope, but zstandard is not installed")
    out = bytearray()
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=1 << 23)
        with dctx.stream_reader(io.BytesIO(blob)) as reader:
            # read at most one byte more than declared: enough to see a lie, never more
            while len(out) <= size:
                chunk = reader.read(size + 1 - len(out))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise CodecError(f"compressed envelope does not decompress ({exc})") from None
    if len(out) != size:
        raise CodecError(f"compressed envelope holds {'more' if len(out) > size else 'less'}"
                         f" than its declared {size} bytes")
    return bytes(out)


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on garbage; all mean the same here
        raise CodecError(f"envelope is not CBOR ({type(exc).__name__})") from None
