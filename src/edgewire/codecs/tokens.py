"""Compact binary frames for LLM token streams: codec ``"tokens"``.

One frame carries zero or more token ids, optionally their text, their log-probabilities,
an end-of-stream or error marker, and a timestamp. Layout (all integers are unsigned LEB128
varints, minimal length, except where noted)::

    header   1 byte   bits 7-6  version, 1
                      bits 5-4  timestamp: 0 none, 1 delta, 2 absolute, 3 reserved
                      bit 3     MULTI: a token count follows; without it the frame has one id
                      bit 2     TEXT: the frame carries UTF-8 text
                      bit 1     LOGPROBS: the frame carries one log-probability per id
                      bit 0     CTRL: a control byte follows the header
    control  1 byte   (CTRL only) bit 0 END: last frame of the stream;
                      bit 1 ERROR: the stream failed (requires END); bits 2-7 are zero
    time              delta: zigzag varint, milliseconds since the previous frame's
                      timestamp (as the decoder reconstructs it, so rounding never
                      accumulates); absolute: float64 little-endian, seconds
    count    varint   (MULTI only) number of ids, at most K_MAX_FRAME_TOKENS
    ids      varints  token ids, each below 2**32 (at most 5 bytes), as they are: ids are
                      arbitrary vocabulary indices, so no delta coding
    text              (TEXT only) varint byte length, then that many bytes of UTF-8
    logprobs          (LOGPROBS only) count x float16 little-endian, natural log; values
                      below -65504 become -inf; float16 keeps about 3 significant digits,
                      which is as much as a sampler's log-probabilities mean
    error             (ERROR only) varint byte length (at most K_MAX_ERROR_BYTES), UTF-8

Nothing may follow the last field. A live stream sends one id per frame: header, a one-byte
time delta while tokens come less than 64 ms apart, and the id (1 byte below 128, 2 below
16384, 3 below 2**21) -- 3 to 5 bytes a token. Several tokens ready at once go in one frame
(MULTI). The delta needs the previous timestamp, which the stateful :class:`TokenEncoder`
and :class:`TokenDecoder` keep (the encoder starts with an absolute timestamp and repeats
one every ``resync_every`` frames); the plain functions take it as ``previous_timestamp``.

Decoders raise :class:`~edgewire.codecs.base.CodecError` for anything malformed: unknown
version or reserved bits, a varint that is over-long, non-minimal or truncated, a count or
length larger than the bytes that remain, bad UTF-8, a non-finite timestamp, trailing bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
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
from edgewire.errors import LocalProtocolError

__all__ = [
    "K_MAX_ERROR_BYTES",
    "K_MAX_FRAME_TOKENS",
    "TokenDecoder",
    "TokenEncoder",
    "TokenEncoderConfig",
    "TokenFrame",
    "decode_token_frame",
    "encode_token_frame",
]

K_VERSION = 1
K_MAX_FRAME_TOKENS = 65536
K_MAX_ERROR_BYTES = 256
K_MAX_DELTA_MS = (1 << 31) - 1  # milliseconds: larger jumps are sent as absolute times

_TS_NONE, _TS_DELTA, _TS_ABS = 0, 1, 2
_MULTI, _TEXT, _LOGPROBS, _CTRL = 0x08, 0x04, 0x02, 0x01
_END, _ERROR = 0x01, 0x02
_F64 = struct.Struct("<d")
_MAX_ID = (1 << 32) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFrame:
    """The content of one token frame."""

    ids: tuple[int, ...] = ()
    """Token ids, each in 0..2**32-1."""
    text: str | None = None
    """Text of the tokens, when the sender has it ("" is kept apart from None)."""
    logprobs: tuple[float, ...] | None = None
    """One natural-log probability per id (float16 on the wire), or None."""
    timestamp: float | None = None
    """Seconds on the sender's clock; None when the frame carries none."""
    end: bool = False
    """Last frame of the stream."""
    error: str | None = None
    """Why the stream failed (an error frame is also the last one)."""


# ------------------------------------------------------------------ plain functions


