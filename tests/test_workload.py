"""Workload generators and recorders, driven in virtual time."""

from __future__ import annotations

import numpy as np
import pytest

from edgewire.errors import LocalProtocolError
from edgewire.transport.events import FrameLost, MessageReceived
from edgewire.transport.messages import TokenMessage
from edgewire.workload import (
    AudioSource,
    AudioSourceConfig,
    ChannelRecorder,
    EmbeddingSource,
    EmbeddingSourceConfig,
    Frame,
    Source,
    TokenSource,
    TokenSourceConfig,
    VideoSource,
    VideoSourceConfig,
    WorkloadMix,
    build_sources,
    payload_size,
)


def run_for(source: Source, duration_s: float, *, start: float = 0.0) -> list[Frame]:
    """Start ``source`` at ``start`` and poll it at each timer until ``start + duration_s``
    (exclusive), the way a discrete-event driver would."""
    source.start(now=start)
    frames: list[Frame] = []
    while (t := source.get_timer()) is not None and t < start + duration_s - 1e-9:
        frames.extend(source.poll(now=t))
    return frames


# ---------------------------------------------------------------------------- audio


def test_audio_fifty_frames_per_second_of_80_bytes() -> None:
    src = AudioSource()
    frames = run_for(src, 1.0)
    assert len(frames) == 50
    assert all(isinstance(f.payload, bytes) and len(f.payload) == 80 for f in frames)
    assert all(f.size_bytes == 80 and not f.keyframe for f in frames)
    assert [f.timestamp for f in frames] == pytest.approx([i * 0.02 for i in range(50)])
    assert [f.index for f in frames] == list(range(50))
    assert src.produced == 50
    assert src.produced_bytes == 4000
    assert src.skipped == 0


def test_audio_exact_count_with_coarse_polling() -> None:
    src = AudioSource()
    src.start(now=0.0)
    # a driver ticking every 7 ms: items still come out one per 20 ms, never twice
    frames = [f for ms in range(0, 10_000, 7) for f in src.poll(now=ms / 1000)]
    assert len(frames) == 500  # due at 0.00 .. 9.98, last poll at 9.996
    assert len({f.index for f in frames}) == 500


def test_audio_fractional_frame_size_averages_exactly() -> None:
    # 10 kbit/s * 10 ms / 8000 = 12.5 bytes: sizes alternate, the sum is exact
    src = AudioSource(AudioSourceConfig(bitrate_bps=10_000, frame_ms=10))
    frames = run_for(src, 1.0)
    assert len(frames) == 100
    assert {f.size_bytes for f in frames} <= {12, 13}
    assert sum(f.size_bytes for f in frames) == 1250


# ---------------------------------------------------------------------------- video


@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_video_average_bitrate_within_5_percent(jitter: float) -> None:
    src = VideoSource(VideoSourceConfig(size_jitter=jitter), rng=np.random.default_rng(7))
    frames = run_for(src, 10.0)
    assert len(frames) == 300
    bitrate = sum(f.size_bytes for f in frames) * 8 / 10.0
    assert bitrate == pytest.approx(1_000_000, rel=0.05)
    assert all(len(f.payload) == f.size_bytes for f in frames)  # type: ignore[arg-type]


def test_video_keyframes_at_interval_and_scaled() -> None:
    src = VideoSource()
    frames = run_for(src, 10.0)
    keys = [f for f in frames if f.keyframe]
    assert [f.index for f in keys] == [0, 60, 120, 180, 240]
    assert [f.timestamp for f in keys] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    assert src.keyframes == 5
    deltas = [f.size_bytes for f in frames if not f.keyframe]
    # no jitter: delta = 1e6/8/30 * 60 / 63 bytes = 3968.25, keyframe 4x that
    assert min(deltas) >= 3968
    assert max(deltas) <= 3969
    assert all(15872 <= f.size_bytes <= 15874 for f in keys)
    assert src.keyframe_bytes / src.delta_bytes == pytest.approx(4.0)


def test_video_without_jitter_hits_bitrate_exactly() -> None:
    frames = run_for(VideoSource(), 10.0)
    assert sum(f.size_bytes for f in frames) == 1_250_000


