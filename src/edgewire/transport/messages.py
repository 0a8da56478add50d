"""Bodies of reliable-channel records: token messages and numpy array envelopes (CBOR)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np

from edgewire.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "TokenMessage",
    "decode_array",
    "decode_tokens",
    "encode_array",
    "encode_tokens",
]

#: dtype kinds an embedding may have: bool, signed/unsigned int, float, complex.
_ARRAY_KINDS = frozenset("biufc")
_MAX_NDIM = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenMessage:
    """One or more LLM tokens sent together on a tokens channel."""

    ids: tuple[int, ...]
    """Token ids (non-negative, below 2**32)."""
    text: str | None = None
    """Decoded text of the tokens, when the sender has it."""
    timestamp: float = 0.0
    """When the sender produced the tokens, on the receiver's clock once received."""


def encode_tokens(ids: tuple[int, ...], text: str | None, timestamp: float) -> bytes:
    """CBOR array ``[timestamp, [ids...], text-or-null]``; timestamp in sender seconds."""
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 1 << 32:
            raise LocalProtocolError(f"token id {i!r} is not an integer in 0..2**32-1")
    if text is not None and not isinstance(text, str):
        raise LocalProtocolError("token text must be str or None")
    return bytes(cbor2.dumps([float(timestamp), list(ids), text]))


def decode_tokens(body: bytes) -> tuple[tuple[int, ...], str | None, float]:
    """Inverse of :func:`encode_tokens`; raises RemoteProtocolError on anything else."""
    obj = _loads(body)
    if not (isinstance(obj, list) and len(obj) == 3):
        raise RemoteProtocolError("token record is not a 3-element array")
    ts, ids, text = obj
    if not _is_time(ts) or not isinstance(ids, list) or not all(_is_uint(i, 32) for i in ids):
        raise RemoteProtocolError("token record has bad timestamp or ids")
    if text is not None and not isinstance(text, str):
        raise RemoteProtocolError("token record text is not a string")
    return tuple(ids), text, float(ts)


def encode_array(array: Any, timestamp: float) -> bytes:
    """CBOR map with dtype, shape, raw little/big-endian bytes as numpy describes them."""
    arr = np.asarray(array)
    if arr.dtype.kind not in _ARRAY_KINDS:
        raise LocalProtocolError(f"cannot send an array of dtype {arr.dtype} (numeric only)")
    if arr.ndim > _MAX_NDIM:
        raise LocalProtocolError(f"array has {arr.ndim} dimensions, at most {_MAX_NDIM}")
    data = np.ascontiguousarray(arr).tobytes()
    return bytes(cbor2.dumps({"ts": float(timestamp), "dtype": arr.dtype.str,
                              "shape": list(arr.shape), "data": data}))


def decode_array(body: bytes) -> tuple[np.ndarray[Any, Any], float]:
    """Inverse of :func:`encode_array`; validates dtype, shape and size before building."""
    obj = _loads(body)
    if not isinstance(obj, dict):
        raise RemoteProtocolError("array record is not a map")
    ts, dtype_str, shape, data = (obj.get(k) for k in ("ts", "dtype", "shape", "data"))
    if not _is_time(ts) or not isinstance(dtype_str, str) or not isinstance(data, bytes):
        raise RemoteProtocolError("array record lacks ts, dtype or data")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(
        _is_uint(d, 63) for d in shape
    ):
        raise RemoteProtocolError("array record has a bad shape")
    try:
        dtype = np.dtype(dtype_str)
    except Exception:  # numpy raises TypeError, ValueError or SyntaxError for bad strings
        raise RemoteProtocolError(f"array record has unknown dtype {dtype_str[:32]!r}") from None
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise RemoteProtocolError(f"array record has unsupported dtype {dtype_str[:32]!r}")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise RemoteProtocolError("array record size does not match dtype and shape")
    # read-only view over the received bytes: no copy on the receive path
    try:
        arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError:  # e.g. a zero-size array whose dimensions overflow numpy's limits
        raise RemoteProtocolError("array record shape is not representable") from None
    assert isinstance(ts, float)
    return arr, ts


def _is_uint(value: object, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << bits


def _is_time(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _loads(body: bytes) -> Any:
    try:
        return cbor2.loads(body)
    except Exception as exc:  # cbor2 raises several types on garbage; all mean the same here
        raise RemoteProtocolError(f"record is not CBOR ({type(exc).__name__})") from None