def encode_token_frame(ids: Sequence[int], *, text: str | None = None,
                       logprobs: Sequence[float] | None = None,
                       timestamp: float | None = None, end: bool = False,
                       error: str | None = None,
                       previous_timestamp: float | None = None) -> bytes:
    """Encode one frame. The timestamp is sent as a millisecond delta from
    ``previous_timestamp`` when that is given (and the gap fits), else as an absolute
    float64; an ``error`` implies ``end`` and is cut to :data:`K_MAX_ERROR_BYTES`."""
    return _encode(ids, text, logprobs, timestamp, end, error, previous_timestamp)[0]


def decode_token_frame(data: bytes, *, previous_timestamp: float | None = None) -> TokenFrame:
    """Decode one frame; a delta timestamp needs ``previous_timestamp``. CodecError on bad
    input."""
    buf = bytes(data)
    if not buf:
        raise CodecError("empty token frame")
    head = buf[0]
    if head >> 6 != K_VERSION:
        raise CodecError(f"token frame version {head >> 6}, expected {K_VERSION}")
    pos = 1
    ctrl = 0
    if head & _CTRL:
        if len(buf) < 2:
            raise CodecError("token frame truncated in its control byte")
        ctrl = buf[1]
        pos = 2
        if ctrl & ~(_END | _ERROR):
            raise CodecError(f"token frame control byte has reserved bits: {ctrl:#04x}")
        if ctrl & _ERROR and not ctrl & _END:
            raise CodecError("token frame has ERROR without END")
    ts_mode = (head >> 4) & 3
    timestamp: float | None = None
    if ts_mode == _TS_DELTA:
        raw, pos = _read_varint(buf, pos, 5, "time delta")
        if raw > 2 * K_MAX_DELTA_MS:  # |delta| <= K_MAX_DELTA_MS
            raise CodecError("token frame time delta is out of range")
        if previous_timestamp is None:
            raise CodecError("token frame has a time delta but no previous timestamp")
        timestamp = previous_timestamp + _unzigzag(raw) / 1000.0
    elif ts_mode == _TS_ABS:
        if len(buf) < pos + 8:
            raise CodecError("token frame truncated in its timestamp")
        timestamp = _F64.unpack_from(buf, pos)[0]
        pos += 8
        if not math.isfinite(timestamp):
            raise CodecError("token frame timestamp is not finite")
    elif ts_mode != _TS_NONE:
        raise CodecError("token frame uses the reserved timestamp mode")
    count = 1
    if head & _MULTI:
        count, pos = _read_varint(buf, pos, 5, "token count")
        if count > K_MAX_FRAME_TOKENS or count > len(buf) - pos:
            raise CodecError(f"token count {count} exceeds the frame")
    ids = []
    for _ in range(count):
        value, pos = _read_varint(buf, pos, 5, "token id")
        if value > _MAX_ID:
            raise CodecError("token id is 2**32 or more")
        ids.append(value)
    text: str | None = None
    if head & _TEXT:
        text, pos = _read_text(buf, pos, "text")
    logprobs: tuple[float, ...] | None = None
    if head & _LOGPROBS:
        if len(buf) < pos + 2 * count:
            raise CodecError("token frame truncated in its logprobs")
        logprobs = struct.unpack_from(f"<{count}e", buf, pos)
        pos += 2 * count
    error: str | None = None
    if ctrl & _ERROR:
        error, pos = _read_text(buf, pos, "error", limit=K_MAX_ERROR_BYTES)
    if pos != len(buf):
        raise CodecError(f"{len(buf) - pos} bytes after the end of the token frame")
    return TokenFrame(ids=tuple(ids), text=text, logprobs=logprobs, timestamp=timestamp,
                      end=bool(ctrl & _END), error=error)


