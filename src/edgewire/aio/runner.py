"""Drive the sans-I/O workload generators over a live connection, and record what arrives.

Used by ``edgewire demo``, ``edgewire connect`` and ``edgewire serve``: the client sends the
workload mix, the server records every channel and answers a report request with the
per-channel summary (an application message on the control stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from edgewire.aio.connection import Channel, Connection
from edgewire.errors import ConnectionClosedError
from edgewire.workload import ChannelRecorder, WorkloadMix, build_sources, payload_size
from edgewire.workload.ladder import K_AUDIO_ENCODER_SHARE, VideoLadder
from edgewire.workload.sources import AudioSource, Source, VideoSource

__all__ = ["WorkloadReceiver", "request_report", "run_client", "send_workload"]

#: Application message kinds of the demo protocol.
REPORT_REQUEST = "report?"
REPORT = "report"
#: Channels the demo sends, in order.
KINDS = ("audio", "video", "tokens", "embeddings")


async def send_workload(
    conn: Connection,
    *,
    seconds: float,
    mix: WorkloadMix | None = None,
    seed: int = 1,
    progress: Callable[[float], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Send the mix for ``seconds``, then drain and close the channels.

    Returns ``{kind: {"sent": messages, "sent_bytes": payload bytes}}`` for this side.
    """
    loop = asyncio.get_running_loop()
    sources = build_sources(mix, np.random.default_rng(seed))
    channels: dict[str, Channel] = {kind: await conn.channel(kind) for kind in sources}
    _follow_estimate(sources, channels)
    sent: dict[str, dict[str, Any]] = {kind: {"sent": 0, "sent_bytes": 0}
                                       for kind in sources}
    for kind, src in sources.items():
        if isinstance(src, AudioSource | VideoSource) and src.config.codec is not None:
            sent[kind]["codec"] = src.config.codec
    start = loop.time()
    end = start + seconds
    for src in sources.values():
        src.start(now=start)
    next_progress = start + 1.0
    while True:
        now = loop.time()
        # a late wake-up still sends everything due before the end, and nothing after it
        for kind, src in sources.items():
            for frame in src.poll(now=min(now, end - 1e-6)):
                ch = channels[kind]
                if ch.qos.reliable:
                    await ch.send(frame.payload, timestamp=frame.timestamp)
                else:
                    ch.send_nowait(frame.payload, timestamp=frame.timestamp,
                                   keyframe=frame.keyframe)
                sent[kind]["sent"] += 1
                sent[kind]["sent_bytes"] += payload_size(frame.payload)
        if now >= end:
            break
        if progress is not None and now >= next_progress:
            progress(now - start)
            next_progress += 1.0
        timers = [t for t in (s.get_timer() for s in sources.values()) if t is not None]
        wake = min([end, *timers])
        await asyncio.sleep(max(0.0, wake - loop.time()))
    for src in sources.values():
        src.stop()
    for ch in channels.values():
        await ch.drain()
    # real-time frames still in flight get their deadline to land before the close
    deadline_s = max((ch.qos.deadline_ms or 0.0) for ch in channels.values()) / 1000.0
    await asyncio.sleep(deadline_s)
    for ch in channels.values():
        await ch.close()
    return sent


def _follow_estimate(sources: dict[str, Source], channels: dict[str, Channel]) -> None:
    """Encoders follow their channel's share (BitrateChanged) and keyframe requests: video
    down its ladder, Opus audio up to its configured bitrate."""
    video = sources.get("video")
    if isinstance(video, VideoSource) and video.config.adaptive:
        ladder = VideoLadder(video.config.bitrate_bps)

        def follow(bps: float) -> None:
            ladder.apply(video, bps)

        channels["video"].on_bitrate = follow
        channels["video"].on_keyframe_request = video.request_keyframe
    elif isinstance(video, VideoSource):
        channels["video"].on_keyframe_request = video.request_keyframe
    audio = sources.get("audio")
    if isinstance(audio, AudioSource) and audio.config.codec == "opus":
        channels["audio"].on_bitrate = lambda bps: audio.set_bitrate(
            bps * K_AUDIO_ENCODER_SHARE)


