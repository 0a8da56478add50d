"""Video codecs through PyAV (FFmpeg): ``"h264"`` (libx264) and ``"vp8"`` (libvpx).

Both need PyAV, the ``media`` extra; without it they stay registered with ``available()``
False and creating one raises :class:`~edgewire.codecs.base.CodecUnavailableError`.

Encoders take numpy uint8 ``(H, W, 3)`` arrays (``input_format`` ``"rgb24"`` or ``"bgr24"``)
or ``av.VideoFrame`` objects, scale them to the configured resolution (PyAV's ``reformat``,
yuv420p) and give one :class:`~edgewire.codecs.base.EncodedPacket` per encoded frame, with
``keyframe`` and ``meta`` (``width``, ``height``, ``pts``, ``bitrate_bps``). A frame passed
in already at the configured size and yuv420p is handed to the codec as it is, so its ``pts``
and ``pict_type`` are overwritten.

Real-time settings: libx264 ``preset`` ultrafast (or veryfast), ``tune`` zerolatency, no
B-frames, IDR when a keyframe is forced, VBV ``maxrate`` = target and ``bufsize`` =
``vbv_buffer_s`` x target; libvpx ``deadline`` realtime, ``cpu-used`` 8, ``lag-in-frames``
0, ``error-resilient``, CBR (``minrate`` = ``maxrate`` = target). One thread by default.

Why a bitrate change re-opens the encoder: with PyAV 18 / libavcodec 62, setting
``bit_rate`` on an open context changed nothing for either codec (measured: 300 kbit/s stayed
at 300 after setting 1.5 Mbit/s; for libx264 also with VBV ``maxrate``/``bufsize`` set at
open, and in CBR form). FFmpeg's libx264 wrapper hands a new ``bit_rate`` to
``x264_encoder_reconfig``, but x264 did not follow it; a new VBV rate cannot be tried because
PyAV exposes ``rc_max_rate`` read-only; libvpx's wrapper reads the rate only at open. So
:meth:`set_target_bitrate` re-opens the encoder at the next frame, which starts with a
keyframe. To keep keyframes rare, a target that differs from the rate in use by less than
``min_change_ratio`` is not applied, and two re-opens are at least ``min_change_interval_s``
of stream time apart (a change waits at most that long). :meth:`set_resolution` and
:meth:`set_frame_rate` re-open too (the ladder: the caller picks a rung, the encoder
follows). Input faster than the configured frame rate is thinned by its timestamps.

Frames from FFmpeg's lavfi test source carry ``pict_type`` I, which makes libx264 and libvpx
encode every frame as a keyframe (measured: VP8 delivered twice its target); the encoder
resets ``pict_type`` on every frame and sets it to I only when a keyframe is due.

Decoders give a list of numpy ``(H, W, 3)`` uint8 frames (``output`` ``"rgb24"`` or
``"bgr24"``) or ``av.VideoFrame`` objects (``output="frame"``). A decoder starts waiting for
a keyframe; a lost packet (``decode(None)``) or a decode error sets ``needs_keyframe`` (the
receiver should send a PLI so the sender calls :meth:`request_keyframe`), and every non-key
packet until the next keyframe is dropped and counted. Keyframes are recognised from the
bitstream (H.264: an IDR NAL unit in the Annex B stream; VP8: the frame tag's key bit and
start code), and VP8 keyframe dimensions are checked against ``max_width`` and
``max_height`` before FFmpeg sees them; FFmpeg's ``max_pixels`` bounds H.264 allocations.

Sources: :func:`synthetic_frames` (lavfi ``testsrc2``; a numpy pattern where lavfi is
missing), :func:`file_frames` (decode a file) and :func:`array_frames` (check and pass
arrays through).
"""

from __future__ import annotations

import fractions
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
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
    import av.video.codeccontext
    import av.video.frame

__all__ = [
    "H264Decoder",
    "H264Encoder",
    "VideoDecoder",
    "VideoEncoder",
    "Vp8Decoder",
    "Vp8Encoder",
    "array_frames",
    "file_frames",
    "h264_is_keyframe",
    "synthetic_frames",
    "vp8_keyframe_size",
]

