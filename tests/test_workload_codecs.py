"""Workload sources that encode for real (edgewire.codecs), and netsim runs with them."""

from __future__ import annotations

import numpy as np
import pytest

from edgewire.errors import LocalProtocolError
from edgewire.workload.ladder import VideoLadder
from edgewire.workload.sources import (
    AudioSource,
    AudioSourceConfig,
    VideoSource,
    VideoSourceConfig,
)

av = pytest.importorskip("av")


def _poll(source: AudioSource | VideoSource, start: float, end: float) -> list:
    """Poll every 10 ms, as a driver would (items more than max_backlog_s late are
    skipped)."""
    out = []
    for t in np.arange(start, end + 1e-9, 0.01):
        out += source.poll(now=float(t))
    return out


def _frames(source: AudioSource | VideoSource, seconds: float) -> list:
    source.start(now=0.0)
    return _poll(source, 0.0, seconds)


def test_opus_source_follows_its_bitrate() -> None:
    from edgewire.codecs import create_decoder

    src = AudioSource(AudioSourceConfig(codec="opus", bitrate_bps=48_000))
    high = _frames(src, 2.0)
    dec = create_decoder("opus")
    pcm = dec.decode(high[10].payload, timestamp=high[10].timestamp)
    assert pcm
    assert np.asarray(pcm[0]).shape[0] == 960  # 20 ms at 48 kHz
    src.set_bitrate(12_000)
    low = _poll(src, 2.01, 4.0)
    rate = lambda fs: sum(f.size_bytes for f in fs[-50:]) * 8 / 1.0  # noqa: E731
    assert rate(high) > 40_000
    assert rate(low) < 16_000
    src.set_bitrate(1e9)  # capped at the configured maximum
    assert src.bitrate_bps == 48_000


@pytest.mark.parametrize("codec", ["pcm16", "g711u", "g711a"])
def test_fixed_rate_audio_codecs(codec: str) -> None:
    src = AudioSource(AudioSourceConfig(codec=codec))
    frames = _frames(src, 1.0)
    # 20 ms: PCM16 at 16 kHz (320 samples, 2-byte header), G.711 at 8 kHz (160 bytes)
    expected = {"pcm16": 642, "g711u": 160, "g711a": 160}[codec]
    assert len(frames) == 51
    assert {f.size_bytes for f in frames} == {expected}


def test_bad_codec_names_rejected() -> None:
    with pytest.raises(LocalProtocolError):
        AudioSourceConfig(codec="mp3")
    with pytest.raises(LocalProtocolError):
        AudioSourceConfig(codec="opus", frame_ms=10)
    with pytest.raises(LocalProtocolError):
        VideoSourceConfig(codec="av1")
    with pytest.raises(LocalProtocolError):
        VideoSourceConfig(codec="h264", source_width=641)


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_video_source_keyframe_on_request_and_ladder_resolution(codec: str) -> None:
    from edgewire.codecs import create_decoder

    src = VideoSource(VideoSourceConfig(codec=codec, bitrate_bps=600_000, fps=15,
                                        keyframe_interval_s=100, source_width=320,
                                        source_height=180))
    frames = _frames(src, 1.0)
    assert frames[0].keyframe
    assert not any(f.keyframe for f in frames[1:])
    src.request_keyframe()
    nxt = _poll(src, 1.01, 1.09)
    assert nxt
    assert nxt[0].keyframe
    dec = create_decoder(codec)
    pictures = []
    for f in [*frames, *nxt]:
        pictures += dec.decode(f.payload, timestamp=f.timestamp)
    assert pictures
    assert np.asarray(pictures[-1]).shape[:2] == (180, 320)
    # the ladder's lowest rung asks for 320x180; the next rung up for 480x270
    ladder = VideoLadder(600_000)
    ladder.apply(src, 400_000)
    more = _poll(src, 1.1, 2.0)
    assert more[0].keyframe  # a new resolution starts with a keyframe
    pictures = []
    for f in more:
        pictures += dec.decode(f.payload, timestamp=f.timestamp)
    assert np.asarray(pictures[-1]).shape[:2] == (270, 480)


def test_netsim_video_loss_asks_for_keyframes() -> None:
    from edgewire.netsim.run import run_scenario
    from edgewire.netsim.scenario import parse_scenario

    result = run_scenario(parse_scenario({
        "name": "kf", "duration_s": 6, "seed": 3,
        "transport": {"recovery": "none"},
        "link": {"rate_kbps": 3000, "delay_ms": 20, "loss": {"model": "bernoulli",
                                                             "rate": 0.05}},
        "traffic": {"down": {"video": {"codec": "vp8", "bitrate_kbps": 400, "fps": 15,
                                       "keyframe_interval_s": 100, "adapt": False}}}}))
    video = result["channels"]["down"]["video"]
    assert video["codec"] == "vp8"
    assert video["lost"] > 0
    # every lost frame asks (rate-limited), and each request makes a keyframe
    assert video["keyframes_requested"] > 0
    assert video["keyframes"] >= 1 + video["keyframes_requested"] // 2
    assert abs(video["encoded_kbps"] - 400) < 0.5 * 400
