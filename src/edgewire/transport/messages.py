"""Bodies of reliable-channel records: token frames and numpy arrays in the CBOR envelope.

A ``tokens`` record is one compact token frame (:mod:`edgewire.codecs.tokens`) with an
absolute timestamp; an ``embeddings`` record is an envelope (:mod:`edgewire.codecs.envelope`)
of type ``"array"`` whose array is an RFC 8746 typed array. docs/PROTOCOL.md section 6
describes both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgewire.codecs.envelope import K_MAX_NDIM, decode_envelope, encode_envelope
from edgewire.codecs.tokens import decode_token_frame, encode_token_frame
from edgewire.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "TokenMessage",
    "decode_array",
    "decode_tokens",
    "encode_array",
    "encode_tokens",
]

#: dtype kinds an array record may hold: bool, signed/unsigned int, float, complex.
_ARRAY_KINDS = frozenset("biufc")
_ARRAY_TYPE = "array"
#: the logical element type of arrays RFC 8746 has no tag for, by how they travel
_COMPLEX = {"complex64": "f4", "complex128": "f8"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenMessage:
    """One or more LLM tokens sent together on a tokens channel."""

    ids: tuple[int, ...]
    """Token ids (non-negative, below 2**32)."""
    text: str | None = None
    """Decoded text of the tokens, when the sender has it."""
    timestamp: float = 0.0
    """When the sender produced the tokens, on the receiver's clock once received."""
    logprobs: tuple[float, ...] | None = None
    """Log-probability of each token (one per id; sent as float16), when the sender has
    them."""
    end: bool = False
    """The last message of the stream (the model finished)."""
    error: str | None = None
    """Why the stream stopped early (implies ``end``; at most 256 bytes of UTF-8)."""


def encode_tokens(ids: tuple[int, ...], text: str | None, timestamp: float, *,
                  logprobs: tuple[float, ...] | None = None, end: bool = False,
                  error: str | None = None) -> bytes:
    """A token frame with the ids, the text, log-probabilities and end/error markers (if
    any) and an absolute float64 timestamp in sender seconds."""
    return encode_token_frame(ids, text=text, timestamp=float(timestamp), logprobs=logprobs,
                              end=end, error=error)


def decode_tokens(body: bytes) -> TokenMessage:
    """Inverse of :func:`encode_tokens` (``timestamp`` in sender seconds); raises
    RemoteProtocolError on anything else."""
    frame = decode_token_frame(body)
    if frame.timestamp is None:
        raise RemoteProtocolError("token record has no absolute timestamp")
    return TokenMessage(ids=frame.ids, text=frame.text, timestamp=frame.timestamp,
                        logprobs=frame.logprobs, end=frame.end or frame.error is not None,
                        error=frame.error)


def encode_array(array: Any, timestamp: float, *, compress: bool = False) -> bytes:
    """An ``"array"`` envelope: ``ts``, the array as an RFC 8746 typed array, and ``dtype``
    for bool and complex arrays. ``compress`` allows zstd when it pays."""
    arr = np.asarray(array)
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind not in _ARRAY_KINDS or (kind == "f" and size > 8) or (kind == "c" and size > 16):
        raise LocalProtocolError(f"cannot send an array of dtype {arr.dtype} "
                                 "(bool, integers, float16/32/64, complex64/128 only)")
    if arr.ndim > K_MAX_NDIM - (kind == "c"):
        raise LocalProtocolError(f"array has {arr.ndim} dimensions, at most {K_MAX_NDIM} "
                                 f"({K_MAX_NDIM - 1} for complex)")
    ts = float(timestamp)
    if not math.isfinite(ts):
        raise LocalProtocolError(f"timestamp must be finite, got {timestamp!r}")
    fields: dict[str, Any] = {"ts": ts}
    if kind == "b":
        fields["dtype"] = "bool"
        arr = arr.view(np.uint8)
    elif kind == "c":
        fields["dtype"] = f"complex{8 * size}"
        parts = np.dtype(f"{arr.dtype.byteorder}f{size // 2}")
        flat = np.ascontiguousarray(arr).reshape(-1)  # 1-D: a 0-d array cannot change dtype
        arr = flat.view(parts).reshape((*arr.shape, 2))
    fields["data"] = arr
    return encode_envelope(_ARRAY_TYPE, fields, compress=compress)


def decode_array(body: bytes) -> tuple[np.ndarray[Any, Any], float]:
    """Inverse of :func:`encode_array`; validates type, shape and size before building.

    The array is a read-only view of the received bytes (of the decompressed bytes for a
    compressed envelope)."""
    fields = decode_envelope(body, expected_type=_ARRAY_TYPE).fields
    ts, arr, dtype = fields.get("ts"), fields.get("data"), fields.get("dtype")
    if not set(fields) <= {"ts", "data", "dtype"}:
        raise RemoteProtocolError(f"array record has unknown fields {sorted(fields)[:8]}")
    if not isinstance(ts, float) or not math.isfinite(ts):
        raise RemoteProtocolError("array record timestamp is missing or not a finite float")
    if not isinstance(arr, np.ndarray):
        raise RemoteProtocolError("array record data is missing or not a typed array")
    if dtype is None and "dtype" not in fields:
        return arr, ts
    if dtype == "bool":
        if arr.dtype != np.uint8 or (arr > 1).any():
            raise RemoteProtocolError("bool array record is not uint8 zeros and ones")
        return arr.view(np.bool_), ts
    if isinstance(dtype, str) and dtype in _COMPLEX:
        if arr.dtype.str[1:] != _COMPLEX[dtype] or arr.ndim < 1 or arr.shape[-1] != 2:
            raise RemoteProtocolError(f"{dtype} array record is not float pairs")
        complex_dtype = np.dtype(f"{arr.dtype.byteorder}c{2 * arr.dtype.itemsize}")
        return arr.view(complex_dtype).reshape(arr.shape[:-1]), ts
    raise RemoteProtocolError(f"array record has unknown dtype {str(dtype)[:32]!r}")