K_MIN_BPS = 50_000
K_MAX_BPS = 50_000_000
K_MAX_PACKET = 1 << 23  # bytes: far above any real frame, bounds what reaches FFmpeg
K_MAX_TIMESTAMPS = 64  # pending pts -> capture time entries (codecs here add no delay)
K_SKIP_TOLERANCE = 0.25  # of a frame interval: earlier frames are thinned out
_OUTPUTS = ("rgb24", "bgr24", "frame")




def _check_size(width: int, height: int) -> None:
    if not (isinstance(width, int) and isinstance(height, int)
            and 16 <= width <= 7680 and 16 <= height <= 4320
            and width % 2 == 0 and height % 2 == 0):
        raise LocalProtocolError(f"video size {width}x{height}: even, 16..7680 x 16..4320")


def _fraction_fps(fps: float) -> fractions.Fraction:
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 1 <= fps <= 240):
        raise LocalProtocolError(f"frame rate {fps!r} not in 1..240")
    return fractions.Fraction(fps).limit_denominator(1001)


class VideoEncoder(Encoder):
    """Shared machinery of the PyAV video encoders (see the module docstring)."""

    ffmpeg_name = ""

    def __init__(self, *, width: int = 640, height: int = 360, fps: float = 30.0,
                 bitrate_bps: float = 800_000, input_format: str = "rgb24",
                 keyframe_interval_s: float = 10.0, threads: int = 1,
                 vbv_buffer_s: float = 1.0, min_change_ratio: float = 0.1,
                 min_change_interval_s: float = 0.5) -> None:
        base.require_media(self.ffmpeg_name)
        _check_size(width, height)
        if input_format not in ("rgb24", "bgr24"):
            raise LocalProtocolError(f"input_format {input_format!r}: rgb24 or bgr24")
        if not keyframe_interval_s > 0:
            raise LocalProtocolError("keyframe_interval_s must be positive")
        if not 0 <= threads <= 64:
            raise LocalProtocolError(f"threads {threads!r} not in 0..64 (0: FFmpeg picks)")
        if not 0.1 <= vbv_buffer_s <= 10:
            raise LocalProtocolError(f"vbv_buffer_s {vbv_buffer_s!r} not in 0.1..10")
        if not (0 <= min_change_ratio < 1 and min_change_interval_s >= 0):
            raise LocalProtocolError("min_change_ratio in [0, 1), min_change_interval_s >= 0")
        self.input_format = input_format
        self.keyframe_interval_s = keyframe_interval_s
        self.threads = threads
        self.vbv_buffer_s = vbv_buffer_s
        self.min_change_ratio = min_change_ratio
        self.min_change_interval_s = min_change_interval_s
        self._size = (width, height)
        self._fps = _fraction_fps(fps)
        self._target = self._clamp(bitrate_bps)
        self._bitrate = self._target
        self._open_size = self._size
        self._open_fps = self._fps
        self._ctx: av.video.codeccontext.VideoCodecContext | None = None
        self._opened_at = -math.inf
        self._force_key = False
        self._next_due: float | None = None
        self._pts = 0
        self._times: OrderedDict[int, float] = OrderedDict()
        self._stats = {"frames_in": 0, "frames_skipped": 0, "frames_encoded": 0,
                       "packets": 0, "bytes": 0, "keyframes": 0, "reopens": 0,
                       "keyframes_requested": 0}

    # ------------------------------------------------------------------ control

    @staticmethod
    def _clamp(bitrate_bps: float) -> int:
        return int(min(max(bitrate_bps, K_MIN_BPS), K_MAX_BPS))

    @property
    def bitrate_bps(self) -> int:
        """The bitrate the open encoder runs at."""
        return self._bitrate

    @property
    def size(self) -> tuple[int, int]:
        """The configured (width, height); applies from the next encoded frame."""
        return self._size

    @property
    def fps(self) -> float:
        """The configured frame rate."""
        return float(self._fps)

    def set_target_bitrate(self, bitrate_bps: float) -> None:
        """Follow a new target (clamped to 50 kbit/s..50 Mbit/s); see the module docstring
        for when it is applied."""
        super().set_target_bitrate(bitrate_bps)
        self._target = self._clamp(bitrate_bps)

    def set_resolution(self, width: int, height: int) -> None:
        """Encode at ``width`` x ``height`` from the next frame (re-opens: a keyframe)."""
        _check_size(width, height)
        self._size = (width, height)

    def set_frame_rate(self, fps: float) -> None:
        """Encode at ``fps`` from the next frame (re-opens: a keyframe); faster input is
        thinned by timestamp."""
        self._fps = _fraction_fps(fps)

    def request_keyframe(self) -> None:
        """The next encoded frame is a keyframe (an IDR for H.264)."""
        self._force_key = True
        self._stats["keyframes_requested"] += 1

    # ------------------------------------------------------------------ encoding

    def _options(self, bitrate: int) -> dict[str, str]:
        raise NotImplementedError

    def _open(self, timestamp: float) -> av.video.codeccontext.VideoCodecContext:
        import av

        ctx = av.CodecContext.create(self.ffmpeg_name, "w")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width, ctx.height = self._size
        ctx.pix_fmt = "yuv420p"
        ctx.framerate = self._fps
        ctx.time_base = 1 / self._fps
        ctx.bit_rate = self._target
        ctx.thread_count = self.threads
        ctx.gop_size = max(1, round(float(self._fps) * self.keyframe_interval_s))
        ctx.max_b_frames = 0
        ctx.options = self._options(self._target)
        ctx.open()
        self._bitrate = self._target
        self._open_size = self._size
        self._open_fps = self._fps
        self._opened_at = timestamp
        return ctx

    def _reopen_due(self, timestamp: float) -> bool:
        if self._ctx is None:
            return True
        if self._size != self._open_size or self._fps != self._open_fps:
            return True
        moved = abs(self._target - self._bitrate) > self.min_change_ratio * self._bitrate
        return moved and timestamp - self._opened_at >= self.min_change_interval_s

    def _to_frame(self, item: Any) -> av.video.frame.VideoFrame:
        import av

        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
                raise LocalProtocolError(f"video input must be uint8 (H, W, 3), got "
                                         f"{item.dtype} {item.shape}")
            if item.shape[0] < 2 or item.shape[1] < 2:
                raise LocalProtocolError(f"video frame {item.shape[1]}x{item.shape[0]} "
                                         "is too small")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(item),
                                               format=self.input_format)
        elif isinstance(item, av.VideoFrame):
            frame = item
        else:
            raise LocalProtocolError(f"video input must be a numpy array or av.VideoFrame, "
                                     f"got {type(item).__name__}")
        width, height = self._size
        if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        return frame

    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """Encode one frame captured at ``timestamp`` (seconds); a frame that comes sooner
        than the configured frame rate allows is skipped (no packet, counted)."""
        import av

        if not math.isfinite(timestamp):
            raise LocalProtocolError(f"timestamp must be finite, got {timestamp!r}")
        self._stats["frames_in"] += 1
        interval = 1.0 / float(self._fps)
        if (self._next_due is not None
                and timestamp < self._next_due - K_SKIP_TOLERANCE * interval):
            self._stats["frames_skipped"] += 1
            return []
        frame = self._to_frame(item)
        due = self._next_due
        self._next_due = (timestamp if due is None or timestamp - due > interval
                          else due) + interval
        if self._reopen_due(timestamp):
            if self._ctx is not None:
                self._stats["reopens"] += 1
            self._ctx = self._open(timestamp)
            self._times.clear()
            self._force_key = False  # a fresh encoder starts with a keyframe anyway
        assert self._ctx is not None
        frame.pts = self._pts
        frame.time_base = self._ctx.time_base
        frame.pict_type = (av.video.frame.PictureType.I if self._force_key
                           else av.video.frame.PictureType.NONE)
        self._force_key = False
        self._times[self._pts] = timestamp
        while len(self._times) > K_MAX_TIMESTAMPS:
            self._times.popitem(last=False)
        self._pts += 1
        self._stats["frames_encoded"] += 1
        return self._packets(self._ctx.encode(frame), timestamp)

    def _packets(self, packets: Iterable[Any], default_ts: float) -> list[EncodedPacket]:
        out = []
        width, height = self._open_size
        for p in packets:
            data = bytes(p)
            pts = p.pts
            ts = self._times.pop(pts, default_ts) if pts is not None else default_ts
            key = bool(p.is_keyframe)
            self._stats["packets"] += 1
            self._stats["bytes"] += len(data)
            self._stats["keyframes"] += key
            out.append(EncodedPacket(data=data, timestamp=ts, keyframe=key, meta={
                "width": width, "height": height, "pts": pts, "bitrate_bps": self._bitrate}))
        return out

    def flush(self) -> list[EncodedPacket]:
        """Packets still inside the codec; the next encode starts a new stream (keyframe)."""
        if self._ctx is None:
            return []
        ctx, self._ctx = self._ctx, None
        last = next(reversed(self._times.values()), 0.0) if self._times else 0.0
        return self._packets(ctx.encode(None), last)

    def stats(self) -> dict[str, Any]:
        """Frame, packet, byte, keyframe and re-open counters and the settings in use."""
        width, height = self._open_size
        return {**self._stats, "bitrate_bps": self._bitrate, "target_bps": self._target,
                "width": width, "height": height, "fps": float(self._open_fps)}