class WorkloadReceiver:
    """Records every channel the peer opens; answers report requests with summaries."""

    def __init__(self) -> None:
        self.recorders: dict[str, ChannelRecorder] = {}
        self.first_arrival: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, conn: Connection) -> None:
        """Serve one connection until the peer closes it."""
        app = asyncio.create_task(self._answer_reports(conn))
        try:
            while True:
                try:
                    ch = await conn.accept()
                except ConnectionClosedError:
                    break
                rec = ChannelRecorder(deadline_ms=ch.qos.deadline_ms)
                self.recorders[ch.name] = rec
                self._tasks.append(asyncio.create_task(self._record(conn, ch, rec)))
        finally:
            app.cancel()
            for task in self._tasks:
                task.cancel()

    async def wait_channels_closed(self) -> None:
        """Wait until every channel opened so far has ended."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _record(self, conn: Connection, ch: Channel, rec: ChannelRecorder) -> None:
        async for msg in ch:
            now = conn.loop.time()
            if self.first_arrival is None:
                self.first_arrival = now
            rec.on_message(now=now, latency=msg.latency, size_bytes=payload_size(msg.payload))

    async def _answer_reports(self, conn: Connection) -> None:
        while True:
            try:
                body = await conn.recv_app_message()
            except ConnectionClosedError:
                return
            if isinstance(body, dict) and body.get("t") == REPORT_REQUEST:
                # reliable channels are complete once closed; wait for them first
                await self.wait_channels_closed()
                sent = body.get("sent", {})
                duration = float(body.get("duration_s", 1.0)) or 1.0
                report = {
                    name: rec.summary(sent=int(sent.get(name, {}).get("sent", rec.delivered)),
                                      duration_s=duration)
                    for name, rec in self.recorders.items()
                }
                await conn.send_app_message({"t": REPORT, "channels": report})


async def request_report(
    conn: Connection, sent: dict[str, dict[str, Any]], duration_s: float, wait_s: float = 30.0
) -> dict[str, Any]:
    """Ask the peer's WorkloadReceiver for its per-channel summary."""
    await conn.send_app_message({"t": REPORT_REQUEST, "sent": sent, "duration_s": duration_s})
    async with asyncio.timeout(wait_s):
        while True:
            body = await conn.recv_app_message()
            if isinstance(body, dict) and body.get("t") == REPORT:
                channels = body.get("channels")
                return channels if isinstance(channels, dict) else {}


def demo_mix(*, codecs: bool = True) -> WorkloadMix:
    """The demo's workload: Opus audio and H.264 video encoded for real when PyAV (the
    ``media`` extra) is installed and ``codecs`` is on, synthetic frames otherwise."""
    from edgewire.codecs import available_codecs
    from edgewire.workload.sources import AudioSourceConfig, VideoSourceConfig

    if not codecs or "opus" not in available_codecs("audio"):
        return WorkloadMix()
    return WorkloadMix(audio=AudioSourceConfig(codec="opus"),
                       video=VideoSourceConfig(codec="h264"))


async def run_client(
    conn: Connection, *, seconds: float, progress: Callable[[float], None] | None = None,
    mix: WorkloadMix | None = None,
) -> dict[str, Any]:
    """Send the workload and collect the server's report: the demo's client side."""
    sent = await send_workload(conn, seconds=seconds, progress=progress, mix=mix)
    report = await request_report(conn, sent, seconds)
    channels: dict[str, Any] = {}
    for kind in sent:
        row = dict(report.get(kind, {}))
        row["sent"] = sent[kind]["sent"]
        row["sent_bytes"] = sent[kind]["sent_bytes"]
        codec = sent[kind].get("codec")
        if codec is not None:
            row["codec"] = codec
        channels[kind] = row
    stats = conn.stats()
    session = {k: stats[k] for k in ("rtt_ms", "cwnd_bytes", "clock_offset_ms", "counters")}
    return {"channels": channels, "session": session}