def test_video_set_bitrate_and_request_keyframe() -> None:
    src = VideoSource()
    src.start(now=0.0)
    src.poll(now=0.0)  # keyframe 0
    src.set_bitrate(500_000)
    assert src.bitrate_bps == 500_000
    src.request_keyframe()
    frames = src.poll(now=0.1)  # frames 1, 2, 3
    assert [f.keyframe for f in frames] == [True, False, False]
    assert frames[1].size_bytes == pytest.approx(500_000 / 8 / 30 * 60 / 63, abs=1)
    # the keyframe interval restarts at the requested keyframe (index 1)
    later = src.poll(now=2.1)
    assert [f.index for f in later if f.keyframe] == [61]


def test_video_skipped_keyframe_is_made_up() -> None:
    src = VideoSource()
    src.start(now=0.0)
    for i in range(58):  # on time up to frame 57; the keyframe at 2.0 (frame 60) is ahead
        src.poll(now=i / 30)
    assert src.skipped == 0
    frames = src.poll(now=3.0)  # frames 58 .. 80 are more than 0.3 s late
    assert src.skipped == 23
    assert [f.index for f in frames] == list(range(81, 91))
    # frame 60 was never produced: the first one after the gap is a keyframe instead,
    # and the keyframe interval counts from it
    assert [f.index for f in frames if f.keyframe] == [81]
    later = [f for i in range(91, 160) for f in src.poll(now=i / 30)]
    assert [f.index for f in later if f.keyframe] == [141]


# ---------------------------------------------------------------------------- tokens


def test_token_rate_and_ids() -> None:
    src = TokenSource(rng=np.random.default_rng(3))
    frames = run_for(src, 5.0)
    assert len(frames) == 100  # 20 tokens/s, one per message
    assert src.tokens == 100
    for f in frames:
        assert isinstance(f.payload, list)
        assert len(f.payload) == 1
        assert all(isinstance(i, int) and 0 <= i < 50_000 for i in f.payload)
        assert f.size_bytes == 4
    assert frames[1].timestamp == pytest.approx(0.05)


def test_token_batches_with_text() -> None:
    cfg = TokenSourceConfig(tokens_per_s=40.0, batch=4, vocab=1000, with_text=True)
    src = TokenSource(cfg)
    frames = run_for(src, 1.0)
    assert len(frames) == 10  # 40 tokens/s in 4s: one message every 0.1 s
    messages = [f.payload for f in frames]
    assert all(isinstance(m, TokenMessage) for m in messages)
    assert sum(len(m.ids) for m in messages if isinstance(m, TokenMessage)) == 40
    msg = frames[3].payload
    assert isinstance(msg, TokenMessage)
    assert msg.text == "".join(f"tok{i} " for i in msg.ids)
    assert msg.timestamp == frames[3].timestamp == pytest.approx(0.3)
    assert frames[3].size_bytes == 16 + len(msg.text)


# ---------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_embedding_rows_are_unit_norm(dtype: str) -> None:
    src = EmbeddingSource(EmbeddingSourceConfig(dtype=dtype))
    frames = run_for(src, 2.0)
    assert len(frames) == 4  # every 0.5 s
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    for f in frames:
        arr = f.payload
        assert isinstance(arr, np.ndarray)
        assert arr.shape == (8, 768)
        assert arr.dtype == np.dtype(dtype)
        norms = np.linalg.norm(arr.astype(np.float64), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-3 if dtype == "float16" else 1e-6)
        assert f.size_bytes == arr.nbytes == 8 * 768 * np.dtype(dtype).itemsize
    assert frames[0].payload.tobytes() != frames[1].payload.tobytes()  # type: ignore[union-attr]


def test_embedding_config_rejects_non_float_dtype() -> None:
    with pytest.raises(LocalProtocolError):
        EmbeddingSourceConfig(dtype="int8")
    with pytest.raises(LocalProtocolError):
        EmbeddingSourceConfig(dtype="not-a-dtype")


# ---------------------------------------------------------------------------- scheduling


def test_late_poll_catches_up_within_backlog() -> None:
    src = AudioSource(AudioSourceConfig(max_backlog_s=0.2))
    src.start(now=0.0)
    frames = src.poll(now=0.1)  # due 0.00 .. 0.10, all within the backlog
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5]
    assert src.skipped == 0