class H264Encoder(VideoEncoder):
    """libx264, ``preset`` ultrafast (default) or veryfast, tune zerolatency, no B-frames."""

    ffmpeg_name = "libx264"

    def __init__(self, *, preset: str = "ultrafast", **options: Any) -> None:
        if preset not in ("ultrafast", "superfast", "veryfast"):
            raise LocalProtocolError(f"x264 preset {preset!r}: ultrafast, superfast, veryfast")
        self.preset = preset
        super().__init__(**options)

    def _options(self, bitrate: int) -> dict[str, str]:
        return {"preset": self.preset, "tune": "zerolatency", "forced-idr": "1",
                "maxrate": str(bitrate), "bufsize": str(int(bitrate * self.vbv_buffer_s))}


class Vp8Encoder(VideoEncoder):
    """libvpx VP8, realtime deadline, ``cpu_used`` 8 (4..16), no look-ahead, CBR."""

    ffmpeg_name = "libvpx"

    def __init__(self, *, cpu_used: int = 8, **options: Any) -> None:
        if not 4 <= cpu_used <= 16:
            raise LocalProtocolError(f"VP8 cpu_used {cpu_used!r} not in 4..16")
        self.cpu_used = cpu_used
        super().__init__(**options)

    def _options(self, bitrate: int) -> dict[str, str]:
        return {"deadline": "realtime", "cpu-used": str(self.cpu_used), "lag-in-frames": "0",
                "error-resilient": "default", "auto-alt-ref": "0",
                "minrate": str(bitrate), "maxrate": str(bitrate),
                "bufsize": str(int(bitrate * self.vbv_buffer_s))}


