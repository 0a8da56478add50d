"""Audio and video codecs: round trips, G.711 companding, rate changes, keyframe recovery,
concealment, hostile input, and the missing-PyAV path."""

from __future__ import annotations

import importlib.util
import itertools
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.codecs import audio, video
from edgewire.codecs import base as codec_base
from edgewire.codecs.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from edgewire.codecs.base import (
    CodecError,
    CodecUnavailableError,
    available_codecs,
    create_decoder,
    create_encoder,
)
from edgewire.errors import LocalProtocolError

HAVE_AV = codec_base.media_available()

_FAST = settings(max_examples=60, deadline=None)


def _tone(seconds: float, freq: float = 440.0, rate: int = 48_000,
          amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _noisy(seconds: float, seed: int = 0) -> np.ndarray:
    """A tone plus noise: hard enough to code that the bitrate matters."""
    rng = np.random.default_rng(seed)
    x = _tone(seconds).astype(np.float64) + 3000.0 * rng.standard_normal(round(seconds * 48_000))
    return np.clip(x, -32768, 32767).astype(np.int16)


def _frames(count: int, size: tuple[int, int] = (160, 96)) -> list[np.ndarray]:
    pytest.importorskip("av")
    return list(video.synthetic_frames(size=size, fps=30, count=count, output="rgb24"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- registry


def test_registry_lists_media_codecs() -> None:
    audio_names = available_codecs("audio")
    assert {"pcm16", "g711u", "g711a"} <= set(audio_names)
    assert ("opus" in audio_names) == HAVE_AV
    assert ({"h264", "vp8"} <= set(available_codecs("video"))) == HAVE_AV


@pytest.mark.parametrize("name", ["opus", "h264", "vp8"])
def test_missing_pyav_raises_unavailable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # a missing module cannot be simulated otherwise inside one interpreter
    monkeypatch.setattr(codec_base, "media_available", lambda: False)
    with pytest.raises(CodecUnavailableError, match=r"media"):
        create_encoder(name)
    with pytest.raises(CodecUnavailableError, match=r"media"):
        create_decoder(name)
    assert name not in available_codecs()
    direct = {"opus": audio.OpusEncoder, "h264": video.H264Encoder, "vp8": video.Vp8Encoder}
    with pytest.raises(CodecUnavailableError, match=r"edgewire\[media\]"):
        direct[name]()


# --------------------------------------------------------------------------- PCM16


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_round_trip(channels: int) -> None:
    x = _tone(0.02)
    item = x if channels == 1 else np.stack([x, -x], axis=1)
    enc = create_encoder("pcm16", channels=channels)
    dec = create_decoder("pcm16", channels=channels)
    (packet,) = enc.encode(item, timestamp=1.5)
    assert packet.keyframe
    assert packet.timestamp == 1.5
    assert len(packet.data) == 2 + item.size * 2
    (out,) = dec.decode(packet.data, timestamp=1.5)
    assert out.dtype == np.int16
    assert out.shape == item.shape
    np.testing.assert_array_equal(out, item)


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=600), st.sampled_from([1, 2]))
@_FAST
def test_pcm16_round_trip_property(samples: list[int], channels: int) -> None:
    x = np.array(samples * channels, dtype=np.int16).reshape(-1, channels)
    enc = create_encoder("pcm16", channels=channels)
    dec = create_decoder("pcm16", channels=channels)
    (out,) = dec.decode(enc.encode(x, timestamp=0.0)[0].data, timestamp=0.0)
    np.testing.assert_array_equal(out.reshape(-1, channels), x)


def test_pcm16_rejects_bad_packets_and_input() -> None:
    dec = create_decoder("pcm16")
    for bad in (b"", b"\x01", b"\x02\x01\x00\x00", b"\x01\x02\x00\x00", b"\x01\x01\x00"):
        with pytest.raises(CodecError):
            dec.decode(bad, timestamp=0.0)
    assert dec.stats()["errors"] == 5
    enc = create_encoder("pcm16")
    with pytest.raises(LocalProtocolError):
        enc.encode(np.zeros(10, np.float32), timestamp=0.0)
    with pytest.raises(LocalProtocolError):
        enc.encode(np.zeros((10, 2), np.int16), timestamp=0.0)


def test_pcm16_concealment_fades_and_counts() -> None:
    dec = create_decoder("pcm16", frame_samples=160)
    (silence,) = dec.decode(None, timestamp=0.0)  # nothing received yet
    assert silence.shape == (160,)
    assert not silence.any()
    x = np.full(480, 10_000, np.int16)
    dec.decode(create_encoder("pcm16").encode(x, timestamp=0.0)[0].data, timestamp=0.0)
    levels = [int(np.abs(dec.decode(None, timestamp=0.0)[0]).max()) for _ in range(8)]
    assert levels[0] == 10_000  # the fade starts where the last frame ended
    assert all(a > b for a, b in itertools.pairwise(levels[:7]))  # then silence
    assert levels[-1] == 0
    assert dec.stats()["concealed"] == 9


# --------------------------------------------------------------------------- G.711


def test_g711_known_values() -> None:
    # ITU-T G.711 codes of the extremes, zero and "negative zero", and decoded levels
    assert ulaw_encode([0, -1, 32767, -32768]).tolist() == [0xFF, 0x7F, 0x80, 0x00]
    assert ulaw_decode([0x80, 0x00, 0xFF, 0x7F, 0xFE, 0xEF]).tolist() == [
        32124, -32124, 0, 0, 8, 132]
    assert alaw_encode([0, -1, 32767, -32768]).tolist() == [0xD5, 0x55, 0xAA, 0x2A]
    assert alaw_decode([0xD5, 0x55, 0xAA, 0x2A, 0xD4, 0xC5]).tolist() == [
        8, -8, 32256, -32256, 24, 264]


def test_g711_codes_are_their_own_reconstruction_points() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert (alaw_encode(alaw_decode(codes)) == codes).all()
    mu = ulaw_encode(ulaw_decode(codes))
    assert (mu == codes)[codes != 0x7F].all()  # -0 decodes to 0, which encodes as +0
    x = np.arange(-32768, 32768, dtype=np.int16)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        y = dec(enc(x)).astype(np.int32)
        assert (np.diff(y) >= 0).all()  # companding is monotonic


@pytest.mark.skipif(importlib.util.find_spec("audioop") is None, reason="no audioop")
def test_g711_matches_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # deprecated stdlib module: an independent G.711 implementation
    x = np.arange(-32768, 32768, dtype=np.int16)
    raw = x.tobytes()
    assert alaw_encode(x).tobytes() == audioop.lin2alaw(raw, 2)
    codes = bytes(range(256))
    assert alaw_decode(np.frombuffer(codes, np.uint8)).tobytes() == audioop.alaw2lin(codes, 2)
    assert ulaw_decode(np.frombuffer(codes, np.uint8)).tobytes() == audioop.ulaw2lin(codes, 2)
    ref = np.frombuffer(audioop.lin2ulaw(raw, 2), np.uint8)
    # audioop rounds negative samples towards -inf before companding; G.711's reference
    # takes the one's complement instead, so only the non-negative half must agree
    assert (ulaw_encode(x) == ref)[x >= 0].all()


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400),
       st.sampled_from(["g711u", "g711a"]))