def test_late_poll_skips_beyond_backlog_and_counts() -> None:
    src = AudioSource(AudioSourceConfig(max_backlog_s=0.2))
    src.start(now=0.0)
    src.poll(now=0.0)
    frames = src.poll(now=1.0)
    # items 1 .. 39 (0.02 .. 0.78) are more than 0.2 s late; 40 .. 50 (0.8 .. 1.0) are not
    assert src.skipped == 39
    assert [f.index for f in frames] == list(range(40, 51))
    assert frames[0].timestamp == pytest.approx(0.8)
    assert src.produced == 12
    assert src.get_timer() == pytest.approx(1.02)


def test_very_late_poll_is_bounded() -> None:
    src = AudioSource(AudioSourceConfig(max_backlog_s=0.0))
    src.start(now=0.0)
    frames = src.poll(now=3600.0)  # an hour late: skips arithmetically, emits one item
    assert len(frames) == 1
    assert frames[0].timestamp == pytest.approx(3600.0)
    assert src.skipped == 180_000


def test_get_timer_matches_next_due() -> None:
    src = VideoSource()
    assert src.get_timer() is None
    assert src.poll(now=5.0) == []  # not started
    src.start(now=10.0)
    assert src.get_timer() == pytest.approx(10.0)
    assert src.poll(now=9.99) == []
    assert len(src.poll(now=10.05)) == 2  # 10.0 and 10.0333
    assert src.get_timer() == pytest.approx(10.0 + 2 / 30)
    assert src.poll(now=src.get_timer() - 1e-6) == []  # type: ignore[operator]
    assert len(src.poll(now=src.get_timer())) == 1  # type: ignore[arg-type]
    src.stop()
    assert src.get_timer() is None
    assert src.poll(now=20.0) == []


def test_restart_continues_indices() -> None:
    src = TokenSource()
    src.start(now=0.0)
    assert len(src.poll(now=0.0)) == 1
    with pytest.raises(LocalProtocolError):
        src.start(now=0.0)
    src.stop()
    src.start(now=5.0)
    assert src.get_timer() == pytest.approx(5.0)
    assert [f.index for f in src.poll(now=5.05)] == [1, 2]


def test_invalid_configs_raise() -> None:
    with pytest.raises(LocalProtocolError):
        AudioSourceConfig(bitrate_bps=0)
    with pytest.raises(LocalProtocolError):
        VideoSourceConfig(keyframe_scale=0.5)
    with pytest.raises(LocalProtocolError):
        TokenSourceConfig(batch=0)
    with pytest.raises(LocalProtocolError):
        AudioSource(AudioSourceConfig(max_backlog_s=-1.0))


# ---------------------------------------------------------------------------- determinism


def _payload_key(frame: Frame) -> object:
    p = frame.payload
    if isinstance(p, np.ndarray):
        return p.tobytes()
    return (p, frame.size_bytes, frame.keyframe, frame.timestamp)


def _run_mix(seed: int) -> dict[str, list[object]]:
    mix = WorkloadMix(video=VideoSourceConfig(size_jitter=0.1))
    sources = build_sources(mix, np.random.default_rng(seed))
    return {name: [_payload_key(f) for f in run_for(src, 2.0)] for name, src in sources.items()}


def test_same_seed_same_payloads() -> None:
    a, b, c = _run_mix(42), _run_mix(42), _run_mix(43)
    assert a == b
    assert a["audio"] != c["audio"]
    assert a["video"] != c["video"]
    assert a["tokens"] != c["tokens"]
    assert a["embeddings"] != c["embeddings"]


def test_default_rng_is_deterministic() -> None:
    one = [f.payload for f in run_for(AudioSource(), 0.2)]
    two = [f.payload for f in run_for(AudioSource(), 0.2)]
    assert one == two
    assert len(set(one)) == len(one)  # payloads differ from frame to frame


def test_build_sources_defaults_and_disabled_kinds() -> None:
    sources = build_sources()
    assert list(sources) == ["audio", "video", "tokens", "embeddings"]
    assert all(src.kind.value == name for name, src in sources.items())
    audio = sources["audio"]
    assert isinstance(audio, AudioSource)
    assert audio.config.bitrate_bps == 32_000
    video = sources["video"]
    assert isinstance(video, VideoSource)
    assert video.config.fps == 30
    # leaving a kind out does not change the other kinds' streams
    full = build_sources(rng=np.random.default_rng(1))
    partial = build_sources(WorkloadMix(audio=None, tokens=None), np.random.default_rng(1))
    assert list(partial) == ["video", "embeddings"]
    assert [f.payload for f in run_for(full["video"], 0.5)] == [
        f.payload for f in run_for(partial["video"], 0.5)
    ]