def _encode(ids: Sequence[int], text: str | None, logprobs: Sequence[float] | None,
            timestamp: float | None, end: bool, error: str | None,
            previous: float | None) -> tuple[bytes, float | None]:
    """The frame and the timestamp the decoder will reconstruct from it."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise LocalProtocolError("token ids must be a sequence of integers")
    checked = [_check_id(i) for i in ids]
    if len(checked) > K_MAX_FRAME_TOKENS:
        raise LocalProtocolError(f"{len(checked)} tokens in one frame, at most "
                                 f"{K_MAX_FRAME_TOKENS}")
    head = K_VERSION << 6
    out = bytearray(1)
    ctrl = (_END if end or error is not None else 0) | (_ERROR if error is not None else 0)
    if ctrl:
        head |= _CTRL
        out.append(ctrl)
    sent_ts: float | None = None
    if timestamp is not None:
        ts = float(timestamp)
        if not math.isfinite(ts):
            raise LocalProtocolError(f"timestamp must be finite, got {timestamp!r}")
        delta_ms = None
        if previous is not None and math.isfinite(previous):
            delta = round((ts - previous) * 1000.0)
            if abs(delta) <= K_MAX_DELTA_MS:
                delta_ms = delta
        if delta_ms is not None and previous is not None:
            head |= _TS_DELTA << 4
            _write_varint(out, _zigzag(delta_ms))
            sent_ts = previous + delta_ms / 1000.0
        else:
            head |= _TS_ABS << 4
            out += _F64.pack(ts)
            sent_ts = ts
    if len(checked) != 1:
        head |= _MULTI
        _write_varint(out, len(checked))
    for i in checked:
        _write_varint(out, i)
    if text is not None:
        if not isinstance(text, str):
            raise LocalProtocolError("token text must be str or None")
        try:
            raw_text = text.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("token text is not encodable as UTF-8") from None
        head |= _TEXT
        _write_bytes(out, raw_text)
    if logprobs is not None:
        try:
            values = np.asarray(logprobs, dtype=np.float64)
        except (TypeError, ValueError):
            raise LocalProtocolError("logprobs must be a sequence of numbers") from None
        if values.shape != (len(checked),):
            raise LocalProtocolError(f"{values.size} logprobs for {len(checked)} token ids")
        head |= _LOGPROBS
        with np.errstate(over="ignore"):
            out += values.astype("<f2").tobytes()
    if error is not None:
        if not isinstance(error, str):
            raise LocalProtocolError("token error message must be str")
        raw = error.encode("utf-8", "replace")[:K_MAX_ERROR_BYTES]
        # drop a character the cut split in two
        _write_bytes(out, raw.decode("utf-8", "ignore").encode("utf-8"))
    out[0] = head
    return bytes(out), sent_ts


def _check_id(i: object) -> int:
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i <= _MAX_ID:
        raise LocalProtocolError(f"token id {i!r} is not an integer in 0..2**32-1")
    return int(i)


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


def _write_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _write_bytes(out: bytearray, raw: bytes) -> None:
    _write_varint(out, len(raw))
    out += raw


def _read_varint(buf: bytes, pos: int, max_len: int, what: str) -> tuple[int, int]:
    value = 0
    for n in range(max_len):
        if pos + n >= len(buf):
            raise CodecError(f"token frame truncated in a varint ({what})")
        byte = buf[pos + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            if byte == 0 and n:
                raise CodecError(f"non-minimal varint ({what})")
            return value, pos + n + 1
    raise CodecError(f"varint longer than {max_len} bytes ({what})")


def _read_text(buf: bytes, pos: int, what: str,
               limit: int | None = None) -> tuple[str, int]:
    length, pos = _read_varint(buf, pos, 5, f"{what} length")
    if length > len(buf) - pos or (limit is not None and length > limit):
        raise CodecError(f"token frame {what} length {length} exceeds the frame")
    try:
        text = buf[pos:pos + length].decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError(f"token frame {what} is not valid UTF-8") from None
    return text, pos + length


# ------------------------------------------------------------------ codec classes


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenEncoderConfig:
    """Options of :class:`TokenEncoder`."""

    timestamps: str = "delta"
    """"delta" (ms since the previous frame), "absolute" (float64 every frame) or "none"."""
    resync_every: int = 256
    """With "delta", send an absolute timestamp every this many frames (0: first only)."""


@dataclass(slots=True)
class _Counters:
    frames: int = 0
    tokens: int = 0
    bytes: int = 0
    errors: int = 0


class TokenEncoder(Encoder):
    """Encodes token items into frames, one frame per :meth:`encode` call.

    An item is a token id, a sequence of ids (a batch: the tokens ready now), a
    :class:`TokenFrame`, or any object with ``ids`` and ``text`` attributes (such as
    :class:`edgewire.TokenMessage`); its ``logprobs``, ``end`` and ``error`` attributes are
    used when present. The ``timestamp`` argument is the frame's timestamp.
    """

    def __init__(self, **options: Any) -> None:
        try:
            self.config = TokenEncoderConfig(**options)
        except TypeError as exc:
            raise LocalProtocolError(f"bad tokens codec option: {exc}") from None
        if self.config.timestamps not in ("delta", "absolute", "none"):
            raise LocalProtocolError(f"timestamps must be delta, absolute or none, got "
                                     f"{self.config.timestamps!r}")
        if self.config.resync_every < 0:
            raise LocalProtocolError("resync_every must be >= 0")
        self._previous: float | None = None
        self._since_sync = 0
        self._counters = _Counters()

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """One frame for the item."""
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            ids: Sequence[int] = (int(item),)
            text = logprobs = error = None
            end = False
        elif isinstance(item, Sequence) and not isinstance(item, str | bytes):
            ids, text, logprobs, end, error = item, None, None, False, None
        elif hasattr(item, "ids"):
            ids, text = item.ids, getattr(item, "text", None)
            logprobs = getattr(item, "logprobs", None)
            end, error = bool(getattr(item, "end", False)), getattr(item, "error", None)
        else:
            raise LocalProtocolError(f"tokens codec cannot encode {type(item).__name__}")
        return [self._frame(ids, text, logprobs, end, error, timestamp)]

    def encode_end(self, *, timestamp: float, error: str | None = None) -> list[EncodedPacket]:
        """A frame with no tokens that ends the stream (with an error message, or not)."""
        return [self._frame((), None, None, True, error, timestamp)]

    def _frame(self, ids: Sequence[int], text: str | None, logprobs: Sequence[float] | None,
               end: bool, error: str | None, timestamp: float) -> EncodedPacket:
        mode = self.config.timestamps
        previous = None
        if mode == "delta":
            every = self.config.resync_every
            if self._previous is not None and (every == 0 or self._since_sync < every):
                previous = self._previous
        data, sent = _encode(ids, text, logprobs, None if mode == "none" else timestamp,
                             end, error, previous)
        if mode == "delta":
            self._since_sync = self._since_sync + 1 if previous is not None else 1
            self._previous = sent
        c = self._counters
        c.frames += 1
        c.tokens += len(ids)
        c.bytes += len(data)
        return EncodedPacket(data=data, timestamp=timestamp, keyframe=True,
                             meta={"tokens": len(ids), "bytes": len(data),
                                   "absolute_time": mode != "none" and previous is None})

    def stats(self) -> dict[str, Any]:
        """Frames, tokens and bytes encoded."""
        c = self._counters
        return {"frames": c.frames, "tokens": c.tokens, "bytes": c.bytes}


class TokenDecoder(Decoder):
    """Decodes frames into :class:`TokenFrame` items, keeping the previous timestamp for
    delta-coded ones. A frame without a timestamp gets the ``timestamp`` argument."""

    def __init__(self) -> None:
        self._previous: float | None = None
        self._counters = _Counters()

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """One frame -> ``[TokenFrame]``; ``None`` (a lost packet) -> ``[]``."""
        if data is None:
            return []
        try:
            frame = decode_token_frame(data, previous_timestamp=self._previous)
        except CodecError:
            self._counters.errors += 1
            raise
        if frame.timestamp is None:
            frame = TokenFrame(ids=frame.ids, text=frame.text, logprobs=frame.logprobs,
                               timestamp=timestamp, end=frame.end, error=frame.error)
        else:
            self._previous = frame.timestamp
        c = self._counters
        c.frames += 1
        c.tokens += len(frame.ids)
        c.bytes += len(data)
        return [frame]

    def stats(self) -> dict[str, Any]:
        """Frames, tokens and bytes decoded, frames refused."""
        c = self._counters
        return {"frames": c.frames, "tokens": c.tokens, "bytes": c.bytes, "errors": c.errors}


register_codec(CodecInfo(
    name="tokens", kind="tokens", encoder=TokenEncoder, decoder=TokenDecoder,
    description="compact token frames: LEB128 ids, optional text, float16 logprobs, "
                "end/error markers, millisecond time deltas",
))
