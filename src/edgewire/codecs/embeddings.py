"""Embedding vectors at a precision that fits the link: codec ``"embeddings"``.

A packet is one envelope (:mod:`edgewire.codecs.envelope`) of type ``"emb"`` holding one
vector (1-D) or a batch (2-D, one vector per row)::

    {"v": 1, "type": "emb", "ts": <float seconds>, "p": <precision>,
     "data": <typed array>, "scale": <float32 typed array>,      (int8, int4)
     "shape": [<dims>], "g": <group size>}                       (int4)

Precisions, each decoded to float32:

* ``float32``: lossless for float32 input (others are converted to float32 first); tag 85.
* ``float16``: IEEE half, round to nearest even; tag 84. Values beyond +-65504 are refused
  (``auto`` skips to int8 for such a vector batch).
* ``bfloat16``: the upper 16 bits of float32 rounded to nearest even, carried as uint16
  (tag 69) since RFC 8746 has no bfloat16 tag (values that would round to infinity,
  beyond about 3.396e38, are refused). Same size as float16 with 8 bits less
  mantissa, so ``auto`` never picks it; ask for it by name.
* ``int8``: symmetric, one float32 scale per vector, ``scale = max|x| / 127``,
  ``q = round(x / scale)`` in -127..127 (tag 72); ``x ~ q * scale``. Scales have the shape
  of the data without its last axis. A scale that would be subnormal (``max|x|`` below
  about 1.5e-36) is 0: that vector travels as zeros.
* ``int4``: symmetric, one float32 scale per group of ``g`` consecutive elements of a vector
  (the last group may be shorter), ``scale = max|x| / 7``, ``q`` in -7..7 as a 4-bit two's
  complement nibble; two per byte, element ``2k`` in the low nibble and ``2k+1`` in the high
  one, an odd last element padded with 0 (uint8, tag 64, last axis ``ceil(d / 2)``).
  ``"shape"`` is the logical shape, scales have shape ``shape[:-1] + [ceil(d / g)]``
  (subnormal scales are 0, as for int8).

Inputs must be finite, and the decoder refuses a packet that decodes to anything else
(or whose scales are negative or so large that ``q * scale`` overflows).

Per vector (``d`` elements), without the envelope: float32 ``4d``, float16 and bfloat16
``2d``, int8 ``d + 4``, int4 ``ceil(d/2) + 4 ceil(d/g)`` bytes. The envelope adds 45 to 85
bytes per packet (more for int4, which also carries its shape and group size), shared by
the vectors of a batch.

:class:`EmbeddingEncoder` then zstd-compresses the envelope when that saves at least 5 %
(``compress=True``, the default; :func:`encode_embeddings` leaves it off unless asked), the
threshold being :data:`edgewire.codecs.envelope.K_ZSTD_MIN_SAVING`. Quantized values cluster
near zero, so an int8 batch of 16 normalized 768-dimensional vectors shrinks by 7-21 %
(``edgewire bench codecs``: 21 % with outlier dimensions, 7 % without); float packets gain
about 7 % from their exponent bytes. The decoder reads both forms.

``precision="auto"`` picks, for each packet, the most precise of float32 > float16 > int8 >
int4 whose offered rate fits the channel's share of the estimate, which the encoder learns
from :meth:`EmbeddingEncoder.set_target_bitrate`. The offered rate at a precision is what the
packets of the last ``window_s`` seconds (by their timestamps, the current one included)
would have cost at that precision, envelope included: when there are two packets or more
spread over at least 10 ms, the bytes of all but the oldest over the time from the oldest to
the newest (a steady stream is measured right from its second packet); otherwise the bytes
over ``window_s``. A precision fits when its rate is at most ``max_utilization`` of the
target; to step *up* to a more precise level it must fit with ``hysteresis`` to spare, so a
rate on a boundary does not flap. Nothing fits: int4. No target yet: float32.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgewire.codecs.base import (
    CodecError,
    CodecInfo,
    Decoder,
    EncodedPacket,
    Encoder,
    register_codec,
)
from edgewire.codecs.envelope import decode_envelope, encode_envelope
from edgewire.errors import LocalProtocolError

__all__ = [
    "AUTO_LADDER",
    "PRECISIONS",
    "EmbeddingDecoder",
    "EmbeddingEncoder",
    "EmbeddingEncoderConfig",
    "bytes_per_vector",
    "decode_embeddings",
    "encode_embeddings",
]

PRECISIONS = ("float32", "float16", "bfloat16", "int8", "int4")
AUTO_LADDER = ("float32", "float16", "int8", "int4")
"""The precisions ``auto`` chooses from, most precise first."""

K_ENVELOPE_BYTES = 64  # bytes: envelope overhead of one packet (45..85), for the rate estimate
K_MIN_SPAN = 0.010  # seconds: packets closer than this do not define a rate
K_MAX_WINDOW_PACKETS = 4096  # packets kept in the rate window, at most
K_MAX_GROUP = 4096
K_F16_MAX = 65504.0
_MSG_TYPE = "emb"
_DTYPES = {"float32": "f4", "float16": "f2", "bfloat16": "u2", "int8": "i1", "int4": "u1"}


def bytes_per_vector(precision: str, dim: int, group_size: int = 32) -> int:
    """Payload bytes of one ``dim``-element vector at ``precision`` (scales included,
    envelope excluded)."""
    if precision == "float32":
        return 4 * dim
    if precision in ("float16", "bfloat16"):
        return 2 * dim
    if precision == "int8":
        return dim + 4
    if precision == "int4":
        return (dim + 1) // 2 + 4 * -(-dim // group_size)
    raise LocalProtocolError(f"unknown precision {precision!r}; known: {PRECISIONS}")


# ------------------------------------------------------------------ plain functions


def encode_embeddings(vectors: Any, *, precision: str, timestamp: float,
                      group_size: int = 32, compress: bool = False) -> bytes:
    """One packet of one vector (1-D) or a batch (2-D) at an explicit precision."""
    x = _check_input(vectors)
    if precision not in PRECISIONS:
        raise LocalProtocolError(f"unknown precision {precision!r}; known: {PRECISIONS}")
    if not 1 <= group_size <= K_MAX_GROUP:
        raise LocalProtocolError(f"group_size must be in 1..{K_MAX_GROUP}")
    if not math.isfinite(timestamp):
        raise LocalProtocolError("timestamp must be finite")
    fields: dict[str, Any] = {"ts": float(timestamp), "p": precision}
    if precision == "float32":
        fields["data"] = x.astype("<f4", copy=False)
    elif precision == "float16":
        if x.size and float(np.abs(x).max()) > K_F16_MAX:
            raise LocalProtocolError("vector values exceed the float16 range (+-65504)")
        fields["data"] = x.astype("<f2")
    elif precision == "bfloat16":
        fields["data"] = _to_bfloat16(x)
        if ((fields["data"] & 0x7FFF) == 0x7F80).any():
            raise LocalProtocolError("vector values round beyond the bfloat16 range")
    elif precision == "int8":
        fields["data"], fields["scale"] = _quantize_int8(x)
    else:
        fields["shape"] = list(x.shape)
        fields["g"] = group_size
        fields["data"], fields["scale"] = _quantize_int4(x, group_size)
    return encode_envelope(_MSG_TYPE, fields, compress=compress)


def decode_embeddings(data: bytes) -> tuple[np.ndarray[Any, Any], str, float]:
    """A packet back to ``(float32 array, precision, timestamp)``; CodecError if bad."""
    env = decode_envelope(data, expected_type=_MSG_TYPE)
    f = env.fields
    ts, precision, arr = f.get("ts"), f.get("p"), f.get("data")
    if not isinstance(ts, float) or not math.isfinite(ts):
        raise CodecError("embeddings packet timestamp is missing or not a finite float")
    if not isinstance(precision, str) or precision not in _DTYPES:
        raise CodecError(f"embeddings packet has unknown precision {str(precision)[:16]!r}")
    if not isinstance(arr, np.ndarray) or arr.dtype.str[1:] != _DTYPES[precision]:
        raise CodecError(f"embeddings packet data is not a {precision} typed array")
    if arr.ndim not in (1, 2):
        raise CodecError(f"embeddings packet data has {arr.ndim} dimensions, not 1 or 2")
    allowed = {"ts", "p", "data"} | ({"scale"} if precision in ("int8", "int4") else set())
    allowed |= {"shape", "g"} if precision == "int4" else set()
    if set(f) != allowed:
        raise CodecError(f"embeddings packet fields {sorted(f)} are not {sorted(allowed)}")
    if precision == "float32":
        out = arr.astype(np.float32)  # a writable native-order copy
    elif precision == "float16":
        out = arr.astype(np.float32)
    elif precision == "bfloat16":
        out = (arr.astype(np.uint32) << 16).view(np.float32)
    elif precision == "int8":
        scale = _check_scale(f.get("scale"), arr.shape[:-1], 128)
        out = arr.astype(np.float32) * scale[..., None]
    else:
        out = _dequantize_int4(arr, f.get("scale"), f.get("shape"), f.get("g"))
    if not np.isfinite(out).all():  # senders refuse such vectors; so do receivers
        raise CodecError("embeddings packet holds infinities or NaN")
    return out, precision, ts


# ------------------------------------------------------------------ quantization


def _check_input(vectors: Any) -> np.ndarray[Any, Any]:
    try:
        x = np.asarray(vectors)
    except (TypeError, ValueError):
        raise LocalProtocolError("embeddings must be a numeric array") from None
    if x.dtype.kind not in "biuf":
        raise LocalProtocolError(f"embeddings must be real numbers, not {x.dtype}")
    if x.ndim not in (1, 2):
        raise LocalProtocolError(f"embeddings must be 1-D or 2-D, got {x.ndim} dimensions")
    with np.errstate(over="ignore"):  # too large for float32: refused just below
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise LocalProtocolError("embeddings must be finite (no NaN or infinity)")
    return x


def _to_bfloat16(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    u: np.ndarray[Any, Any] = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    # round to nearest, ties to even: add 0x7FFF plus the lowest kept bit, then truncate;
    # finite input never overflows 32 bits (float32 values within half a bfloat16 step of
    # the float32 maximum round up to infinity, which the caller refuses)
    rounded: np.ndarray[Any, Any] = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return rounded


def _usable(scale: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float32 scales, with subnormal ones set to 0 (their vector or group is sent as zeros:
    its inverse would overflow, and its largest element is below 1e-36 anyway)."""
    out = np.asarray(scale, dtype="<f4")
    out[out < np.finfo(np.float32).tiny] = 0.0
    return out