# --------------------------------------------------------------------------- decoding


def h264_is_keyframe(data: bytes) -> bool:
    """True when an Annex B H.264 access unit holds an IDR slice (NAL unit type 5)."""
    pos = data.find(b"\x00\x00\x01")
    while 0 <= pos < len(data) - 3:
        header = data[pos + 3]
        if header & 0x80 == 0 and header & 0x1F == 5:
            return True
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 keyframe, None for an interframe; CodecError when the
    keyframe header is broken."""
    if not data:
        raise CodecError("empty VP8 packet")
    if data[0] & 0x01:
        return None
    if len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
        raise CodecError("VP8 keyframe without its start code")
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    if width == 0 or height == 0:
        raise CodecError(f"VP8 keyframe declares {width}x{height}")
    return width, height


class VideoDecoder(Decoder):
    """Shared machinery of the PyAV video decoders (see the module docstring)."""

    ffmpeg_name = ""

    def __init__(self, *, output: str = "rgb24", threads: int = 1, max_width: int = 3840,
                 max_height: int = 2160, max_packet_bytes: int = K_MAX_PACKET) -> None:
        base.require_media(self.ffmpeg_name)
        if output not in _OUTPUTS:
            raise LocalProtocolError(f"output {output!r}: one of {', '.join(_OUTPUTS)}")
        if not (16 <= max_width <= 16384 and 16 <= max_height <= 16384):
            raise LocalProtocolError("max_width and max_height must be in 16..16384")
        self.output = output
        self.threads = threads
        self.max_width = max_width
        self.max_height = max_height
        self.max_packet_bytes = max_packet_bytes
        self._ctx = self._open()
        self._needs_key = True
        self._started = False
        self._stats = {"packets": 0, "frames": 0, "errors": 0, "lost": 0, "dropped": 0,
                       "keyframe_requests": 0, "recoveries": 0}

    def _open(self) -> av.video.codeccontext.VideoCodecContext:
        import av

        ctx = av.CodecContext.create(self.ffmpeg_name, "r")
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.thread_count = self.threads
        ctx.options = {"max_pixels": str(self.max_width * self.max_height)}
        ctx.open()
        return ctx

    @property
    def needs_keyframe(self) -> bool:
        """True until the next keyframe after a loss or an error (a PLI is due)."""
        return self._needs_key

    def _keyframe(self, data: bytes) -> bool:
        raise NotImplementedError

    def _lose_sync(self) -> None:
        if not self._needs_key:
            self._needs_key = True
            self._stats["keyframe_requests"] += 1
        self._ctx.flush_buffers()  # no frame may reference what came before the loss

    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """Frames of one packet (normally one); ``None`` reports a lost packet."""
        import av

        if data is None:
            self._stats["lost"] += 1
            self._lose_sync()
            return []
        try:
            if not 0 < len(data) <= self.max_packet_bytes:
                raise CodecError(f"video packet of {len(data)} bytes "
                                 f"(1..{self.max_packet_bytes})")
            key = self._keyframe(data)
        except CodecError:
            self._stats["errors"] += 1
            self._lose_sync()
            raise
        if self._needs_key and not key:
            self._stats["dropped"] += 1
            return []
        self._stats["packets"] += 1
        try:
            frames = self._ctx.decode(av.Packet(bytes(data)))
        except av.FFmpegError as exc:
            self._stats["errors"] += 1
            self._lose_sync()
            raise CodecError(f"{self.ffmpeg_name} packet could not be decoded: {exc}") from None
        if key and self._needs_key:
            self._needs_key = False
            self._stats["recoveries"] += self._started
            self._started = True
        self._stats["frames"] += len(frames)
        if self.output == "frame":
            return list(frames)
        return [f.to_ndarray(format=self.output) for f in frames]

    def stats(self) -> dict[str, Any]:
        """packets decoded, frames out, errors, lost, dropped (waiting for a keyframe),
        keyframe_requests (times a keyframe became due), recoveries."""
        return {**self._stats, "needs_keyframe": self._needs_key}


class H264Decoder(VideoDecoder):
    """FFmpeg's H.264 decoder; keyframes are access units with an IDR slice."""

    ffmpeg_name = "h264"

    def _keyframe(self, data: bytes) -> bool:
        return h264_is_keyframe(data)


