"""Audio codecs: ``"opus"`` (libopus through PyAV), ``"pcm16"``, ``"g711u"`` and ``"g711a"``.

Items are int16 PCM numpy arrays, shape ``(n,)`` (mono) or ``(n, channels)``; decoders give
back the same shapes. Every packet is a keyframe (audio packets decode on their own).

``"opus"`` (needs PyAV, the ``media`` extra)
    48 kHz, mono or stereo, 20 ms frames (960 samples per channel), libopus with
    ``application`` ``"voip"`` (default), ``"lowdelay"`` or ``"audio"``. FFmpeg's libopus
    wrapper reads the bitrate only when the codec context is opened: setting ``bit_rate`` on
    an open context changes nothing (measured: 12 kbit/s stayed at 10.8 kbit/s after setting
    64 kbit/s). So :meth:`OpusEncoder.set_target_bitrate` re-opens the context at the next
    frame, and the next packet already has the new rate. The fresh encoder starts its 6.5 ms
    look-ahead from silence, so each change costs a 6.5 ms dip in the decoded audio; changes
    smaller than ``min_change_ratio`` of the rate in use are ignored to keep those rare.
    FFmpeg (libavcodec 62) exposes these libopus encoder options: ``application``,
    ``frame_duration``, ``packet_loss``, ``fec``, ``vbr``, ``mapping_family`` and
    ``apply_phase_inv``. There is no DTX option in this build, so ``dtx=True`` is refused
    with a clear error where FFmpeg lacks it. In-band FEC (``fec=True``, with an expected
    ``packet_loss_pct``) makes the encoder embed a low-rate copy of each frame in the next
    packet (measured at 24 kbit/s and 20 % expected loss: libopus moves from hybrid to
    SILK-only packets, the mode that carries the copy), but FFmpeg's libopus *decoder*
    always decodes with FEC off and has no option for it, so only a receiver that calls
    libopus directly can use that copy.

    Loss concealment: ``decode(None)`` feeds the decoder a one-byte Opus packet (only the
    TOC byte of the last good packet, no frame data). libopus treats a zero-length frame as
    lost and runs its own packet-loss concealment for one frame of that configuration
    (20 ms here). An empty packet cannot be used: FFmpeg reads it as end of stream. Before
    the first good packet, concealment is 20 ms of silence.

``"pcm16"``
    Raw little-endian int16 after a 2-byte header (version 1, channel count), so the decoder
    can check the layout. Any sample rate (metadata only). A 20 ms frame at 48 kHz mono is
    1922 bytes, more than the default audio channel's ``max_message_bytes`` (1024): use
    shorter frames, a lower rate, or raise that limit.

``"g711u"`` / ``"g711a"``
    ITU-T G.711 mu-law and A-law companding, one byte per sample, 8 kHz mono only (the
    encoder refuses other ``sample_rate`` values: resample before encoding). Vectorized
    numpy: :func:`ulaw_encode`, :func:`ulaw_decode`, :func:`alaw_encode`, :func:`alaw_decode`.
    Negative samples take the one's complement before companding (so -1 is mu-law's
    "negative zero"), as ITU-T G.191's reference code does; Python's old ``audioop`` rounds
    them the other way and differs on 508 of the 32768 negative mu-law inputs.

Loss concealment of the dependency-free codecs repeats the last decoded frame with a fading
gain (halved at each consecutive loss, silence from the seventh), or silence before the first
frame. Every concealed frame is counted in ``stats()["concealed"]``.
"""

from __future__ import annotations

import fractions
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgewire.codecs import base
from edgewire.codecs.base import (
    CodecError,
    CodecInfo,
    Decoder,
    EncodedPacket,
    Encoder,
    register_codec,
)
from edgewire.errors import LocalProtocolError

if TYPE_CHECKING:
    import av.audio.codeccontext