def _quantize_int8(x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any],
                                                      np.ndarray[Any, Any]]:
    peak = np.abs(x).max(axis=-1) if x.shape[-1] else np.zeros(x.shape[:-1], np.float32)
    scale = _usable(np.asarray(peak / np.float32(127.0), dtype="<f4"))
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.rint(x * inv[..., None])
    return np.clip(q, -127, 127).astype(np.int8), scale


def _quantize_int4(x: np.ndarray[Any, Any], group: int) -> tuple[np.ndarray[Any, Any],
                                                                  np.ndarray[Any, Any]]:
    dim = x.shape[-1]
    groups = -(-dim // group)
    lead = x.shape[:-1]
    padded = np.zeros((*lead, groups * group), np.float32)
    padded[..., :dim] = x
    blocks = padded.reshape(*lead, groups, group)
    scale = _usable(np.abs(blocks).max(axis=-1, initial=0.0) / np.float32(7.0))
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.clip(np.rint(blocks * inv[..., None]), -7, 7).astype(np.int8)
    q = q.reshape(*lead, groups * group)[..., :dim]
    if dim % 2:
        q = np.concatenate([q, np.zeros((*lead, 1), np.int8)], axis=-1)
    nib = q.view(np.uint8) & 0x0F
    packed = (nib[..., 0::2] | (nib[..., 1::2] << 4)).astype(np.uint8)
    return packed, scale


def _check_scale(obj: object, shape: tuple[int, ...], levels: int) -> np.ndarray[Any, Any]:
    """Scales of the right shape, each in 0..float32 max / levels (so q * scale is finite)."""
    if not isinstance(obj, np.ndarray) or obj.dtype.str[1:] != "f4" or obj.shape != shape:
        raise CodecError(f"embeddings packet scale is not a float32 array of shape {shape}")
    scale = obj.astype(np.float32)
    if not ((scale >= 0) & (scale <= np.finfo(np.float32).max / levels)).all():
        raise CodecError("embeddings packet scale is negative, too large or not finite")
    return scale


def _dequantize_int4(packed: np.ndarray[Any, Any], scale_obj: object, shape_obj: object,
                     group: object) -> np.ndarray[Any, Any]:
    if type(group) is not int or not 1 <= group <= K_MAX_GROUP:
        raise CodecError(f"int4 group size is not an integer in 1..{K_MAX_GROUP}")
    if not isinstance(shape_obj, list) or len(shape_obj) != packed.ndim or not all(
            type(d) is int and d >= 0 for d in shape_obj):
        raise CodecError("int4 shape is not a list of dimensions matching the data")
    shape = tuple(shape_obj)
    dim = shape[-1]
    if packed.shape != (*shape[:-1], (dim + 1) // 2):
        raise CodecError(f"int4 data shape {packed.shape} does not hold shape {shape}")
    groups = -(-dim // group)
    scale = _check_scale(scale_obj, (*shape[:-1], groups), 8)
    lo = (packed & 0x0F).astype(np.int8)
    hi = (packed >> 4).astype(np.int8)
    q = np.empty((*shape[:-1], 2 * packed.shape[-1]), np.int8)
    q[..., 0::2] = (lo ^ 8) - 8  # sign-extend the 4-bit two's complement nibbles
    q[..., 1::2] = (hi ^ 8) - 8
    per_elem = np.repeat(scale, group, axis=-1)[..., :dim]
    out: np.ndarray[Any, Any] = q[..., :dim].astype(np.float32) * per_elem
    return out


# ------------------------------------------------------------------ codec classes


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingEncoderConfig:
    """Options of :class:`EmbeddingEncoder`."""

    precision: str = "auto"
    """One of PRECISIONS, or "auto" (see the module docstring)."""
    group_size: int = 32
    """Elements per int4 scale."""
    window_s: float = 1.0
    """Seconds of recent packets the offered rate is measured over."""
    max_utilization: float = 0.9
    """Fraction of the target the offered rate may use."""
    hysteresis: float = 0.1
    """Extra fraction of the target left free before stepping up to a finer precision."""
    compress: bool = True
    """zstd-compress packets when it saves at least 5 % (int8 and int4 batches usually do;
    float packets rarely, and are then sent as they are)."""
    target_bps: float | None = None
    """Initial target (bits/s); None until :meth:`EmbeddingEncoder.set_target_bitrate`."""


class EmbeddingEncoder(Encoder):
    """Encodes vectors or batches of vectors, one packet per :meth:`encode` call."""

    def __init__(self, **options: Any) -> None:
        try:
            cfg = EmbeddingEncoderConfig(**options)
        except TypeError as exc:
            raise LocalProtocolError(f"bad embeddings codec option: {exc}") from None
        if cfg.precision != "auto" and cfg.precision not in PRECISIONS:
            raise LocalProtocolError(f"unknown precision {cfg.precision!r}; known: "
                                     f"auto, {', '.join(PRECISIONS)}")
        if not (cfg.window_s > 0 and 0 < cfg.max_utilization <= 1
                and 0 <= cfg.hysteresis < 1 and 1 <= cfg.group_size <= K_MAX_GROUP):
            raise LocalProtocolError("embeddings codec: window_s > 0, max_utilization in "
                                     "(0, 1], hysteresis in [0, 1), group_size in 1..4096")
        self.config = cfg
        self._target_bps = cfg.target_bps
        self._window: deque[tuple[float, int, int]] = deque(maxlen=K_MAX_WINDOW_PACKETS)
        self._level = 0  # index in AUTO_LADDER of the last choice
        self._counts = {p: 0 for p in PRECISIONS}
        self._vectors = 0
        self._bytes = 0
        if cfg.target_bps is not None:
            self.set_target_bitrate(cfg.target_bps)

    def set_target_bitrate(self, bitrate_bps: float) -> None:
        """The channel's current share of the bandwidth estimate (bits/s)."""
        super().set_target_bitrate(bitrate_bps)
        self._target_bps = float(bitrate_bps)

    def offered_bps(self, precision: str) -> float:
        """Bits/s the recent packets would need at ``precision`` (0.0 before any)."""
        if not self._window:
            return 0.0
        sizes = [n * bytes_per_vector(precision, d, self.config.group_size) + K_ENVELOPE_BYTES
                 for _, n, d in self._window]
        span = self._window[-1][0] - self._window[0][0]
        if len(sizes) >= 2 and span >= K_MIN_SPAN:
            return 8.0 * sum(sizes[1:]) / span
        return 8.0 * sum(sizes) / self.config.window_s

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """One packet for a vector or a batch, at the configured or chosen precision."""
        x = _check_input(item)
        n = 1 if x.ndim == 1 else x.shape[0]
        while self._window and self._window[0][0] <= timestamp - self.config.window_s:
            self._window.popleft()
        self._window.append((timestamp, n, x.shape[-1]))
        precision = self.config.precision
        if precision == "auto":
            fits_f16 = not x.size or float(np.abs(x).max()) <= K_F16_MAX
            precision = self._choose(fits_f16)
        data = encode_embeddings(x, precision=precision, timestamp=timestamp,
                                 group_size=self.config.group_size,
                                 compress=self.config.compress)
        self._counts[precision] += 1
        self._vectors += n
        self._bytes += len(data)
        meta = {"precision": precision, "vectors": n, "bytes": len(data),
                "target_bps": self._target_bps,
                "offered_bps": self.offered_bps(precision)}
        return [EncodedPacket(data=data, timestamp=timestamp, keyframe=True, meta=meta)]

    def _choose(self, fits_f16: bool) -> str:
        if self._target_bps is None:
            self._level = 0
            return AUTO_LADDER[0]
        budget = self._target_bps * self.config.max_utilization
        choice = len(AUTO_LADDER) - 1
        for i, p in enumerate(AUTO_LADDER[:-1]):
            if p == "float16" and not fits_f16:
                continue
            limit = budget * (1.0 - self.config.hysteresis) if i < self._level else budget
            if self.offered_bps(p) <= limit:
                choice = i
                break
        self._level = choice
        return AUTO_LADDER[choice]

    def stats(self) -> dict[str, Any]:
        """Packets per precision, vectors, bytes, the current target."""
        return {"packets": dict(self._counts), "vectors": self._vectors,
                "bytes": self._bytes, "target_bps": self._target_bps}


class EmbeddingDecoder(Decoder):
    """Decodes packets into float32 arrays (1-D for one vector, 2-D for a batch)."""

    def __init__(self) -> None:
        self._counts = {p: 0 for p in PRECISIONS}
        self._errors = 0
        self._vectors = 0

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """One packet -> ``[float32 array]``; ``None`` -> ``[]`` (nothing to conceal)."""
        if data is None:
            return []
        try:
            arr, precision, _ = decode_embeddings(data)
        except CodecError:
            self._errors += 1
            raise
        self._counts[precision] += 1
        self._vectors += 1 if arr.ndim == 1 else arr.shape[0]
        return [arr]

    def stats(self) -> dict[str, Any]:
        """Packets per precision, vectors, refused packets."""
        return {"packets": dict(self._counts), "vectors": self._vectors,
                "errors": self._errors}


register_codec(CodecInfo(
    name="embeddings", kind="embeddings", encoder=EmbeddingEncoder,
    decoder=EmbeddingDecoder,
    description="embedding vectors as float32/float16/bfloat16/int8/int4 RFC 8746 typed "
                "arrays in a CBOR envelope; auto precision from the target bitrate",
))
