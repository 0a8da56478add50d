"""Sans-I/O traffic generators: audio, video, LLM tokens and embeddings on a schedule.

Every source is a small clock-driven state machine. A driver calls ``start(now=...)``, then
``poll(now=...)`` whenever ``get_timer()`` comes due (or whenever it likes), and sends each
returned :class:`Frame` on the matching channel. Items are scheduled at exact multiples of
the period from the start time, so a late driver catches up; items older than the source's
``max_backlog_s`` are skipped (and counted) rather than sent in a useless burst.

Payloads are synthetic: media bytes are slices of one pre-generated random pool, so making a
frame costs a slice, never a per-byte Python loop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from edgewire.errors import LocalProtocolError
from edgewire.transport.messages import TokenMessage
from edgewire.transport.qos import ChannelKind

if TYPE_CHECKING:
    from edgewire.codecs.base import Encoder

__all__ = [
    "AudioSource",
    "AudioSourceConfig",
    "EmbeddingSource",
    "EmbeddingSourceConfig",
    "Frame",
    "Payload",
    "Source",
    "TokenSource",
    "TokenSourceConfig",
    "VideoSource",
    "VideoSourceConfig",
    "WorkloadMix",
    "build_sources",
    "payload_size",
]

Payload = bytes | list[int] | TokenMessage | NDArray[Any]
"""What a source produces: bytes (audio, video), token ids or a TokenMessage (tokens), or a
numpy array (embeddings) -- exactly what ``Session.send`` accepts for each kind."""

#: Seed used when no generator is injected, so runs are reproducible by default.
K_DEFAULT_SEED = 0x65646765
#: Slack when comparing scheduled times with ``now``; absorbs float error in k * period.
K_TIME_EPSILON = 1e-9  # seconds
#: Smallest pool of random bytes media payloads are sliced from.
K_MIN_POOL_BYTES = 64 * 1024  # bytes
#: Payload offsets drawn from the generator in one call.
K_OFFSET_BATCH = 256
#: Nominal size of one token id in :func:`payload_size` (a u32 on the wire).
K_TOKEN_ID_BYTES = 4  # bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One item a source produced, ready for ``Session.send``."""

    payload: Payload
    """bytes (audio, video), list of token ids or TokenMessage (tokens), array (embeddings)."""
    timestamp: float
    """Scheduled capture time (seconds, the driver's clock); pass it as ``timestamp``."""
    keyframe: bool = False
    """Video keyframe flag; False for every other kind."""
    size_bytes: int
    """Application payload size, as :func:`payload_size` counts it."""
    index: int = 0
    """Position in the source's schedule (0 for the first item; skipped items count)."""


def payload_size(payload: Payload) -> int:
    """Application payload bytes of ``payload``: ``len`` of bytes, ``nbytes`` of an array,
    4 bytes per token id plus the UTF-8 text of a TokenMessage.

    Senders and receivers both use this, so goodput compares like with like.
    """
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    if isinstance(payload, memoryview):
        return payload.nbytes
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    if isinstance(payload, TokenMessage):
        text = len(payload.text.encode("utf-8")) if payload.text else 0
        return K_TOKEN_ID_BYTES * len(payload.ids) + text
    if isinstance(payload, list | tuple):
        return K_TOKEN_ID_BYTES * len(payload)
    raise LocalProtocolError(f"cannot size a payload of type {type(payload).__name__}")


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise LocalProtocolError(f"{name} must be a positive finite number, got {value!r}")