class Vp8Decoder(VideoDecoder):
    """FFmpeg's VP8 decoder; keyframe dimensions are checked before decoding."""

    ffmpeg_name = "vp8"

    def _keyframe(self, data: bytes) -> bool:
        size = vp8_keyframe_size(data)
        if size is None:
            return False
        if size[0] > self.max_width or size[1] > self.max_height:
            raise CodecError(f"VP8 keyframe of {size[0]}x{size[1]} exceeds "
                             f"{self.max_width}x{self.max_height}")
        return True


# --------------------------------------------------------------------------- sources


def _convert(frame: av.video.frame.VideoFrame, output: str) -> Any:
    if output == "frame":
        return frame
    return frame.to_ndarray(format=output)


def synthetic_frames(*, size: tuple[int, int] = (640, 360), fps: float = 30.0,
                   count: int | None = None, output: str = "rgb24",
                   pattern: str = "testsrc2") -> Iterator[Any]:
    """Frames of FFmpeg's synthetic ``lavfi`` source (``testsrc2``: moving colour pattern
    and counter), ``count`` of them or endless.

    ``output`` ``"rgb24"``/``"bgr24"`` gives numpy arrays, ``"frame"`` gives yuv420p
    ``av.VideoFrame`` objects. Where PyAV lacks the lavfi input format, a numpy pattern
    (moving gradients and a moving box) stands in, so benches and tests still run.
    """
    import av

    _check_size(*size)
    if output not in _OUTPUTS:
        raise LocalProtocolError(f"output {output!r}: one of {', '.join(_OUTPUTS)}")
    rate = _fraction_fps(fps)
    if "lavfi" not in av.formats_available:
        yield from _numpy_pattern(size, count, output)
        return
    spec = f"{pattern}=size={size[0]}x{size[1]}:rate={rate.numerator}/{rate.denominator}"
    container = av.open(spec, format="lavfi")
    try:
        for n, frame in enumerate(container.decode(video=0)):
            if count is not None and n >= count:
                break
            frame.pict_type = av.video.frame.PictureType.NONE  # lavfi marks every frame I
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            yield _convert(frame, output)
    finally:
        container.close()