__all__ = [
    "G711Decoder",
    "G711Encoder",
    "OpusDecoder",
    "OpusEncoder",
    "Pcm16Decoder",
    "Pcm16Encoder",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

Pcm = npt.NDArray[np.int16]

K_OPUS_RATE = 48_000  # Hz
K_OPUS_FRAME = 960  # samples per channel: 20 ms at 48 kHz
K_OPUS_MIN_BPS = 6_000
K_OPUS_MAX_BPS = 128_000
K_OPUS_MAX_PACKET = 4_000  # bytes; libopus never produces more for one 20 ms frame
K_PCM16_VERSION = 1
K_PCM16_MAX_BYTES = 1 << 16
K_G711_RATE = 8_000  # Hz
K_G711_MAX_BYTES = 8_000  # one second
K_FADE_STEPS = 6  # consecutive concealed frames before concealment turns to silence




def _as_pcm(item: Any, channels: int, *, what: str) -> Pcm:
    """``item`` as a C-contiguous int16 array of shape (n, channels); misuse is refused."""
    if not isinstance(item, np.ndarray) or item.dtype != np.int16:
        raise LocalProtocolError(f"{what} input must be an int16 numpy array, got "
                                 f"{getattr(item, 'dtype', type(item).__name__)}")
    if item.ndim == 1 and channels == 1:
        item = item.reshape(-1, 1)
    if item.ndim != 2 or item.shape[1] != channels or item.shape[0] == 0:
        want = "(n,) or (n, 1)" if channels == 1 else f"(n, {channels})"
        raise LocalProtocolError(f"{what} input must have shape {want} with n > 0, "
                                 f"got {item.shape}")
    return np.ascontiguousarray(item)


def _shaped(pcm: Pcm, channels: int) -> Pcm:
    """(n,) for mono, (n, channels) otherwise: the shape encoders take."""
    return pcm.reshape(-1) if channels == 1 else pcm.reshape(-1, channels)


class _FadeConcealer:
    """Faded repeat of the last good frame; silence before the first one."""

    def __init__(self, frame_samples: int, channels: int) -> None:
        self.frame_samples = frame_samples
        self.channels = channels
        self.last: Pcm | None = None
        self.losses = 0
        self.concealed = 0

    def good(self, pcm: Pcm) -> None:
        self.last = pcm
        self.losses = 0

    def conceal(self) -> Pcm:
        self.concealed += 1
        self.losses += 1
        if self.last is None or self.losses > K_FADE_STEPS:
            return np.zeros((self.frame_samples, self.channels), dtype=np.int16)
        n = self.last.shape[0]
        # gain ramps from 2**-(k-1) to 2**-k across the k-th lost frame: no step, no click
        ramp = np.linspace(0.5 ** (self.losses - 1), 0.5 ** self.losses, n, dtype=np.float32)
        return (self.last.astype(np.float32) * ramp[:, None]).astype(np.int16)


# --------------------------------------------------------------------------- Opus


class OpusEncoder(Encoder):
    """libopus through PyAV: 48 kHz, 20 ms frames, bitrate following the target.

    ``vbr`` is ``"off"`` (constant bitrate) by default, because the transport budgets each
    channel: on the speech-like bench signal CBR delivered 12.0/24.0/48.0 kbit/s for those
    targets, while ``"constrained"`` VBR delivered 10.1 kbit/s for 12 (16 % under; SILK
    spends less on easy frames) and ``"on"`` 9.9. ``complexity`` is libopus's 0-10
    speed/quality knob (FFmpeg's ``compression_level``).
    """

    def __init__(self, *, bitrate_bps: float = 24_000, channels: int = 1,
                 application: str = "voip", vbr: str = "off", fec: bool = False,
                 packet_loss_pct: int | None = None, dtx: bool = False, complexity: int = 10,
                 sample_rate: int = K_OPUS_RATE, min_change_ratio: float = 0.05) -> None:
        base.require_media("libopus")
        if channels not in (1, 2):
            raise LocalProtocolError(f"opus channels must be 1 or 2, got {channels!r}")
        if sample_rate != K_OPUS_RATE:
            raise LocalProtocolError(f"opus runs at {K_OPUS_RATE} Hz, got {sample_rate!r}")
        if application not in ("voip", "lowdelay", "audio"):
            raise LocalProtocolError(f"opus application {application!r}: voip, lowdelay, audio")
        if vbr not in ("on", "off", "constrained"):
            raise LocalProtocolError(f"opus vbr {vbr!r}: on, off or constrained")
        if packet_loss_pct is None:
            packet_loss_pct = 10 if fec else 0
        if not 0 <= packet_loss_pct <= 100:
            raise LocalProtocolError(f"packet_loss_pct {packet_loss_pct!r} not in 0..100")
        if fec and packet_loss_pct == 0:
            raise LocalProtocolError("opus in-band FEC needs an expected packet_loss_pct > 0")
        if not 0 <= complexity <= 10:
            raise LocalProtocolError(f"opus complexity {complexity!r} not in 0..10")
        if not 0 <= min_change_ratio < 1:
            raise LocalProtocolError(f"min_change_ratio {min_change_ratio!r} not in [0, 1)")
        self.channels = channels
        self.min_change_ratio = min_change_ratio
        self._options = {"application": application, "frame_duration": "20", "vbr": vbr,
                         "packet_loss": str(packet_loss_pct), "fec": "1" if fec else "0"}
        if dtx:
            if "dtx" not in opus_encoder_options():
                raise LocalProtocolError("this FFmpeg's libopus encoder has no 'dtx' option")
            self._options["dtx"] = "1"
        self._complexity = complexity
        self._target = self._clamp(bitrate_bps)
        self._bitrate = self._target
        self._ctx: av.audio.codeccontext.AudioCodecContext | None = None
        self._pts = 0
        self._last_ts = 0.0
        self._stats = {"frames": 0, "packets": 0, "bytes": 0, "reopens": 0}

    @staticmethod
    def _clamp(bitrate_bps: float) -> int:
        return int(min(max(bitrate_bps, K_OPUS_MIN_BPS), K_OPUS_MAX_BPS))

    def _open(self) -> av.audio.codeccontext.AudioCodecContext:
        import av

        ctx = av.CodecContext.create("libopus", "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = K_OPUS_RATE
        ctx.layout = "mono" if self.channels == 1 else "stereo"
        ctx.format = "s16"
        ctx.bit_rate = self._bitrate
        ctx.time_base = fractions.Fraction(1, K_OPUS_RATE)
        options = dict(self._options)
        options["compression_level"] = str(self._complexity)
        ctx.options = options
        ctx.open()
        return ctx

    @property
    def bitrate_bps(self) -> int:
        """The bitrate the open encoder runs at (a new target applies at the next frame)."""
        return self._bitrate

    def set_target_bitrate(self, bitrate_bps: float) -> None:
        """Clamp into 6-128 kbit/s; the encoder re-opens at the next frame if it moved by
        at least ``min_change_ratio``."""
        super().set_target_bitrate(bitrate_bps)
        self._target = self._clamp(bitrate_bps)

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """Encode one 20 ms frame: int16, shape (960,) or (960, channels)."""
        import av

        pcm = _as_pcm(item, self.channels, what="opus")
        if pcm.shape[0] != K_OPUS_FRAME:
            raise LocalProtocolError(f"opus takes {K_OPUS_FRAME}-sample frames (20 ms at "
                                     f"48 kHz), got {pcm.shape[0]}")
        if abs(self._target - self._bitrate) > self.min_change_ratio * self._bitrate:
            self._bitrate = self._target
            if self._ctx is not None:
                self._ctx = None  # dropped, not flushed: its tail would be an extra packet
                self._stats["reopens"] += 1
        if self._ctx is None:
            self._ctx = self._open()
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16",
                                           layout=self._ctx.layout.name)
        frame.sample_rate = K_OPUS_RATE
        frame.pts = self._pts
        self._pts += K_OPUS_FRAME
        self._last_ts = timestamp
        self._stats["frames"] += 1
        return [self._packet(bytes(p), timestamp) for p in self._ctx.encode(frame)]

    def _packet(self, data: bytes, timestamp: float) -> EncodedPacket:
        self._stats["packets"] += 1
        self._stats["bytes"] += len(data)
        return EncodedPacket(data=data, timestamp=timestamp, keyframe=True,
                             meta={"samples": K_OPUS_FRAME, "bitrate_bps": self._bitrate})

    def flush(self) -> list[EncodedPacket]:
        """The encoder's look-ahead tail (one packet); the next encode starts afresh."""
        if self._ctx is None:
            return []
        ctx, self._ctx = self._ctx, None
        ts = self._last_ts + K_OPUS_FRAME / K_OPUS_RATE
        return [self._packet(bytes(p), ts) for p in ctx.encode(None)]

    def stats(self) -> dict[str, Any]:
        """frames, packets, bytes, reopens (rate changes applied) and the current rate."""
        return {**self._stats, "bitrate_bps": self._bitrate, "target_bps": self._target}


def opus_encoder_options() -> list[str]:
    """Names of the private options FFmpeg's libopus encoder exposes here."""
    import av

    ctx = av.CodecContext.create("libopus", "w")
    return [o.name for o in ctx.supported_options.private]


class OpusDecoder(Decoder):
    """libopus decoder through PyAV: int16 PCM, 20 ms per packet, libopus concealment."""

    def __init__(self, *, channels: int = 1, sample_rate: int = K_OPUS_RATE,
                 max_packet_bytes: int = K_OPUS_MAX_PACKET) -> None:
        base.require_media("opus")
        if channels not in (1, 2):
            raise LocalProtocolError(f"opus channels must be 1 or 2, got {channels!r}")
        if sample_rate != K_OPUS_RATE:
            raise LocalProtocolError(f"opus runs at {K_OPUS_RATE} Hz, got {sample_rate!r}")
        self.channels = channels
        self.max_packet_bytes = max_packet_bytes
        self._ctx = self._open()
        self._toc: int | None = None
        self._stats = {"packets": 0, "frames": 0, "samples": 0, "errors": 0, "concealed": 0}

    def _open(self) -> av.audio.codeccontext.AudioCodecContext:
        import av

        name = "libopus" if "libopus" in av.codecs_available else "opus"
        ctx = av.CodecContext.create(name, "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = K_OPUS_RATE
        ctx.layout = "mono" if self.channels == 1 else "stereo"
        ctx.open()
        return ctx

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """PCM frames of one packet; ``None`` (lost) yields one concealed frame."""
        if data is None:
            self._stats["concealed"] += 1
            if self._toc is None:
                return [_shaped(np.zeros((K_OPUS_FRAME, self.channels), np.int16),
                                self.channels)]
            # TOC only (frame count code 0, no frame data): libopus conceals one frame
            return self._run(bytes([self._toc & 0xFC]))
        if not 0 < len(data) <= self.max_packet_bytes:
            self._stats["errors"] += 1
            raise CodecError(f"opus packet of {len(data)} bytes (1..{self.max_packet_bytes})")
        self._stats["packets"] += 1
        out = self._run(bytes(data))
        self._toc = data[0]
        return out

    def _run(self, data: bytes) -> list[Any]:
        import av

        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.EOFError:  # never expected (empty packets are refused), but recover
            self._ctx = self._open()
            self._stats["errors"] += 1
            raise CodecError("opus decoder reached end of stream; reopened") from None
        except av.FFmpegError as exc:
            self._stats["errors"] += 1
            raise CodecError(f"opus packet could not be decoded: {exc}") from None
        out: list[Any] = []
        for frame in frames:
            pcm = _frame_pcm(frame.to_ndarray(), frame.format.name, self.channels)
            self._stats["frames"] += 1
            self._stats["samples"] += pcm.shape[0]
            out.append(_shaped(pcm, self.channels))
        return out

    def stats(self) -> dict[str, Any]:
        """packets, frames, samples, errors and concealed (lost packets)."""
        return dict(self._stats)


def _frame_pcm(arr: npt.NDArray[Any], fmt: str, channels: int) -> Pcm:
    """A decoded PyAV frame's samples as int16 (n, channels)."""
    if fmt.endswith("p"):  # planar: one row per channel
        arr = arr.T
    arr = arr.reshape(-1, channels)
    if arr.dtype.kind == "f":
        arr = np.clip(np.rint(arr * 32767.0), -32768, 32767)
    return np.ascontiguousarray(arr, dtype=np.int16)


# --------------------------------------------------------------------------- PCM16


class Pcm16Encoder(Encoder):
    """Raw little-endian int16 after a 2-byte header (version, channel count)."""

    def __init__(self, *, channels: int = 1, sample_rate: int = K_OPUS_RATE) -> None:
        if not 1 <= channels <= 8:
            raise LocalProtocolError(f"pcm16 channels must be 1..8, got {channels!r}")
        self.channels = channels
        self.sample_rate = sample_rate
        self._stats = {"frames": 0, "packets": 0, "bytes": 0}

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """One packet per frame of any length (at most 64 KiB of samples)."""
        pcm = _as_pcm(item, self.channels, what="pcm16")
        payload = pcm.astype("<i2", copy=False).tobytes()
        if len(payload) > K_PCM16_MAX_BYTES:
            raise LocalProtocolError(f"pcm16 frame of {len(payload)} bytes, at most "
                                     f"{K_PCM16_MAX_BYTES}")
        data = bytes((K_PCM16_VERSION, self.channels)) + payload
        self._stats["frames"] += 1
        self._stats["packets"] += 1
        self._stats["bytes"] += len(data)
        return [EncodedPacket(data=data, timestamp=timestamp, keyframe=True,
                              meta={"samples": pcm.shape[0]})]

    def stats(self) -> dict[str, Any]:
        """frames, packets, bytes."""
        return dict(self._stats)


class Pcm16Decoder(Decoder):
    """Checks the header and returns int16 frames; losses get a faded repeat."""

    def __init__(self, *, channels: int = 1, sample_rate: int = K_OPUS_RATE,
                 frame_samples: int = K_OPUS_FRAME) -> None:
        if not 1 <= channels <= 8:
            raise LocalProtocolError(f"pcm16 channels must be 1..8, got {channels!r}")
        self.channels = channels
        self.sample_rate = sample_rate
        self._plc = _FadeConcealer(frame_samples, channels)
        self._stats = {"packets": 0, "frames": 0, "errors": 0}

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """One frame per packet; ``None`` yields one concealed frame."""
        if data is None:
            return [_shaped(self._plc.conceal(), self.channels)]
        try:
            pcm = self._parse(data)
        except CodecError:
            self._stats["errors"] += 1
            raise
        self._stats["packets"] += 1
        self._stats["frames"] += 1
        self._plc.good(pcm)
        return [_shaped(pcm, self.channels)]

    def _parse(self, data: bytes) -> Pcm:
        if len(data) < 2:
            raise CodecError(f"pcm16 packet of {len(data)} bytes has no header")
        if data[0] != K_PCM16_VERSION:
            raise CodecError(f"pcm16 version {data[0]}, expected {K_PCM16_VERSION}")
        if data[1] != self.channels:
            raise CodecError(f"pcm16 packet has {data[1]} channels, expected {self.channels}")
        size = len(data) - 2
        if size == 0 or size % (2 * self.channels) or size > K_PCM16_MAX_BYTES:
            raise CodecError(f"pcm16 payload of {size} bytes is not whole non-empty frames "
                             f"of {self.channels} int16 samples (at most {K_PCM16_MAX_BYTES})")
        pcm = np.frombuffer(data, dtype="<i2", offset=2).astype(np.int16)
        return pcm.reshape(-1, self.channels)

    def stats(self) -> dict[str, Any]:
        """packets, frames, errors, concealed."""
        return {**self._stats, "concealed": self._plc.concealed}


# --------------------------------------------------------------------------- G.711

# mu-law on 16-bit samples: bias added to the magnitude, largest magnitude before the bias
K_ULAW_BIAS = 0x84
K_ULAW_CLIP = 32_635


def ulaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """G.711 mu-law codes of int16 samples (any shape)."""
    x = np.asarray(pcm, dtype=np.int32)
    sign = (x < 0).astype(np.int32)
    # one's complement for negatives (-1 is "negative zero"), as ITU-T G.191's reference does
    mag = np.minimum(np.where(x < 0, ~x, x), K_ULAW_CLIP) + K_ULAW_BIAS
    # the segment is the position of the highest set bit above bit 7 (mag >= 132 > 2**7)
    exponent = np.frexp(mag.astype(np.float64))[1] - 8
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = (sign << 7) | (exponent << 4) | mantissa
    out: npt.NDArray[np.uint8] = (~code & 0xFF).astype(np.uint8)
    return out


def ulaw_decode(codes: npt.ArrayLike) -> Pcm:
    """int16 samples of G.711 mu-law codes (any shape)."""
    u = ~np.asarray(codes, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + K_ULAW_BIAS) << exponent) - K_ULAW_BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def alaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """G.711 A-law codes of int16 samples (any shape)."""
    x = np.asarray(pcm, dtype=np.int32) >> 3  # A-law works on 13-bit samples
    positive = x >= 0
    mag = np.where(positive, x, -x - 1)  # one's complement for negatives, as G.711 does
    # segment 0 and 1 share a step of 2; segment s >= 1 covers [2**(s+4), 2**(s+5))
    # (13-bit magnitudes stop at 4095, segment 7, so no clipping is needed)
    seg = np.maximum(np.frexp(np.maximum(mag, 1).astype(np.float64))[1] - 5, 0)
    code = (seg << 4) | ((mag >> np.where(seg < 2, 1, seg)) & 0x0F)
    mask = np.where(positive, 0xD5, 0x55)
    out: npt.NDArray[np.uint8] = (code ^ mask).astype(np.uint8)
    return out


def alaw_decode(codes: npt.ArrayLike) -> Pcm:
    """int16 samples of G.711 A-law codes (any shape)."""
    a = np.asarray(codes, dtype=np.int32) ^ 0x55
    seg = (a >> 4) & 0x07
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, ((t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


class G711Encoder(Encoder):
    """G.711 (``law`` ``"u"`` or ``"a"``), 8 kHz mono int16 in, one byte per sample out."""

    def __init__(self, *, law: str = "u", sample_rate: int = K_G711_RATE,
                 channels: int = 1) -> None:
        if law not in ("u", "a"):
            raise LocalProtocolError(f"G.711 law must be 'u' or 'a', got {law!r}")
        if sample_rate != K_G711_RATE:
            raise LocalProtocolError(f"G.711 takes {K_G711_RATE} Hz input (resample first), "
                                     f"got {sample_rate!r}")
        if channels != 1:
            raise LocalProtocolError("G.711 is mono")
        self.law = law
        self._stats = {"frames": 0, "packets": 0, "bytes": 0}

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """One packet per frame (at most one second of samples)."""
        pcm = _as_pcm(item, 1, what="G.711")
        if pcm.shape[0] > K_G711_MAX_BYTES:
            raise LocalProtocolError(f"G.711 frame of {pcm.shape[0]} samples, at most "
                                     f"{K_G711_MAX_BYTES}")
        codes = ulaw_encode(pcm) if self.law == "u" else alaw_encode(pcm)
        data = codes.tobytes()
        self._stats["frames"] += 1
        self._stats["packets"] += 1
        self._stats["bytes"] += len(data)
        return [EncodedPacket(data=data, timestamp=timestamp, keyframe=True,
                              meta={"samples": len(data)})]

    def stats(self) -> dict[str, Any]:
        """frames, packets, bytes."""
        return dict(self._stats)


class G711Decoder(Decoder):
    """G.711 bytes to int16 (n,); losses get a faded repeat (``frame_samples`` before any)."""

    def __init__(self, *, law: str = "u", sample_rate: int = K_G711_RATE,
                 frame_samples: int = 160) -> None:
        if law not in ("u", "a"):
            raise LocalProtocolError(f"G.711 law must be 'u' or 'a', got {law!r}")
        if sample_rate != K_G711_RATE:
            raise LocalProtocolError(f"G.711 runs at {K_G711_RATE} Hz, got {sample_rate!r}")
        self.law = law
        self._plc = _FadeConcealer(frame_samples, 1)
        self._stats = {"packets": 0, "frames": 0, "errors": 0}

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """One frame per packet; ``None`` yields one concealed frame."""
        if data is None:
            return [self._plc.conceal().reshape(-1)]
        if not 0 < len(data) <= K_G711_MAX_BYTES:
            self._stats["errors"] += 1
            raise CodecError(f"G.711 packet of {len(data)} bytes (1..{K_G711_MAX_BYTES})")
        codes = np.frombuffer(data, dtype=np.uint8)
        pcm = ulaw_decode(codes) if self.law == "u" else alaw_decode(codes)
        self._stats["packets"] += 1
        self._stats["frames"] += 1
        self._plc.good(pcm.reshape(-1, 1))
        return [pcm]

    def stats(self) -> dict[str, Any]:
        """packets, frames, errors, concealed."""
        return {**self._stats, "concealed": self._plc.concealed}


def _opus_available() -> bool:
    # looked up in base at call time, so a test can monkeypatch base.media_available
    return base.media_available() and base.ffmpeg_has("libopus")


register_codec(CodecInfo(
    "opus", "audio", OpusEncoder, OpusDecoder, requires="media",
    available=_opus_available,
    description="Opus via PyAV/libopus: 48 kHz, 20 ms, 6-128 kbit/s, libopus concealment"))
register_codec(CodecInfo(
    "pcm16", "audio", Pcm16Encoder, Pcm16Decoder,
    description="raw little-endian int16 with a 2-byte header; faded-repeat concealment"))
register_codec(CodecInfo(
    "g711u", "audio", lambda **o: G711Encoder(law="u", **o),
    lambda **o: G711Decoder(law="u", **o),
    description="ITU-T G.711 mu-law, 8 kHz mono, 64 kbit/s"))
register_codec(CodecInfo(
    "g711a", "audio", lambda **o: G711Encoder(law="a", **o),
    lambda **o: G711Decoder(law="a", **o),
    description="ITU-T G.711 A-law, 8 kHz mono, 64 kbit/s"))
