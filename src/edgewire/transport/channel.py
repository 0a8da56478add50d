"""Per-channel state inside a session: send queue, counters, video frame reassembly."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from edgewire.transport.qos import ChannelKind, QoS
from edgewire.transport.recovery import ReceiveRecovery, SendRecovery
from edgewire.transport.scheduler import DatagramQueue, StreamQueue
from edgewire.transport.stats import ChannelStats

__all__ = ["ChannelInfo", "ChannelState", "Reassembler", "RecentIds"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelInfo:
    """Public description of a channel."""

    channel_id: int
    """Id, unique within the session."""
    kind: ChannelKind
    """Kind of payload."""
    name: str
    """Application-chosen name."""
    qos: QoS
    """Delivery settings."""
    local: bool
    """True if this side opened it."""


class RecentIds:
    """A bounded set of recently finished frame ids, to recognise duplicates and stragglers."""

    __slots__ = ("_order", "_set")

    def __init__(self, capacity: int = 1024) -> None:
        self._set: set[int] = set()
        self._order: deque[int] = deque(maxlen=capacity)

    def __contains__(self, frame_id: int) -> bool:
        return frame_id in self._set

    def add(self, frame_id: int) -> None:
        """Remember an id, forgetting the oldest beyond capacity."""
        order = self._order
        if len(order) == order.maxlen:
            self._set.discard(order[0])
        order.append(frame_id)
        self._set.add(frame_id)


@dataclass(slots=True)
class _Partial:
    parts: list[bytes | None]
    missing: int
    capture: float
    deadline: float
    keyframe: bool
    size: int = 0


class Reassembler:
    """Collects the fragments of video frames; gives up on a frame at its deadline.

    At most ``max_frames`` frames and ``max_bytes`` bytes are held; beyond that the oldest
    partial frame is evicted and reported lost.
    """

    __slots__ = ("_partial", "bytes", "max_bytes", "max_frames", "recent")

    def __init__(self, *, max_frames: int = 64, max_bytes: int = 16 << 20) -> None:
        self._partial: OrderedDict[int, _Partial] = OrderedDict()
        self.bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.recent = RecentIds()

    def __len__(self) -> int:
        return len(self._partial)

    def add(
        self,
        *,
        frame_id: int,
        index: int,
        count: int,
        payload: bytes,
        capture: float,
        deadline: float,
        keyframe: bool,
    ) -> tuple[bytes | None, list[int], bool]:
        """Add a fragment. Returns (whole frame or None, evicted frame ids, duplicate?)."""
        if frame_id in self.recent:
            return None, [], True
        part = self._partial.get(frame_id)
        if part is None:
            part = _Partial([None] * count, count, capture, deadline, keyframe)
            self._partial[frame_id] = part
        elif len(part.parts) != count or part.parts[index] is not None:
            return None, [], True
        part.parts[index] = payload
        part.missing -= 1
        part.size += len(payload)
        part.keyframe = part.keyframe or keyframe
        self.bytes += len(payload)
        if part.missing == 0:
            del self._partial[frame_id]
            self.bytes -= part.size
            self.recent.add(frame_id)
            return b"".join(p for p in part.parts if p is not None), [], False
        evicted: list[int] = []
        while len(self._partial) > self.max_frames or self.bytes > self.max_bytes:
            old_id, old = self._partial.popitem(last=False)
            self.bytes -= old.size
            self.recent.add(old_id)
            evicted.append(old_id)
        return None, evicted, False

    def next_deadline(self) -> float | None:
        """Earliest deadline among partial frames (None when there are none)."""
        return min((p.deadline for p in self._partial.values()), default=None)

    def expire(self, now: float) -> list[int]:
        """Give up on every partial frame whose deadline has passed; returns their ids."""
        gone = [fid for fid, p in self._partial.items() if p.deadline <= now]
        for fid in gone:
            self.bytes -= self._partial.pop(fid).size
            self.recent.add(fid)
        return gone


@dataclass(slots=True, kw_only=True)
class ChannelState:
    """Everything the session keeps about one channel."""

    info: ChannelInfo
    stats: ChannelStats = field(default_factory=ChannelStats)
    next_seq: int = 0
    next_frame: int = 0
    dgram_queue: DatagramQueue | None = None
    stream_queue: StreamQueue | None = None
    out_stream_id: int | None = None
    closed_local: bool = False
    closed_remote: bool = False
    close_after: int = 0
    close_by: float | None = None
    """Real-time channels closed by the peer: ChannelClosed waits for the frames still on
    their way (datagrams can arrive after the close, which travels on the control
    stream), until this time at the latest (the close plus the channel's deadline)."""
    close_reported: bool = False
    fin_pending: bool = False
    reassembler: Reassembler = field(default_factory=Reassembler)
    send_recovery: SendRecovery | None = None
    """FEC and retransmission state of a real-time channel this side sends on."""
    receive_recovery: ReceiveRecovery | None = None
    """Gap tracking, NACKs and FEC decoding of a real-time channel this side receives."""

    @classmethod
    def create(cls, info: ChannelInfo) -> ChannelState:
        """State with the right kind of send queue for the channel's kind."""
        state = cls(info=info)
        if info.qos.reliable:
            state.stream_queue = StreamQueue(limit_bytes=info.qos.max_queue_bytes)
        else:
            state.dgram_queue = DatagramQueue(limit_bytes=info.qos.max_queue_bytes)
        return state

    @property
    def channel_id(self) -> int:
        """The channel's id."""
        return self.info.channel_id

    def queued_bytes(self) -> int:
        """Bytes waiting in edgewire's send queue for this channel."""
        if self.stream_queue is not None:
            return self.stream_queue.bytes
        assert self.dgram_queue is not None
        return self.dgram_queue.bytes