@_FAST
def test_g711_round_trip_property(samples: list[int], name: str) -> None:
    x = np.array(samples, dtype=np.int16)
    enc, dec = create_encoder(name), create_decoder(name)
    (packet,) = enc.encode(x, timestamp=0.0)
    assert len(packet.data) == x.size
    (y,) = dec.decode(packet.data, timestamp=0.0)
    assert y.shape == x.shape
    assert y.dtype == np.int16
    # decoded values are fixed points: a second pass gives the same samples (not always
    # the same code: mu-law has two codes for zero, 0x7f and 0xff, that decode alike)
    (again,) = enc.encode(y, timestamp=0.0)
    assert np.array_equal(dec.decode(again.data, timestamp=0.0)[0], y)
    # the error is at most half the top segment's step (A-law) or the clipping (mu-law)
    assert int(np.abs(y.astype(np.int32) - x).max()) <= {"g711u": 644, "g711a": 512}[name]


def test_g711_refuses_other_rates() -> None:
    with pytest.raises(LocalProtocolError, match="8000"):
        create_encoder("g711u", sample_rate=48_000)
    (out,) = create_decoder("g711a").decode(None, timestamp=0.0)
    assert out.shape == (160,)


# --------------------------------------------------------------------------- Opus


def _opus_stream(enc: Any, pcm: np.ndarray) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(pcm) // 960):
        out += [p.data for p in enc.encode(pcm[i * 960:(i + 1) * 960], timestamp=i * 0.02)]
    return out


