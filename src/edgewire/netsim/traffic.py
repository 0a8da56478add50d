"""A simulated application on one side of a session: it sends a scenario's channels and
records what the peer's channels deliver."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edgewire.errors import EdgewireError, QueueFullError
from edgewire.netsim.engine import Address
from edgewire.netsim.scenario import TrafficFlow
from edgewire.transport import (
    BitrateChanged,
    ChannelOpened,
    FrameLost,
    KeyframeRequested,
    MessageReceived,
    SessionClosed,
    SessionReady,
)
from edgewire.transport.jitter import JitterBuffer, JitterBufferConfig
from edgewire.transport.qos import ChannelKind
from edgewire.workload.ladder import K_AUDIO_ENCODER_SHARE, VideoLadder
from edgewire.workload.sinks import ChannelRecorder
from edgewire.workload.sources import (
    AudioSource,
    EmbeddingSource,
    Frame,
    Source,
    TokenSource,
    VideoSource,
    payload_size,
)

__all__ = ["AppSession", "TrafficApp"]


class AppSession(Protocol):
    """What a traffic application uses of a session: an edgewire ``Session``, or a
    multi-endpoint ``MultiSession`` (which numbers its channels itself)."""

    @property
    def ready(self) -> bool:
        """Channels can be opened."""

    @property
    def closed(self) -> bool:
        """Nothing more will happen."""

    def next_event(self) -> Any:
        """The next event, or None."""

    def open_channel(self, kind: ChannelKind | str, *, name: str | None = None,
                     qos: Any = None, now: float) -> int:
        """Open a channel; its id."""

    def send(self, channel_id: int, payload: Any, *, now: float,
             timestamp: float | None = None, keyframe: bool = False) -> None:
        """Queue a message."""

    def request_keyframe(self, channel_id: int, *, now: float) -> bool:
        """Ask the peer for a keyframe."""

#: Reliable messages held back while a channel's send queue is full; beyond it new ones
#: are skipped and counted (the source models an application that would block).
K_MAX_HELD_MESSAGES = 256

#: Nominal frame spacing the receiver's playout buffer assumes, by kind (it only places the
#: slots of frames that never arrive).
_NOMINAL_FRAME_MS = {ChannelKind.AUDIO: 20.0, ChannelKind.VIDEO: 1000.0 / 30}

_SOURCES: dict[str, Callable[..., Source]] = {
    "audio": AudioSource, "video": VideoSource, "tokens": TokenSource,
    "embeddings": EmbeddingSource,
}


class _Sender:
    __slots__ = ("channel_id", "flow", "held", "keyframes_requested", "sent", "sent_bytes",
                 "skipped", "source")

    def __init__(self, flow: TrafficFlow, source: Source, channel_id: int) -> None:
        self.flow = flow
        self.source = source
        self.channel_id = channel_id
        self.sent = 0
        self.sent_bytes = 0
        self.skipped = 0
        self.keyframes_requested = 0
        self.held: deque[Frame] = deque()


class TrafficApp:
    """Sends ``flows`` from ``start_at`` to ``stop_at`` over the session ``session()``
    returns (None until it exists; its endpoint is at ``address``), and records every
    channel the peer opens."""

    def __init__(self, session: Callable[[], AppSession | None],
                 flows: tuple[TrafficFlow, ...],
                 *, address: Address | None, seed: int, start_at: float = 0.0,
                 stop_at: float, touches: tuple[Address, ...] | None = None) -> None:
        self._session = session
        self.address = address
        """Simulator address of the endpoint holding the session (None: a multi-endpoint
        session; the application is then stepped at every instant)."""
        self.touches: tuple[Address, ...] = (
            touches if touches is not None else () if address is None else (address,))
        """Endpoints that may have something to send after this application acted."""
        self.flows = flows
        self.start_at = start_at
        self.stop_at = stop_at
        self.ready_at: float | None = None
        """When the session became ready."""
        self.closed: SessionClosed | None = None
        """The close event, once the session ended."""
        self.senders: dict[str, _Sender] = {}
        """What this side sends, by channel name."""
        self.recorders: dict[str, ChannelRecorder] = {}
        """What the peer's channels delivered here, by channel name."""
        self._by_id: dict[int, ChannelRecorder] = {}
        self.jitter: dict[str, JitterBuffer] = {}
        """Playout buffers of the peer's audio and video channels, by channel name."""
        self._jitter_by_id: dict[int, JitterBuffer] = {}
        self.ladders: dict[str, VideoLadder] = {}
        """Adaptive video senders' ladders, by channel name."""
        self._rngs = np.random.default_rng(seed).spawn(len(flows)) if flows else []
        self._started = False
        self._stopped = False
        self._timer: float | None = None
        self._holding = False  # some reliable message waits for room in its queue
        self._video_ids: set[int] = set()  # the peer's video channels

    # ------------------------------------------------------------------ Application

    def get_timer(self) -> float | None:
        """The next frame due, or the stop time (None before the start and after the stop)."""
        return self._timer

    def _compute_timer(self) -> float | None:
        if self._stopped or not self._started:
            return None
        best = self.stop_at
        for s in self.senders.values():
            t = s.source.get_timer()
            if t is not None and t < best:
                best = t
        return best

    def step(self, *, now: float) -> tuple[Address, ...]:
        """Drain the session's events, then send what is due; returns ``(address,)`` if
        it gave the session something to send."""
        session = self._session()
        if session is None:
            return ()
        while (ev := session.next_event()) is not None:
            self._on_event(ev, now)
        if self.closed is not None:
            self._timer = None  # nothing more to send: do not wake the engine again
            return ()
        acted = False
        if not self._started and session.ready and now >= self.start_at:
            self._start(session, now)
            acted = True
        timer = self._timer
        if self._started and not self._stopped and (
                (timer is not None and now >= timer) or self._holding):
            acted = self._send(session, now) or acted
            self._timer = self._compute_timer()
        return self.touches if acted else ()

    # ------------------------------------------------------------------ internals

    def _on_event(self, ev: Any, now: float) -> None:
        if isinstance(ev, MessageReceived):
            rec = self._by_id.get(ev.channel_id)
            if rec is not None:
                rec.on_message(now=now, latency=ev.latency, size_bytes=payload_size(ev.payload))
            jb = self._jitter_by_id.get(ev.channel_id)
            if jb is not None:
                jb.push(ev.frame_id & 0xFFFFFFFF, ev.timestamp, None, now=now)
                jb.pop(now)
        elif isinstance(ev, FrameLost):
            rec = self._by_id.get(ev.channel_id)
            if rec is not None:
                rec.on_lost(now=now, reason=ev.reason)
            if ev.channel_id in self._video_ids:
                # a lost video frame breaks decoding until the next keyframe: ask for one
                session = self._session()
                if session is not None and not session.closed:
                    session.request_keyframe(ev.channel_id, now=now)
        elif isinstance(ev, KeyframeRequested):
            for s in self.senders.values():
                if s.channel_id == ev.channel_id and isinstance(s.source, VideoSource):
                    s.keyframes_requested += 1
                    # synthetic frames do not depend on each other: nothing to repair, and
                    # answering would add keyframes no real stream would need
                    if s.source.encoder is not None:
                        s.source.request_keyframe()
        elif isinstance(ev, ChannelOpened):
            if ev.kind is ChannelKind.VIDEO:
                self._video_ids.add(ev.channel_id)
            rec = ChannelRecorder(deadline_ms=ev.qos.deadline_ms)
            self._by_id[ev.channel_id] = rec
            self.recorders[ev.name] = rec
            frame_ms = _NOMINAL_FRAME_MS.get(ev.kind)
            if frame_ms is not None and ev.qos.deadline_ms is not None:
                jb = JitterBuffer(JitterBufferConfig(deadline_ms=ev.qos.deadline_ms,
                                                     frame_ms=frame_ms))
                self._jitter_by_id[ev.channel_id] = jb
                self.jitter[ev.name] = jb
        elif isinstance(ev, BitrateChanged):
            self._follow(ev)
        elif isinstance(ev, SessionReady):
            self.ready_at = now
        elif isinstance(ev, SessionClosed):
            self.closed = ev

    def _follow(self, ev: BitrateChanged) -> None:
        """A video source with ``adaptive`` on follows its channel's share, and so does
        an Opus audio source (up to its configured bitrate)."""
        for s in self.senders.values():
            if s.channel_id == ev.channel_id and isinstance(s.source, VideoSource):
                ladder = self.ladders.get(s.flow.kind.value)
                if ladder is not None:
                    ladder.apply(s.source, ev.bitrate_bps)
            elif (s.channel_id == ev.channel_id and isinstance(s.source, AudioSource)
                  and s.source.config.codec == "opus"):
                s.source.set_bitrate(ev.bitrate_bps * K_AUDIO_ENCODER_SHARE)

    def _start(self, session: AppSession, now: float) -> None:
        self._started = True
        for flow, rng in zip(self.flows, self._rngs, strict=True):
            kind = flow.kind.value
            source = _SOURCES[kind](flow.source, rng=rng)
            cid = session.open_channel(kind, name=kind, qos=flow.qos, now=now)
            source.start(now=now)
            self.senders[kind] = _Sender(flow, source, cid)
            if isinstance(source, VideoSource) and source.config.adaptive:
                self.ladders[kind] = VideoLadder(source.config.bitrate_bps)
        self._timer = self._compute_timer()

    def _send(self, session: AppSession, now: float) -> bool:
        stopping = now >= self.stop_at
        sent_before = sum(s.sent for s in self.senders.values())
        for s in self.senders.values():
            reliable = s.flow.qos.reliable
            frames = s.source.poll(now=min(now, self.stop_at - 1e-9))
            for frame in frames:
                if reliable and len(s.held) >= K_MAX_HELD_MESSAGES:
                    s.skipped += 1
                    continue
                if reliable:
                    s.held.append(frame)
                    continue
                self._submit(session, s, frame, now)
            while s.held:
                try:
                    self._submit(session, s, s.held[0], now)
                except QueueFullError:
                    break  # the queue is full: retry when the session has sent some
                s.held.popleft()
        self._holding = any(s.held for s in self.senders.values())
        if stopping:
            self._holding = False
            self._stopped = True
            for s in self.senders.values():
                s.source.stop()
                s.skipped += len(s.held)
                s.held.clear()
        return stopping or sum(s.sent for s in self.senders.values()) != sent_before

    def _submit(self, session: AppSession, s: _Sender, frame: Frame, now: float) -> None:
        try:
            session.send(s.channel_id, frame.payload, now=now, timestamp=frame.timestamp,
                         keyframe=frame.keyframe)
        except QueueFullError:
            raise
        except EdgewireError:
            s.skipped += 1
            return
        s.sent += 1
        s.sent_bytes += frame.size_bytes

    def summary(self, peer: TrafficApp, *, duration_s: float) -> dict[str, dict[str, Any]]:
        """Per channel this side sent: the peer's recorder summary with this side's count."""
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.senders.items():
            rec = peer.recorders.get(name) or ChannelRecorder(
                deadline_ms=s.flow.qos.deadline_ms)
            row = rec.summary(sent=s.sent, duration_s=duration_s)
            row["on_time"] = rec.on_time
            row["sent_bytes"] = s.sent_bytes
            row["not_sent"] = s.skipped
            jb = peer.jitter.get(name)
            if jb is not None:
                row["jitter_buffer"] = jb.stats().as_dict()
            if isinstance(s.source, VideoSource):
                row["keyframes"] = s.source.keyframes
                row["keyframes_requested"] = s.keyframes_requested
            if isinstance(s.source, AudioSource | VideoSource):
                codec = s.source.config.codec
                if codec is not None:
                    row["codec"] = codec
                    row["encoded_kbps"] = round(s.sent_bytes * 8 / duration_s / 1000, 1)
            ladder = self.ladders.get(name)
            if ladder is not None and isinstance(s.source, VideoSource):
                row["ladder"] = {"changes": ladder.changes, "rung": ladder.rung.label,
                                 "bitrate_kbps": round(s.source.bitrate_bps / 1000, 1)}
            out[name] = row
        return out