def _numpy_pattern(size: tuple[int, int], count: int | None, output: str) -> Iterator[Any]:
    import av

    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.int32)
    n = 0
    while count is None or n < count:
        rgb = np.empty((height, width, 3), np.uint8)
        rgb[..., 0] = (xx + 3 * n) & 0xFF
        rgb[..., 1] = (yy + 2 * n) & 0xFF
        rgb[..., 2] = ((xx + yy) // 2 + n) & 0xFF
        bx, by = (7 * n) % max(1, width - width // 8), (5 * n) % max(1, height - height // 8)
        rgb[by:by + height // 8, bx:bx + width // 8] = 255
        if output == "frame":
            yield av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        else:
            yield rgb if output == "rgb24" else np.ascontiguousarray(rgb[..., ::-1])
        n += 1


def file_frames(path: str, *, output: str = "rgb24", count: int | None = None
                ) -> Iterator[Any]:
    """Decoded frames of the first video stream of a media file (anything FFmpeg reads)."""
    import av

    if output not in _OUTPUTS:
        raise LocalProtocolError(f"output {output!r}: one of {', '.join(_OUTPUTS)}")
    container = av.open(path)
    try:
        if not container.streams.video:
            raise LocalProtocolError(f"{path!r} has no video stream")
        for n, frame in enumerate(container.decode(video=0)):
            if count is not None and n >= count:
                break
            frame.pict_type = av.video.frame.PictureType.NONE
            yield _convert(frame, output)
    finally:
        container.close()


def array_frames(frames: Iterable[npt.NDArray[np.uint8]]) -> Iterator[npt.NDArray[np.uint8]]:
    """Pass numpy frames through, refusing anything but uint8 (H, W, 3)."""
    for frame in frames:
        if (not isinstance(frame, np.ndarray) or frame.dtype != np.uint8
                or frame.ndim != 3 or frame.shape[2] != 3):
            raise LocalProtocolError("video frames must be uint8 numpy arrays (H, W, 3)")
        yield frame


def _has(*names: str) -> Callable[[], bool]:
    # looked up in base at call time, so a test can monkeypatch base.media_available
    return lambda: base.media_available() and all(base.ffmpeg_has(n) for n in names)


register_codec(CodecInfo(
    "h264", "video", H264Encoder, H264Decoder, requires="media",
    available=_has("libx264", "h264"),
    description="H.264 via PyAV/libx264: zerolatency, no B-frames, keyframe on request"))
register_codec(CodecInfo(
    "vp8", "video", Vp8Encoder, Vp8Decoder, requires="media",
    available=_has("libvpx", "vp8"),
    description="VP8 via PyAV/libvpx: realtime, no look-ahead, error resilient, CBR"))