class _BytePool:
    """Random bytes generated once; payloads are slices at random offsets."""

    __slots__ = ("_buf", "_draws", "_rng")

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self._rng = rng
        self._buf = rng.bytes(max(K_MIN_POOL_BYTES, size))
        self._draws: list[float] = []

    def take(self, size: int) -> bytes:
        """``size`` pseudo-random bytes."""
        buf = self._buf
        if size > len(buf):
            # only after a bitrate increase beyond the pool: repeat it, still no byte loop
            self._buf = buf = buf * (size // len(buf) + 2)
        if not self._draws:
            # one call into numpy per K_OFFSET_BATCH payloads: a call per payload costs
            # more than the slice
            self._draws = self._rng.random(K_OFFSET_BATCH).tolist()
        off = int(self._draws.pop() * (len(buf) - size + 1))
        return buf[off : off + size]


class _SizeCarry:
    """Whole-byte sizes whose running sum tracks a fractional target exactly."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = 0.0

    def next(self, target: float) -> int:
        size = max(1, round(target + self._carry))
        self._carry += target - size
        return size


class Source(ABC):
    """Base of every generator: a periodic schedule with catch-up and a bounded backlog."""

    kind: ClassVar[ChannelKind]
    """Channel kind the source's frames are meant for."""

    def __init__(self, *, period_s: float, max_backlog_s: float) -> None:
        _check_positive("period", period_s)
        if not (math.isfinite(max_backlog_s) and max_backlog_s >= 0):
            raise LocalProtocolError(f"max_backlog_s must be >= 0, got {max_backlog_s!r}")
        self._period_s = period_s
        self._max_backlog_s = max_backlog_s
        self._origin = 0.0
        self._origin_index = 0
        self._next = 0
        self._running = False
        self.produced = 0
        """Items returned by ``poll`` so far."""
        self.produced_bytes = 0
        """Sum of their ``size_bytes``."""
        self.skipped = 0
        """Items never produced because the driver polled more than max_backlog_s late."""

    @property
    def period_s(self) -> float:
        """Seconds between two scheduled items."""
        return self._period_s

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._running

    def start(self, *, now: float) -> None:
        """Begin the schedule: the first item is due at ``now``."""
        if self._running:
            raise LocalProtocolError(f"{type(self).__name__} is already started")
        self._origin = now
        self._origin_index = self._next
        self._running = True

    def stop(self) -> None:
        """End the schedule; ``poll`` returns nothing and ``get_timer`` None until restarted."""
        self._running = False

    def get_timer(self) -> float | None:
        """When the next item is due, or None when stopped."""
        return self._due(self._next) if self._running else None

    def poll(self, *, now: float) -> list[Frame]:
        """Every item due at or before ``now`` (oldest first), skipping those more than
        ``max_backlog_s`` late."""
        if not self._running:
            return []
        k = self._next
        oldest = now - self._max_backlog_s - K_TIME_EPSILON
        if self._due(k) < oldest:
            # jump arithmetically: a driver hours late must not loop over every missed item
            j = self._origin_index + math.ceil((oldest - self._origin) / self._period_s)
            j = max(j, k + 1)
            while j > k + 1 and self._due(j - 1) >= oldest:
                j -= 1
            while self._due(j) < oldest:
                j += 1
            self.skipped += j - k
            self._on_skip(k, j)
            k = j
        frames: list[Frame] = []
        limit = now + K_TIME_EPSILON
        while (due := self._due(k)) <= limit:
            frame = self._make(k, due)
            k += 1
            if frame is None:  # an encoder that produced nothing for this item
                continue
            frames.append(frame)
            self.produced_bytes += frame.size_bytes
        self._next = k
        self.produced += len(frames)
        return frames

    def _due(self, index: int) -> float:
        return self._origin + (index - self._origin_index) * self._period_s

    def _set_period(self, period_s: float) -> None:
        """Change the period from the next item on (it stays due when it was)."""
        _check_positive("period", period_s)
        self._origin = self._due(self._next)
        self._origin_index = self._next
        self._period_s = period_s

    def _on_skip(self, first: int, end: int) -> None:
        """Items ``first`` to ``end - 1`` were skipped (hook for stateful sources)."""
        return None

    @abstractmethod
    def _make(self, index: int, timestamp: float) -> Frame | None:
        """Build item ``index`` scheduled at ``timestamp`` (None: nothing to send)."""


# ---------------------------------------------------------------------------- audio


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioSourceConfig:
    """Constant-bitrate audio: one frame every ``frame_ms``."""

    bitrate_bps: float = 32_000
    """Encoded bitrate, bits per second."""
    frame_ms: float = 20.0
    """Frame duration, milliseconds."""
    max_backlog_s: float = 0.2
    """Items later than this are skipped; past the audio deadline they would be lost anyway."""
    codec: str | None = None
    """None: synthetic frames of the nominal size. A codec of ``edgewire.codecs``
    ("opus", "pcm16", "g711u", "g711a"): a speech-like signal encoded for real, 20 ms
    frames; Opus follows the channel's share up to ``bitrate_bps`` (:meth:`set_bitrate`)."""

    def __post_init__(self) -> None:
        _check_positive("bitrate_bps", self.bitrate_bps)
        _check_positive("frame_ms", self.frame_ms)
        if self.frame_bytes < 1:
            raise LocalProtocolError("audio frames would be smaller than one byte")
        if self.codec is not None:
            if self.codec not in AUDIO_CODECS:
                raise LocalProtocolError(f"audio codec {self.codec!r}: one of "
                                         f"{', '.join(AUDIO_CODECS)}")
            if self.frame_ms != 20.0:
                raise LocalProtocolError("encoded audio uses 20 ms frames")

    @property
    def frame_bytes(self) -> float:
        """Average frame size in bytes (``bitrate_bps * frame_ms / 8000``)."""
        return self.bitrate_bps * self.frame_ms / 8000.0


class AudioSource(Source):
    """Audio frames of ``bitrate_bps * frame_ms / 8000`` bytes every ``frame_ms``, or,
    with ``config.codec``, a speech-like signal encoded by that codec."""

    kind = ChannelKind.AUDIO

    def __init__(
        self, config: AudioSourceConfig | None = None, *, rng: np.random.Generator | None = None
    ) -> None:
        self.config = config or AudioSourceConfig()
        """The frozen parameters."""
        super().__init__(period_s=self.config.frame_ms / 1000.0,
                         max_backlog_s=self.config.max_backlog_s)
        rng = rng if rng is not None else np.random.default_rng(K_DEFAULT_SEED)
        self._pool = _BytePool(rng, 2 * math.ceil(self.config.frame_bytes))
        self._sizes = _SizeCarry()
        self._bitrate_bps = float(self.config.bitrate_bps)
        self.encoder: Encoder | None = None
        """The real encoder (``config.codec``), None for synthetic frames."""
        self._signal: NDArray[np.int16] | None = None
        self._frame_samples = 0
        if self.config.codec is not None:
            self.encoder, self._signal, self._frame_samples = _audio_encoder(
                self.config.codec, self.config.bitrate_bps, int(rng.integers(1 << 31)))

    @property
    def bitrate_bps(self) -> float:
        """Current bitrate target, bits per second."""
        return self._bitrate_bps

    def set_bitrate(self, bitrate_bps: float) -> None:
        """Follow a new target, capped at ``config.bitrate_bps`` (Opus re-tunes its
        encoder; PCM16 and G.711 have a fixed rate and keep it)."""
        _check_positive("bitrate_bps", bitrate_bps)
        self._bitrate_bps = min(float(bitrate_bps), self.config.bitrate_bps)
        if self.encoder is not None:
            self.encoder.set_target_bitrate(self._bitrate_bps)

    def _make(self, index: int, timestamp: float) -> Frame:
        if self.encoder is not None and self._signal is not None:
            n = self._frame_samples
            start = (index * n) % (len(self._signal) - n)
            packets = self.encoder.encode(self._signal[start:start + n], timestamp=timestamp)
            data = b"".join(p.data for p in packets)
            return Frame(payload=data, timestamp=timestamp, size_bytes=len(data), index=index)
        size = self._sizes.next(self._bitrate_bps * self.config.frame_ms / 8000.0)
        return Frame(payload=self._pool.take(size), timestamp=timestamp, size_bytes=size,
                     index=index)


#: Video codecs a source can encode with.
VIDEO_CODECS = ("h264", "vp8")
#: Audio codecs a source can encode with, and their sample rates.
# PCM16 runs at 16 kHz: a 20 ms frame at 48 kHz (1922 bytes) exceeds an audio channel's
# largest message (1024 bytes)
AUDIO_CODECS = {"opus": 48_000, "pcm16": 16_000, "g711u": 8_000, "g711a": 8_000}
#: Seconds of speech-like signal an encoding audio source loops over.
K_SIGNAL_SECONDS = 10.0


def _audio_encoder(codec: str, bitrate_bps: float, seed: int
                   ) -> tuple[Encoder, NDArray[np.int16], int]:
    from edgewire.codecs import create_encoder
    from edgewire.codecs.signals import speech_like_signal

    rate = AUDIO_CODECS[codec]
    signal = speech_like_signal(K_SIGNAL_SECONDS, seed=seed % 1000 + 1)
    if rate != 48_000:
        signal = np.ascontiguousarray(signal[:: 48_000 // rate])
    options: dict[str, Any] = ({"bitrate_bps": bitrate_bps} if codec == "opus"
                               else {"sample_rate": rate} if codec == "pcm16" else {})
    return create_encoder(codec, **options), signal, rate // 50


# ---------------------------------------------------------------------------- video


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoSourceConfig:
    """Video at ``fps`` whose average frame size meets ``bitrate_bps``."""

    bitrate_bps: float = 1_000_000
    """Average encoded bitrate, bits per second (keyframes included)."""
    fps: float = 30.0
    """Frames per second."""
    keyframe_interval_s: float = 2.0
    """Seconds between keyframes (rounded to whole frames, at least one)."""
    keyframe_scale: float = 4.0
    """Keyframe size ÷ delta-frame size (>= 1)."""
    size_jitter: float = 0.0
    """Relative standard deviation of frame sizes (0 = none); mean-preserving, clipped to
    +-3 sigma and to at most 100 %."""
    max_backlog_s: float = 0.3
    """Items later than this are skipped; past the video deadline they would be lost anyway."""
    adaptive: bool = True
    """Follow the session's share for the channel (BitrateChanged) down a bitrate,
    resolution and frame-rate ladder (``workload.ladder``), up to ``bitrate_bps``; off,
    the bitrate stays fixed."""
    codec: str | None = None
    """None: synthetic frames of the nominal sizes. "h264" or "vp8": FFmpeg's testsrc2
    pattern (``source_width`` x ``source_height``) encoded for real (the ``media``
    extra), scaled to the ladder's resolution; ``keyframe_scale`` and ``size_jitter``
    do not apply (the encoder decides)."""
    source_width: int = 640
    """Width of the test pattern an encoding source draws, pixels."""
    source_height: int = 360
    """Height of the test pattern, pixels."""

    def __post_init__(self) -> None:
        _check_positive("bitrate_bps", self.bitrate_bps)
        _check_positive("fps", self.fps)
        _check_positive("keyframe_interval_s", self.keyframe_interval_s)
        if not (math.isfinite(self.keyframe_scale) and self.keyframe_scale >= 1.0):
            raise LocalProtocolError(f"keyframe_scale must be >= 1, got {self.keyframe_scale}")
        if not (math.isfinite(self.size_jitter) and self.size_jitter >= 0.0):
            raise LocalProtocolError(f"size_jitter must be >= 0, got {self.size_jitter}")
        if self.codec is not None and self.codec not in VIDEO_CODECS:
            raise LocalProtocolError(f"video codec {self.codec!r}: one of "
                                     f"{', '.join(VIDEO_CODECS)}")
        for name in ("source_width", "source_height"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 16 <= value <= 4096 and value % 2 == 0):
                raise LocalProtocolError(f"{name} must be an even number of pixels in "
                                         f"16..4096, got {value!r}")

    @property
    def gop_frames(self) -> int:
        """Frames from one keyframe to the next."""
        return max(1, round(self.keyframe_interval_s * self.fps))


class VideoSource(Source):
    """Video frames: a keyframe every ``keyframe_interval_s``, delta frames between, sized so
    the average bitrate is ``bitrate_bps``. The target can change at run time
    (:meth:`set_bitrate`) and a receiver can ask for a keyframe (:meth:`request_keyframe`)."""

    kind = ChannelKind.VIDEO

    def __init__(
        self, config: VideoSourceConfig | None = None, *, rng: np.random.Generator | None = None
    ) -> None:
        self.config = config or VideoSourceConfig()
        """The frozen parameters (``bitrate_bps`` is only the starting target)."""
        super().__init__(period_s=1.0 / self.config.fps, max_backlog_s=self.config.max_backlog_s)
        self._rng = rng if rng is not None else np.random.default_rng(K_DEFAULT_SEED)
        self._gop_start = 0
        self._key_pending = False
        self._sizes = _SizeCarry()
        self._bitrate_bps = 0.0
        self._delta_bytes = 0.0
        self.encoder: Encoder | None = None
        """The real encoder (``config.codec``), None for synthetic frames."""
        self._pictures: Iterator[Any] | None = None
        cfg = self.config
        if cfg.codec is not None:
            from edgewire.codecs import create_encoder
            from edgewire.codecs.video import synthetic_frames

            self.encoder = create_encoder(
                cfg.codec, width=cfg.source_width, height=cfg.source_height, fps=cfg.fps,
                bitrate_bps=cfg.bitrate_bps, keyframe_interval_s=cfg.keyframe_interval_s)
            self._pictures = synthetic_frames(size=(cfg.source_width, cfg.source_height),
                                              fps=cfg.fps, output="frame")
        self.set_bitrate(self.config.bitrate_bps)
        self._pool = _BytePool(self._rng, 2 * math.ceil(self.keyframe_bytes * 1.5))
        self.keyframes = 0
        """Keyframes produced so far."""

    @property
    def bitrate_bps(self) -> float:
        """Current average bitrate target, bits per second."""
        return self._bitrate_bps

    @property
    def delta_bytes(self) -> float:
        """Nominal delta-frame size at the current target, bytes."""
        return self._delta_bytes

    @property
    def keyframe_bytes(self) -> float:
        """Nominal keyframe size at the current target, bytes."""
        return self._delta_bytes * self.config.keyframe_scale

    def set_bitrate(self, bitrate_bps: float) -> None:
        """Change the average bitrate target (what a rate controller does); applies from
        the next frame."""
        _check_positive("bitrate_bps", bitrate_bps)
        cfg = self.config
        fps = 1.0 / self.period_s
        n = max(1, round(cfg.keyframe_interval_s * fps))
        # one GOP = 1 keyframe + (n - 1) deltas must carry n average frames
        self._delta_bytes = bitrate_bps / 8.0 / fps * n / (cfg.keyframe_scale + n - 1)
        self._bitrate_bps = float(bitrate_bps)
        if self.encoder is not None:
            self.encoder.set_target_bitrate(bitrate_bps)

    @property
    def fps(self) -> float:
        """Current frame rate."""
        return 1.0 / self.period_s

    def set_frame_rate(self, fps: float) -> None:
        """Change the frame rate from the next frame on; the bitrate target stays."""
        _check_positive("fps", fps)
        self._set_period(1.0 / fps)
        self.set_bitrate(self._bitrate_bps)
        if self.encoder is not None:
            self.encoder.set_frame_rate(fps)  # type: ignore[attr-defined]

    def set_resolution(self, width: int, height: int) -> None:
        """Encode at ``width`` x ``height`` from the next frame (an encoding source; the
        synthetic one only sizes frames by bitrate and ignores it)."""
        if self.encoder is not None:
            self.encoder.set_resolution(width, height)  # type: ignore[attr-defined]

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe and restart the keyframe interval from it."""
        self._key_pending = True
        if self.encoder is not None:
            self.encoder.request_keyframe()

    def _gop_frames(self) -> int:
        return max(1, round(self.config.keyframe_interval_s * self.fps))

    def _on_skip(self, first: int, end: int) -> None:
        n = self._gop_frames()
        to_next_key = (n - (first - self._gop_start) % n) % n
        if first + to_next_key < end:
            # the skipped run held a keyframe: the encoder owes the receiver one
            self._key_pending = True

    def _make(self, index: int, timestamp: float) -> Frame | None:
        if self.encoder is not None and self._pictures is not None:
            if self._key_pending:
                self.encoder.request_keyframe()
                self._key_pending = False
            packets = self.encoder.encode(next(self._pictures), timestamp=timestamp)
            if not packets:
                return None
            data = b"".join(p.data for p in packets)
            key = any(p.keyframe for p in packets)
            self.keyframes += int(key)
            return Frame(payload=data, timestamp=timestamp, keyframe=key,
                         size_bytes=len(data), index=index)
        if self._key_pending:
            self._gop_start = index
            self._key_pending = False
        key = (index - self._gop_start) % self._gop_frames() == 0
        target = self.keyframe_bytes if key else self._delta_bytes
        jitter = self.config.size_jitter
        if jitter > 0:
            spread = min(3.0 * jitter, 1.0)
            target *= min(max(self._rng.normal(1.0, jitter), 1.0 - spread), 1.0 + spread)
        size = self._sizes.next(target)
        self.keyframes += int(key)
        return Frame(payload=self._pool.take(size), timestamp=timestamp, keyframe=key,
                     size_bytes=size, index=index)


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSourceConfig:
    """An LLM streaming tokens at a steady rate, ``batch`` tokens per message."""

    tokens_per_s: float = 20.0
    """Tokens per second (messages per second = tokens_per_s / batch)."""
    batch: int = 1
    """Token ids per message."""
    vocab: int = 50_000
    """Ids are drawn uniformly from 0 .. vocab - 1."""
    with_text: bool = False
    """Send TokenMessage with text "tok<id> " per token instead of a bare list of ids."""
    max_backlog_s: float = 1.0
    """Items later than this are skipped."""

    def __post_init__(self) -> None:
        _check_positive("tokens_per_s", self.tokens_per_s)
        if self.batch < 1:
            raise LocalProtocolError(f"batch must be >= 1, got {self.batch}")
        if not 1 <= self.vocab <= 1 << 32:
            raise LocalProtocolError(f"vocab must be in 1..2**32, got {self.vocab}")


class TokenSource(Source):
    """Token messages: ``batch`` random ids every ``batch / tokens_per_s`` seconds."""

    kind = ChannelKind.TOKENS

    def __init__(
        self, config: TokenSourceConfig | None = None, *, rng: np.random.Generator | None = None
    ) -> None:
        self.config = config or TokenSourceConfig()
        """The frozen parameters."""
        super().__init__(period_s=self.config.batch / self.config.tokens_per_s,
                         max_backlog_s=self.config.max_backlog_s)
        self._rng = rng if rng is not None else np.random.default_rng(K_DEFAULT_SEED)
        self.tokens = 0
        """Token ids produced so far."""

    def _make(self, index: int, timestamp: float) -> Frame:
        ids: list[int] = self._rng.integers(0, self.config.vocab, size=self.config.batch).tolist()
        self.tokens += len(ids)
        payload: Payload
        if self.config.with_text:
            text = "".join(f"tok{i} " for i in ids)
            payload = TokenMessage(ids=tuple(ids), text=text, timestamp=timestamp)
        else:
            payload = ids
        return Frame(payload=payload, timestamp=timestamp, size_bytes=payload_size(payload),
                     index=index)


# ---------------------------------------------------------------------------- embeddings


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingSourceConfig:
    """Batches of unit-norm embedding vectors at a fixed interval."""

    batch: int = 8
    """Vectors (rows) per message."""
    dim: int = 768
    """Vector dimension (columns)."""
    interval_s: float = 0.5
    """Seconds between messages."""
    dtype: str = "float32"
    """numpy floating dtype of the array ("float16", "float32", "float64")."""
    max_backlog_s: float = 2.0
    """Items later than this are skipped."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.dim < 1:
            raise LocalProtocolError(f"batch and dim must be >= 1, got {self.batch}x{self.dim}")
        _check_positive("interval_s", self.interval_s)
        try:
            is_float = np.dtype(self.dtype).kind == "f"
        except TypeError:
            is_float = False
        if not is_float:
            raise LocalProtocolError(f"dtype must be a numpy float dtype, got {self.dtype!r}")


class EmbeddingSource(Source):
    """``batch x dim`` arrays of L2-normalized standard-normal rows every ``interval_s``."""

    kind = ChannelKind.EMBEDDINGS

    def __init__(
        self,
        config: EmbeddingSourceConfig | None = None,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.config = config or EmbeddingSourceConfig()
        """The frozen parameters."""
        super().__init__(period_s=self.config.interval_s,
                         max_backlog_s=self.config.max_backlog_s)
        self._rng = rng if rng is not None else np.random.default_rng(K_DEFAULT_SEED)
        self._dtype = np.dtype(self.config.dtype)

    def _make(self, index: int, timestamp: float) -> Frame:
        cfg = self.config
        rows = self._rng.standard_normal((cfg.batch, cfg.dim))
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        rows /= np.maximum(norms, np.finfo(np.float64).tiny)
        arr: NDArray[Any] = rows.astype(self._dtype, copy=False)
        return Frame(payload=arr, timestamp=timestamp, size_bytes=int(arr.nbytes), index=index)


# ---------------------------------------------------------------------------- mix


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadMix:
    """Which sources run and with what parameters; None leaves a kind out."""

    audio: AudioSourceConfig | None = field(default_factory=AudioSourceConfig)
    """Audio parameters (default 32 kbit/s in 20 ms frames)."""
    video: VideoSourceConfig | None = field(default_factory=VideoSourceConfig)
    """Video parameters (default 1 Mbit/s at 30 fps, keyframe every 2 s)."""
    tokens: TokenSourceConfig | None = field(default_factory=TokenSourceConfig)
    """Token parameters (default 20 tokens/s, one per message)."""
    embeddings: EmbeddingSourceConfig | None = field(default_factory=EmbeddingSourceConfig)
    """Embedding parameters (default 8 x 768 float32 every 0.5 s)."""


def build_sources(
    mix: WorkloadMix | None = None, rng: np.random.Generator | None = None
) -> dict[str, Source]:
    """One source per enabled kind of ``mix``, keyed by channel kind ("audio", "video",
    "tokens", "embeddings").

    Each source gets its own child generator spawned from ``rng`` (default: seeded with
    K_DEFAULT_SEED) in a fixed order, so leaving a kind out does not change the others.
    """
    mix = mix or WorkloadMix()
    rng = rng if rng is not None else np.random.default_rng(K_DEFAULT_SEED)
    audio_rng, video_rng, tokens_rng, embeddings_rng = rng.spawn(4)
    sources: dict[str, Source] = {}
    if mix.audio is not None:
        sources[ChannelKind.AUDIO.value] = AudioSource(mix.audio, rng=audio_rng)
    if mix.video is not None:
        sources[ChannelKind.VIDEO.value] = VideoSource(mix.video, rng=video_rng)
    if mix.tokens is not None:
        sources[ChannelKind.TOKENS.value] = TokenSource(mix.tokens, rng=tokens_rng)
    if mix.embeddings is not None:
        sources[ChannelKind.EMBEDDINGS.value] = EmbeddingSource(mix.embeddings,
                                                                rng=embeddings_rng)
    return sources