# ---------------------------------------------------------------------------- recorder


def test_recorder_summary_math() -> None:
    rec = ChannelRecorder(deadline_ms=150.0)
    # 4 deliveries of 1000 bytes: latencies 50, 100, 150 (on the deadline), 200 ms
    for i, latency in enumerate([0.05, 0.10, 0.15, 0.20]):
        rec.on_message(now=1.0 + i, latency=latency, size_bytes=1000)
    rec.on_lost(now=5.0, reason="incomplete")
    rec.on_lost(now=5.0, reason="late")
    s = rec.summary(sent=8, duration_s=2.0)
    assert s["sent"] == 8
    assert s["delivered"] == 4
    assert s["dropped"] == 4
    assert s["on_time_ratio"] == pytest.approx(3 / 8)
    assert s["lost"] == 1
    assert s["late"] == 2  # one delivered past the deadline, one dropped as late
    assert s["goodput_kbps"] == pytest.approx(4000 * 8 / 2.0 / 1000)  # 16 kbit/s
    # numpy's linear percentiles of [50, 100, 150, 200]
    assert s["latency_ms"] == {"p50": pytest.approx(125.0), "p95": pytest.approx(192.5),
                               "p99": pytest.approx(198.5)}
    assert rec.first_arrival == 1.0
    assert rec.last_arrival == 4.0
    assert rec.loss_reasons == {"incomplete": 1, "late": 1}


def test_recorder_dropped_never_negative_and_ratio_capped() -> None:
    rec = ChannelRecorder(deadline_ms=100.0)
    for _ in range(5):
        rec.on_message(now=0.0, latency=0.01, size_bytes=10)
    s = rec.summary(sent=3, duration_s=1.0)
    assert s["dropped"] == 0
    assert s["on_time_ratio"] == 1.0


def test_recorder_reliable_counts_everything_on_time() -> None:
    rec = ChannelRecorder(deadline_ms=None)
    rec.on_message(now=0.0, latency=5.0, size_bytes=125)
    rec.on_message(now=1.0, latency=9.0, size_bytes=125)
    s = rec.summary(sent=2, duration_s=0.5)
    assert s["on_time_ratio"] == 1.0
    assert s["late"] == 0
    assert s["goodput_kbps"] == pytest.approx(250 * 8 / 0.5 / 1000)  # 4 kbit/s


def test_recorder_empty_summary() -> None:
    rec = ChannelRecorder(deadline_ms=150.0)
    s = rec.summary(sent=0, duration_s=1.0)
    assert s["on_time_ratio"] is None
    assert s["dropped"] == 0
    assert s["goodput_kbps"] == 0.0
    assert s["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert rec.first_arrival is None
    with pytest.raises(LocalProtocolError):
        rec.summary(sent=1, duration_s=0.0)
    with pytest.raises(LocalProtocolError):
        rec.summary(sent=-1, duration_s=1.0)


def test_recorder_latency_storage_is_bounded() -> None:
    rec = ChannelRecorder(deadline_ms=150.0, latency_capacity=16)
    for i in range(100):
        rec.on_message(now=float(i), latency=0.001 * i, size_bytes=1)
    assert len(rec.latency) == 16
    assert rec.latency.total == 100
    assert rec.delivered == 100
    assert rec.on_time == 100


def test_recorder_on_event_routes_session_events() -> None:
    rec = ChannelRecorder(deadline_ms=150.0)
    arr = np.zeros((2, 4), dtype=np.float32)
    rec.on_event(MessageReceived(channel_id=3, payload=b"x" * 80, timestamp=0.0, latency=0.03),
                 now=0.03)
    rec.on_event(MessageReceived(channel_id=3, payload=arr, timestamp=0.0, latency=0.04),
                 now=0.04)
    rec.on_event(FrameLost(channel_id=3, frame_id=7, reason="incomplete"), now=0.5)
    assert rec.delivered == 2
    assert rec.delivered_bytes == 80 + 32
    assert rec.lost == 1


def test_payload_size_matches_frames() -> None:
    assert payload_size(b"abc") == 3
    assert payload_size([1, 2, 3]) == 12
    assert payload_size(TokenMessage(ids=(1,), text="é")) == 4 + 2
    assert payload_size(np.zeros(10, dtype=np.float64)) == 80
    with pytest.raises(LocalProtocolError):
        payload_size(3.0)  # type: ignore[arg-type]
