"""Measurements of the PyAV media codecs: delivered bitrate against target, how fast a new
target takes effect, speed, and (video) picture quality. Building blocks of ``edgewire bench
codecs``; plain functions that return JSON-ready dicts.

Definitions used throughout:

* delivered bitrate: bytes of the packets produced for a stretch of media x 8 / the media
  duration of that stretch (stream time, not wall time);
* windowed bitrate: the same over consecutive 10 s windows of stream time (a run shorter
  than 10 s is one window); ``max_window_error_pct`` is the largest deviation from target;
* settle time of a target change: the change is made between two frames; the settle time is
  the stream time from the change to the start of the first 1 s window (stepped frame by
  frame) whose delivered rate is within 15 % of the new target. 0.0 means the very first
  second after the change is already within 15 %. None means never within the run;
* realtime factor (audio): media seconds / wall seconds spent in ``encode`` + ``decode``;
* fps (video): frames / wall seconds spent in ``encode`` + ``decode``, one thread each
  (``threads=1`` for encoder and decoder), frames given and taken as yuv420p
  ``av.VideoFrame`` (no RGB conversion in the timed part; ``rgb_io=True`` times the numpy
  RGB interface instead);
* PSNR (video): on the luma (Y) plane of decoded vs source yuv420p frames, the mean of the
  per-frame PSNR (a frame identical to its source counts as 100 dB).

Wall times on a shared machine are indicative; bitrates and PSNR do not depend on load.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewire.codecs.base import create_decoder, create_encoder
from edgewire.codecs.signals import speech_like_signal

__all__ = ["bench_audio", "bench_video", "settle_seconds", "speech_like_signal"]

K_RATE = 48_000  # Hz
K_FRAME = 960  # samples per 20 ms
K_WINDOW_S = 10.0  # long-window length for the delivered-rate goal
K_TOLERANCE = 0.15  # goal: within 15 % of target
K_CHANGE_AT_S = 2.0  # stream time of the target change in the change runs
K_CHANGE_AFTER_S = 3.0  # stream time recorded after the change


def settle_seconds(sizes: Sequence[int], frame_s: float, change_index: int,
                   target_bps: float, *, window_s: float = 1.0,
                   tolerance: float = K_TOLERANCE) -> float | None:
    """Stream seconds from the change (before frame ``change_index``) to the start of the
    first ``window_s`` window within ``tolerance`` of ``target_bps``; None if none is.

    ``sizes`` are the bytes produced per input frame of ``frame_s`` seconds.
    """
    per = max(1, round(window_s / frame_s))
    arr = np.asarray(sizes, dtype=np.float64)
    for start in range(change_index, len(arr) - per + 1):
        rate = arr[start:start + per].sum() * 8.0 / (per * frame_s)
        if abs(rate - target_bps) <= tolerance * target_bps:
            return round((start - change_index) * frame_s, 3)
    return None


def _windows(sizes: Sequence[int], frame_s: float, target_bps: float) -> dict[str, Any]:
    per = max(1, round(K_WINDOW_S / frame_s))
    arr = np.asarray(sizes, dtype=np.float64)
    spans = [arr[i:i + per] for i in range(0, len(arr) - per + 1, per)] or [arr]
    kbps = [float(s.sum() * 8.0 / (len(s) * frame_s) / 1000.0) for s in spans]
    error = max(abs(k * 1000.0 - target_bps) / target_bps * 100.0 for k in kbps)
    return {"window_s": round(min(K_WINDOW_S, len(arr) * frame_s), 3),
            "window_kbps": [round(k, 2) for k in kbps],
            "max_window_error_pct": round(error, 2),
            "within_15pct": error <= K_TOLERANCE * 100.0}


# --------------------------------------------------------------------------- audio


def _opus_run(pcm: npt.NDArray[np.int16], bitrate_bps: float,
              change: tuple[int, float] | None = None) -> tuple[list[int], float]:
    """Encode and decode ``pcm`` in 20 ms frames; bytes per frame and wall seconds spent
    in the codecs. ``change`` = (frame index, new target) switches the target mid-stream."""
    enc = create_encoder("opus", bitrate_bps=bitrate_bps)
    dec = create_decoder("opus")
    sizes: list[int] = []
    wall = 0.0
    for i in range(len(pcm) // K_FRAME):
        if change is not None and i == change[0]:
            enc.set_target_bitrate(change[1])
        frame = pcm[i * K_FRAME:(i + 1) * K_FRAME]
        ts = i * K_FRAME / K_RATE
        t0 = time.perf_counter()
        packets = enc.encode(frame, timestamp=ts)
        for p in packets:
            dec.decode(p.data, timestamp=ts)
        wall += time.perf_counter() - t0
        sizes.append(sum(len(p.data) for p in packets))
    return sizes, wall


def bench_audio(seconds: float = 10.0, targets_kbps: Sequence[float] = (12, 24, 48),
                *, change_kbps: tuple[float, float] = (12, 48)) -> dict[str, Any]:
    """Opus (default options: voip, CBR) on :func:`speech_like_signal` at each target.

    One entry per target (key: the target in kbit/s as text) with ``delivered_kbps``,
    10 s windows, ``realtime_factor`` and ``packets``; ``"change"`` holds the settle time
    of a switch from ``change_kbps[0]`` to ``change_kbps[1]`` and back, made after 2 s
    and followed for 3 s.
    """
    frame_s = K_FRAME / K_RATE
    pcm = speech_like_signal(seconds)
    out: dict[str, Any] = {}
    for kbps in targets_kbps:
        target = kbps * 1000.0
        sizes, wall = _opus_run(pcm, target)
        media_s = len(sizes) * frame_s
        out[f"{kbps:g}"] = {
            "target_kbps": kbps,
            "delivered_kbps": round(sum(sizes) * 8.0 / media_s / 1000.0, 2),
            **_windows(sizes, frame_s, target),
            "realtime_factor": round(media_s / wall, 1) if wall > 0 else math.inf,
            "packets": sum(1 for s in sizes if s),
        }
    change_pcm = speech_like_signal(K_CHANGE_AT_S + K_CHANGE_AFTER_S, seed=2)
    at = round(K_CHANGE_AT_S / frame_s)
    changes: dict[str, Any] = {}
    for a, b in (change_kbps, change_kbps[::-1]):
        sizes, _ = _opus_run(change_pcm, a * 1000.0, change=(at, b * 1000.0))
        first = sizes[at:at + round(1.0 / frame_s)]
        changes[f"{a:g}->{b:g}"] = {
            "settle_s": settle_seconds(sizes, frame_s, at, b * 1000.0),
            "first_second_kbps": round(sum(first) * 8.0 / 1000.0, 2),
        }
    out["change"] = changes
    return out


# --------------------------------------------------------------------------- video


def _luma(frame: Any, height: int) -> npt.NDArray[np.uint8]:
    arr: npt.NDArray[np.uint8] = frame.to_ndarray(format="yuv420p")[:height]
    return arr


def _from_rgb(rgb: npt.NDArray[np.uint8]) -> Any:
    import av

    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _psnr(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10.0 * math.log10(255.0 ** 2 / mse))


def _video_run(codec: str, bitrate_bps: float, size: tuple[int, int], fps: float,
               count: int, change: tuple[int, float] | None = None,
               rgb_io: bool = False) -> dict[str, Any]:
    from edgewire.codecs.video import synthetic_frames

    enc = create_encoder(codec, width=size[0], height=size[1], fps=fps,
                         bitrate_bps=bitrate_bps, threads=1)
    dec = create_decoder(codec, output="rgb24" if rgb_io else "frame", threads=1)
    sizes: list[int] = []
    psnr: list[float] = []
    enc_s = dec_s = 0.0
    keyframes = 0
    for i, frame in enumerate(synthetic_frames(size=size, fps=fps, count=count,
                                               output="frame")):
        if change is not None and i == change[0]:
            enc.set_target_bitrate(change[1])
        source = _luma(frame, size[1])
        ts = i / fps
        t0 = time.perf_counter()
        packets = enc.encode(frame.to_ndarray(format="rgb24") if rgb_io else frame,
                             timestamp=ts)
        t1 = time.perf_counter()
        decoded = []
        for p in packets:
            decoded += dec.decode(p.data, timestamp=ts)
        t2 = time.perf_counter()
        enc_s += t1 - t0
        dec_s += t2 - t1
        sizes.append(sum(len(p.data) for p in packets))
        keyframes += sum(p.keyframe for p in packets)
        if rgb_io:
            decoded = [_from_rgb(d) for d in decoded]
        psnr += [_psnr(_luma(d, size[1]), source) for d in decoded]
    return {"sizes": sizes, "psnr": psnr, "enc_s": enc_s, "dec_s": dec_s,
            "keyframes": keyframes, "decoder": dec.stats()}


def bench_video(seconds: float = 10.0, codecs: Sequence[str] = ("h264", "vp8"),
                targets_kbps: Sequence[float] = (300, 800, 2000),
                size: tuple[int, int] = (640, 360), fps: float = 30.0,
                *, change_kbps: tuple[float, float] = (300, 2000),
                rgb_io: bool = False) -> dict[str, Any]:
    """Each codec at each target on lavfi ``testsrc2`` frames of ``size`` at ``fps``.

    One entry per ``"codec@kbps"`` with ``delivered_kbps``, 10 s windows, ``psnr_db``
    (luma), ``fps`` (encode + decode, one thread), ``encode_fps``, ``decode_fps``,
    ``keyframes`` and ``frames_decoded``; ``"change"`` holds, per codec, the settle time of
    a switch from ``change_kbps[0]`` to ``change_kbps[1]`` and back, made after 2 s and
    followed for 3 s. With ``rgb_io`` the encoder takes numpy RGB arrays and the decoder
    gives them (the codecs' default interface), so the timed part includes the RGB/YUV
    conversions; PSNR is then on the Y plane of the decoded RGB converted back to yuv420p.
    """
    frame_s = 1.0 / fps
    count = max(1, round(seconds * fps))
    out: dict[str, Any] = {}
    for codec in codecs:
        for kbps in targets_kbps:
            target = kbps * 1000.0
            run = _video_run(codec, target, size, fps, count, rgb_io=rgb_io)
            wall = run["enc_s"] + run["dec_s"]
            out[f"{codec}@{kbps:g}"] = {
                "target_kbps": kbps,
                "delivered_kbps": round(sum(run["sizes"]) * 8.0 / (count * frame_s) / 1000.0,
                                        2),
                **_windows(run["sizes"], frame_s, target),
                "psnr_db": round(float(np.mean(run["psnr"])), 2) if run["psnr"] else None,
                "psnr_plane": "Y",
                "fps": round(count / wall, 1) if wall > 0 else math.inf,
                "encode_fps": round(count / run["enc_s"], 1) if run["enc_s"] > 0 else math.inf,
                "decode_fps": round(count / run["dec_s"], 1) if run["dec_s"] > 0 else math.inf,
                "keyframes": run["keyframes"],
                "frames_decoded": run["decoder"]["frames"],
            }
    changes: dict[str, Any] = {}
    at = round(K_CHANGE_AT_S * fps)
    change_count = round((K_CHANGE_AT_S + K_CHANGE_AFTER_S) * fps)
    for codec in codecs:
        for a, b in (change_kbps, change_kbps[::-1]):
            run = _video_run(codec, a * 1000.0, size, fps, change_count,
                             change=(at, b * 1000.0))
            first = run["sizes"][at:at + round(fps)]
            changes[f"{codec} {a:g}->{b:g}"] = {
                "settle_s": settle_seconds(run["sizes"], frame_s, at, b * 1000.0),
                "first_second_kbps": round(sum(first) * 8.0 / 1000.0, 2),
            }
    out["change"] = changes
    return out