def test_opus_round_trip() -> None:
    pytest.importorskip("av")
    x = _tone(1.0)
    enc, dec = create_encoder("opus", bitrate_bps=32_000), create_decoder("opus")
    packets = _opus_stream(enc, x)
    assert len(packets) == 50
    frames = [f for p in packets for f in dec.decode(p, timestamp=0.0)]
    assert all(f.shape == (960,) and f.dtype == np.int16 for f in frames)
    y = np.concatenate(frames).astype(np.float64)
    n = 40_000  # compare past libopus's start-up delay, whatever it is
    corr = max(np.corrcoef(x[:n], y[lag:lag + n])[0, 1] for lag in range(0, 1000, 4))
    assert corr > 0.95


def test_opus_stereo_round_trip() -> None:
    pytest.importorskip("av")
    x = _tone(0.2)
    item = np.stack([x, x // 2], axis=1)
    enc = create_encoder("opus", channels=2, bitrate_bps=48_000)
    dec = create_decoder("opus", channels=2)
    frames = [f for p in _opus_stream(enc, item) for f in dec.decode(p, timestamp=0.0)]
    assert frames
    assert all(f.shape == (960, 2) for f in frames)
    tail = np.concatenate(frames[3:]).astype(np.float64)
    assert np.abs(tail[:, 0]).mean() > 1.5 * np.abs(tail[:, 1]).mean()


@pytest.mark.parametrize(("first", "second"), [(12_000, 64_000), (64_000, 12_000)])
def test_opus_bitrate_change_mid_stream(first: int, second: int) -> None:
    pytest.importorskip("av")
    x = _noisy(2.0)
    enc, dec = create_encoder("opus", bitrate_bps=first), create_decoder("opus")
    sizes = []
    for i in range(100):
        if i == 50:
            enc.set_target_bitrate(second)
        packets = enc.encode(x[i * 960:(i + 1) * 960], timestamp=i * 0.02)
        sizes.append(sum(len(p.data) for p in packets))
        for p in packets:
            assert dec.decode(p.data, timestamp=0.0)[0].shape == (960,)
    before, after = sum(sizes[:50]) * 8, sum(sizes[50:]) * 8  # bits per second each
    assert abs(before - first) < 0.15 * first
    assert abs(after - second) < 0.15 * second
    assert max(before, after) > 4 * min(before, after)
    assert enc.stats()["reopens"] == 1


def test_opus_clamps_target() -> None:
    pytest.importorskip("av")
    enc = audio.OpusEncoder(bitrate_bps=1_000)
    assert enc.bitrate_bps == 6_000
    enc.set_target_bitrate(1e6)
    enc.encode(np.zeros(960, np.int16), timestamp=0.0)
    assert enc.bitrate_bps == 128_000
    with pytest.raises(LocalProtocolError):
        enc.set_target_bitrate(0)


def test_opus_concealment_uses_libopus_plc() -> None:
    pytest.importorskip("av")
    dec = create_decoder("opus")
    (first,) = dec.decode(None, timestamp=0.0)  # before any packet: silence
    assert first.shape == (960,)
    assert not first.any()
    enc = create_encoder("opus", bitrate_bps=32_000)
    for p in _opus_stream(enc, _tone(0.2)):
        dec.decode(p, timestamp=0.0)
    (concealed,) = dec.decode(None, timestamp=0.0)
    assert concealed.shape == (960,)
    assert concealed.dtype == np.int16
    assert np.abs(concealed).mean() > 1000  # the tone goes on, not silence
    assert dec.stats()["concealed"] == 2


def test_opus_options_and_bad_input() -> None:
    pytest.importorskip("av")
    enc = create_encoder("opus", fec=True, packet_loss_pct=20, application="lowdelay")
    assert enc.encode(np.zeros(960, np.int16), timestamp=0.0)
    with pytest.raises(LocalProtocolError, match="packet_loss"):
        create_encoder("opus", fec=True, packet_loss_pct=0)
    if "dtx" in audio.opus_encoder_options():
        assert create_encoder("opus", dtx=True).encode(np.zeros(960, np.int16), timestamp=0.0)
    else:
        with pytest.raises(LocalProtocolError, match="dtx"):
            create_encoder("opus", dtx=True)
    with pytest.raises(LocalProtocolError):
        enc.encode(np.zeros(480, np.int16), timestamp=0.0)
    with pytest.raises(LocalProtocolError):
        enc.encode(np.zeros(960, np.float32), timestamp=0.0)
    dec = create_decoder("opus")
    with pytest.raises(CodecError):
        dec.decode(b"", timestamp=0.0)  # never handed to FFmpeg, where it means "end"
    with pytest.raises(CodecError):
        dec.decode(bytes(5000), timestamp=0.0)
    (out,) = dec.decode(_opus_stream(create_encoder("opus"), _tone(0.02))[0], timestamp=0.0)
    assert out.shape == (960,)  # still usable after the refusals
    assert dec.stats()["errors"] == 2


# --------------------------------------------------------------------------- hostile bytes


@pytest.mark.parametrize("name", ["pcm16", "g711u", "g711a", "opus", "h264", "vp8"])
def test_decoders_survive_random_bytes(name: str) -> None:
    if name in ("opus", "h264", "vp8"):
        pytest.importorskip("av")
    dec = create_decoder(name)
    if name in ("h264", "vp8"):  # get past the initial wait so FFmpeg sees the bytes
        enc = create_encoder(name, width=64, height=48)
        dec.decode(enc.encode(np.zeros((48, 64, 3), np.uint8), timestamp=0.0)[0].data,
                   timestamp=0.0)
    prefixes = {"h264": [b"", b"\x00\x00\x00\x01\x65", b"\x00\x00\x01\x41"],
                "vp8": [b"", b"\x10\x02\x00\x9d\x01\x2a\x40\x00\x30\x00", b"\x11\x00\x00"]}

    @given(st.binary(min_size=0, max_size=300), st.sampled_from(prefixes.get(name, [b""])))
    @_FAST
    def run(blob: bytes, prefix: bytes) -> None:
        try:
            out = dec.decode(prefix + blob, timestamp=0.0)
        except CodecError:
            return
        assert isinstance(out, list)

    run()
    stats = dec.stats()
    if name in ("opus", "h264", "vp8"):  # the bytes did reach FFmpeg, not only our checks
        assert stats["packets"] > 1


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_video_round_trip(name: str) -> None:
    frames = _frames(10)
    enc = create_encoder(name, width=160, height=96, bitrate_bps=1_500_000)
    dec = create_decoder(name)
    decoded = []
    for i, f in enumerate(frames):
        packets = enc.encode(f, timestamp=i / 30)
        assert len(packets) == 1
        (p,) = packets
        assert p.keyframe == (i == 0)
        assert p.meta["width"] == 160
        assert p.meta["height"] == 96
        assert p.meta["pts"] == i
        assert p.timestamp == i / 30
        decoded += dec.decode(p.data, timestamp=p.timestamp)
    assert len(decoded) == 10
    assert all(d.shape == (96, 160, 3) and d.dtype == np.uint8 for d in decoded)
    assert min(_psnr(d, f) for d, f in zip(decoded, frames, strict=True)) > 30
    assert enc.stats()["keyframes"] == 1


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_video_bgr_input_and_frame_output(name: str) -> None:
    frames = _frames(3)
    enc = create_encoder(name, width=160, height=96, input_format="bgr24",
                         bitrate_bps=1_500_000)
    dec = create_decoder(name, output="bgr24")
    for i, f in enumerate(frames):
        (p,) = enc.encode(np.ascontiguousarray(f[..., ::-1]), timestamp=i / 30)
        (out,) = dec.decode(p.data, timestamp=0.0)
        assert _psnr(out[..., ::-1], f) > 30
    import av

    framedec = create_decoder(name, output="frame")
    enc2 = create_encoder(name, width=160, height=96)
    (frame,) = framedec.decode(enc2.encode(frames[0], timestamp=0.0)[0].data, timestamp=0.0)
    assert isinstance(frame, av.VideoFrame)
    assert (frame.width, frame.height) == (160, 96)


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_video_bitrate_change_mid_stream(name: str) -> None:
    frames = _frames(60, size=(320, 180))
    enc = create_encoder(name, width=320, height=180, bitrate_bps=100_000)
    dec = create_decoder(name)
    sizes = []
    for i, f in enumerate(frames):
        if i == 30:
            enc.set_target_bitrate(1_000_000)
        packets = enc.encode(f, timestamp=i / 30)
        sizes.append(sum(len(p.data) for p in packets))
        for p in packets:
            assert len(dec.decode(p.data, timestamp=0.0)) == 1
    before, after = sum(sizes[:30]) * 8, sum(sizes[30:]) * 8  # one second each
    assert after > 4 * before
    assert abs(after - 1_000_000) < 0.3 * 1_000_000
    assert enc.stats()["reopens"] == 1


def test_video_small_changes_wait_and_skip() -> None:
    frames = _frames(30)
    enc = create_encoder("vp8", width=160, height=96, bitrate_bps=500_000,
                         min_change_interval_s=0.5)
    keys = []
    for i, f in enumerate(frames):
        if i == 3:
            enc.set_target_bitrate(520_000)  # within the 10 % dead band: ignored
        if i == 6:
            enc.set_target_bitrate(900_000)  # applied once 0.5 s of stream has passed
        keys += [i for p in enc.encode(f, timestamp=i / 30) if p.keyframe]
    assert keys == [0, 15]
    assert enc.stats()["bitrate_bps"] == 900_000


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_keyframe_request_recovers_decoder(name: str) -> None:
    frames = _frames(12)
    enc, dec = create_encoder(name, width=160, height=96), create_decoder(name)
    assert dec.needs_keyframe  # waiting for the first keyframe
    for i in range(3):
        (p,) = enc.encode(frames[i], timestamp=i / 30)
        assert len(dec.decode(p.data, timestamp=0.0)) == 1
    assert not dec.needs_keyframe
    enc.encode(frames[3], timestamp=3 / 30)  # this packet is lost on the way
    assert dec.decode(None, timestamp=0.0) == []
    assert dec.needs_keyframe  # the receiver sends a PLI
    (p,) = enc.encode(frames[4], timestamp=4 / 30)  # still in flight when the PLI arrives
    assert not p.keyframe
    assert dec.decode(p.data, timestamp=0.0) == []
    enc.request_keyframe()
    (p,) = enc.encode(frames[5], timestamp=5 / 30)
    assert p.keyframe
    (out,) = dec.decode(p.data, timestamp=0.0)
    assert not dec.needs_keyframe
    assert _psnr(out, frames[5]) > 25
    (p,) = enc.encode(frames[6], timestamp=6 / 30)
    assert not p.keyframe
    assert len(dec.decode(p.data, timestamp=0.0)) == 1
    stats = dec.stats()
    assert (stats["lost"], stats["dropped"], stats["keyframe_requests"],
            stats["recoveries"]) == (1, 1, 1, 1)


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_video_truncated_packet_is_error_or_drop(name: str) -> None:
    frames = _frames(3)
    enc, dec = create_encoder(name, width=160, height=96), create_decoder(name)
    (key,) = enc.encode(frames[0], timestamp=0.0)
    with pytest.raises(CodecError):
        dec.decode(b"", timestamp=0.0)
    try:
        dec.decode(key.data[: len(key.data) // 3], timestamp=0.0)
    except CodecError:
        assert dec.needs_keyframe
    (out,) = dec.decode(key.data, timestamp=0.0)  # a whole keyframe always recovers
    assert out.shape == (96, 160, 3)


def test_vp8_refuses_oversized_keyframe() -> None:
    pytest.importorskip("av")
    dec = create_decoder("vp8", max_width=640, max_height=480)
    header = b"\x10\x02\x00\x9d\x01\x2a" + (4000).to_bytes(2, "little") + (100).to_bytes(
        2, "little")
    with pytest.raises(CodecError, match="exceeds"):
        dec.decode(header + bytes(100), timestamp=0.0)
    assert dec.stats()["errors"] == 1


@pytest.mark.parametrize("name", ["h264", "vp8"])
def test_set_resolution_reconfigures_with_keyframe(name: str) -> None:
    frames = _frames(6, size=(320, 180))
    enc, dec = create_encoder(name, width=320, height=180), create_decoder(name)
    assert isinstance(enc, video.VideoEncoder)
    shapes, keys = [], []
    for i, f in enumerate(frames):
        if i == 3:
            enc.set_resolution(160, 90)
        (p,) = enc.encode(f, timestamp=i / 30)
        keys.append(p.keyframe)
        assert (p.meta["width"], p.meta["height"]) == ((320, 180) if i < 3 else (160, 90))
        shapes += [o.shape for o in dec.decode(p.data, timestamp=0.0)]
    assert keys == [True, False, False, True, False, False]
    assert shapes == [(180, 320, 3)] * 3 + [(90, 160, 3)] * 3
    with pytest.raises(LocalProtocolError):
        enc.set_resolution(161, 90)


def test_set_frame_rate_thins_input() -> None:
    frames = _frames(30)
    enc = create_encoder("h264", width=160, height=96, fps=30)
    assert isinstance(enc, video.VideoEncoder)
    enc.set_frame_rate(15)
    produced = sum(len(enc.encode(f, timestamp=i / 30)) for i, f in enumerate(frames))
    assert produced == 15
    assert enc.stats()["frames_skipped"] == 15
    assert enc.stats()["fps"] == 15


def test_encoder_clears_forced_picture_types() -> None:
    av = pytest.importorskip("av")

    frames = list(video.synthetic_frames(size=(160, 96), count=8, output="frame"))
    enc = create_encoder("vp8", width=160, height=96)
    keys = []
    for i, f in enumerate(frames):
        f.pict_type = av.video.frame.PictureType.I  # as lavfi hands them out
        keys += [p.keyframe for p in enc.encode(f, timestamp=i / 30)]
    assert keys == [True] + [False] * 7


def test_video_input_checks() -> None:
    pytest.importorskip("av")
    enc = create_encoder("h264", width=160, height=96)
    for bad in (np.zeros((96, 160), np.uint8), np.zeros((96, 160, 3), np.float32), "frame"):
        with pytest.raises(LocalProtocolError):
            enc.encode(bad, timestamp=0.0)
    with pytest.raises(LocalProtocolError):
        enc.encode(np.zeros((96, 160, 3), np.uint8), timestamp=float("nan"))
    # a frame of another size is scaled to the configured one
    (p,) = enc.encode(np.zeros((50, 70, 3), np.uint8), timestamp=0.0)
    assert (p.meta["width"], p.meta["height"]) == (160, 96)


# --------------------------------------------------------------------------- sources


def test_sources(tmp_path: Any) -> None:
    av = pytest.importorskip("av")
    frames = list(video.synthetic_frames(size=(64, 48), count=5))
    assert len(frames) == 5
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[4])  # the pattern moves
    assert list(video.array_frames(frames)) == frames
    with pytest.raises(LocalProtocolError):
        list(video.array_frames([np.zeros((4, 4), np.uint8)]))
    path = str(tmp_path / "clip.mkv")
    with av.open(path, "w") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    read = list(video.file_frames(path))
    assert len(read) == 5
    assert read[0].shape == (48, 64, 3)
    assert _psnr(read[2], frames[2]) > 20
    assert len(list(video.file_frames(path, count=2, output="frame"))) == 2
